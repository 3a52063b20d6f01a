package main

import (
	"fmt"
	"io"

	"lens/engine/sweep"
)

func cmdMerge(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("merge", "SHARD_DIR... [--into STORE]",
		"Merge the runs of store shards (sweep trials' stores) into a store. Each run is checked whole before anything is written, "+
			"merged atomically, and merging the same shard again changes nothing; a shard that is corrupt or of another store format "+
			"version merges nothing, is reported, and the others are still merged (exit status 1)", stderr)
	into := storeFlag(fs)
	fs.StringVar(into, "into", *into, "the store to merge into (same as --store)")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want at least one shard directory")
	}
	st, err := openStore(*into, false)
	if err != nil {
		return err
	}
	defer st.Close()
	failed := 0
	for _, dir := range pos {
		merged, err := sweep.MergeShard(st, dir, nil)
		for _, m := range merged {
			fmt.Fprintf(stdout, "%s: run %s (%s, %s): %s\n", dir, m.Run.ID, m.Run.Name, m.Run.Status, m.Outcome)
		}
		if err != nil {
			fmt.Fprintf(stderr, "lens merge: %v\n", err)
			failed++
		}
	}
	if failed > 0 {
		fmt.Fprintf(stderr, "lens merge: %d of %d shards not merged\n", failed, len(pos))
		return errReported
	}
	return nil
}
