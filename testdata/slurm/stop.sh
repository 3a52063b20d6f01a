#!/bin/bash
# Stops the test cluster that start.sh started: slurmd, slurmctld, and
# munged if start.sh started it. Safe to run when nothing is running.
state=/tmp/lens-slurm
stop() { # pidfile
	[ -s "$1" ] || return 0
	pid=$(cat "$1")
	kill "$pid" 2>/dev/null || return 0
	for _ in $(seq 50); do
		kill -0 "$pid" 2>/dev/null || return 0
		sleep 0.1
	done
	kill -9 "$pid" 2>/dev/null || true
}
stop "$state/slurmd.pid"
stop "$state/slurmctld.pid"
if [ -e "$state/started-munged" ]; then
	stop /run/munge/munged.pid
	rm -f "$state/started-munged"
fi
echo "stop.sh: test cluster stopped"
