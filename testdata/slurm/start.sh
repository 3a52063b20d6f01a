#!/bin/bash
# Starts a one-node Slurm cluster on this host for lens's tests: munged,
# then slurmctld and slurmd as root, configured by slurm.conf beside this
# script, with their state and logs under /tmp/lens-slurm. Waits until the
# node is idle. Needs root and Debian's slurmctld slurmd slurm-client munge.
# Clients find the cluster through SLURM_CONF (printed at the end).
# stop.sh stops what this started.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
conf=$here/slurm.conf
state=/tmp/lens-slurm
export SLURM_CONF=$conf
PATH=$PATH:/usr/sbin:/sbin

if [ "$(id -u)" != 0 ]; then
	echo "start.sh: must run as root (the test cluster runs slurmd and slurmctld as root)" >&2
	exit 1
fi
for b in munged mungekey slurmctld slurmd sinfo sbatch squeue scancel scontrol; do
	if ! command -v "$b" >/dev/null; then
		echo "start.sh: $b is not installed (apt-get install slurmctld slurmd slurm-client munge)" >&2
		exit 1
	fi
done
if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
	echo "start.sh: the test cluster is already up"
	echo "export SLURM_CONF=$conf"
	exit 0
fi
mkdir -p "$state/ctld" "$state/d"

# munge: one key, munged as its own user.
if [ ! -s /etc/munge/munge.key ]; then
	mungekey --create --keyfile=/etc/munge/munge.key
	chown munge:munge /etc/munge/munge.key
	chmod 0400 /etc/munge/munge.key
fi
mkdir -p /run/munge /var/log/munge /var/lib/munge
chown munge:munge /run/munge /var/log/munge /var/lib/munge
if ! munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1; then
	runuser -u munge -- munged
	touch "$state/started-munged"
	for _ in $(seq 50); do
		munge -n </dev/null 2>/dev/null | unmunge >/dev/null 2>&1 && break
		sleep 0.1
	done
fi

# slurmctld starts from a clean state (-c) so old test jobs do not linger.
slurmctld -c -f "$conf"
slurmd -f "$conf" -N localhost
for _ in $(seq 120); do
	if sinfo -h -o %T 2>/dev/null | grep -qx idle; then
		echo "start.sh: one-node Slurm cluster up (partition debug, node localhost)"
		echo "export SLURM_CONF=$conf"
		exit 0
	fi
	sleep 0.5
done
echo "start.sh: the node did not become idle within 60 s; sinfo says:" >&2
sinfo -N -l >&2 || true
tail -n 20 "$state/slurmctld.log" "$state/slurmd.log" >&2 || true
exit 1
