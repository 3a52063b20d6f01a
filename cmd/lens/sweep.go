package main

import (
	"fmt"
	"io"
	"os"
	"strings"

	"lens/engine/sweep"
)

func cmdSweep(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("sweep", "status SWEEP",
		"Show the trials of a sweep run with a process backend (local, slurm): state, steps, best eval loss, backend job id, attempts. "+
			"SWEEP is the sweep's directory or its name (then STORE/sweeps/NAME)", stderr)
	store := storeFlag(fs)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 2 || pos[0] != "status" {
		return usagef("want: lens sweep status SWEEP")
	}
	dir := pos[1]
	if _, err := os.Stat(dir); err != nil {
		dir = sweep.DefaultDir(*store, pos[1])
	}
	sw, err := sweep.Load(dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "sweep %s (%s) in %s\n", sw.Name, sw.Backend, sw.Dir())
	var rows [][]string
	counts := map[string]int{}
	for _, t := range sw.Trials {
		counts[t.State]++
		steps, best := fmt.Sprint(t.Steps), fmtLoss(t.Best)
		if p := sweep.ReadProgress(dir, t.ID); p != nil && (t.State == sweep.StateRunning || t.State == sweep.StateQueued) {
			// Live numbers from the running trial; merged ones otherwise.
			steps = fmt.Sprintf("%d/%d", p.Step, p.Steps)
			best = fmtLoss(p.Best)
		}
		note := t.Error
		if len(note) > 60 {
			note = note[:57] + "..."
		}
		job := t.Job
		if job == "" {
			job = "-"
		}
		rows = append(rows, []string{t.ID, t.Name, t.State, steps, best, job, fmt.Sprint(t.Attempts), note})
	}
	table(stdout, []string{"trial", "name", "state", "steps", "best eval", "job", "attempts", "note"}, rows)
	var parts []string
	for _, s := range []string{sweep.StateDone, sweep.StateStopped, sweep.StateRunning, sweep.StateQueued, sweep.StatePending, sweep.StateCancelled, sweep.StateFailed} {
		if counts[s] > 0 {
			parts = append(parts, fmt.Sprintf("%d %s", counts[s], s))
		}
	}
	fmt.Fprintf(stdout, "%d trials: %s\n", len(sw.Trials), strings.Join(parts, ", "))
	return nil
}
