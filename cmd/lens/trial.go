package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"os/signal"
	"slices"
	"strings"
	"syscall"
	"time"

	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/kv"
)

// Exit codes of `lens trial run`, which sweep drivers and Slurm read.
const (
	exitTrialCancelled = 3 // checkpointed and cancelled (SIGTERM, scancel): run it again to resume
	exitTrialStopped   = 4 // stopped by its sweep (successive halving)
)

// exitCodeError ends a command with a given exit code, after printing msg
// (if any).
type exitCodeError struct {
	code int
	msg  string
}

func (e exitCodeError) Error() string { return e.msg }

func exitCodeOf(err error, stderr io.Writer, name string) int {
	var ec exitCodeError
	errors.As(err, &ec)
	if ec.msg != "" {
		fmt.Fprintf(stderr, "lens %s: %s\n", name, ec.msg)
	}
	return ec.code
}

func cmdTrial(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("trial", "run SWEEP_DIR TRIAL_ID [--threads N]",
		"Run one trial of a sweep into its own store shard, resuming from the shard's checkpoint if an earlier process was interrupted. "+
			"Exit status: 0 done, 1 failed, 3 cancelled by SIGTERM after a checkpoint (run again to resume), 4 stopped by the sweep", stderr)
	threads := fs.Int("threads", 0, "threads for training (default: all cores)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 3 || pos[0] != "run" {
		return usagef("want: lens trial run SWEEP_DIR TRIAL_ID")
	}
	if *threads < 0 {
		return usagef("--threads must not be negative")
	}
	// SIGTERM (scancel, Slurm preemption, the local driver) and SIGINT
	// cancel training, which checkpoints; later signals change nothing.
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	log := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelInfo}))
	last := time.Time{}
	progress := func(p runs.Progress) {
		switch {
		case p.Eval != nil:
			var parts []string
			for _, k := range slices.Sorted(maps.Keys(p.Eval)) {
				parts = append(parts, fmt.Sprintf("%s %.4f", k, p.Eval[k]))
			}
			fmt.Fprintf(stderr, "%s step %d/%d eval: %s\n", p.Name, p.Step, p.Steps, strings.Join(parts, ", "))
		case time.Since(last) >= time.Second || p.Step == p.Steps:
			fmt.Fprintf(stderr, "%s step %d/%d loss %.4f\n", p.Name, p.Step, p.Steps, p.Loss)
			last = time.Now()
		}
	}
	meta, err := sweep.RunTrial(ctx, pos[1], pos[2], sweep.TrialOptions{Threads: *threads, Logger: log, Progress: progress,
		Redact: redactor().Redact, Job: sweep.SlurmJob(os.Getenv)})
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "trial %s: run %s %s after %d steps\n", pos[2], meta.ID, meta.Status, meta.Steps)
	switch meta.Status {
	case kv.StatusDone:
		return nil
	case kv.StatusStopped:
		return exitCodeError{code: exitTrialStopped}
	case kv.StatusCancelled, kv.StatusInterrupted:
		return exitCodeError{code: exitTrialCancelled}
	}
	return fmt.Errorf("trial %s: run %s ended %s: %s", pos[2], meta.ID, meta.Status, meta.Reason)
}
