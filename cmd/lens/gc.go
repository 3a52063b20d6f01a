package main

import (
	"encoding/json"
	"fmt"
	"io"
)

// cmdGC reclaims the disk space of deleted runs and rotated checkpoints
// now (kv.Store.GC); writers also do it by themselves after deletes.
func cmdGC(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("gc", "[--json]", "Give back the disk space of deleted runs and checkpoints: compact the store and rewrite value-log files that are at least half garbage", stderr)
	store := storeFlag(fs)
	asJSON := fs.Bool("json", false, `print {"bytes_before": ..., "bytes_after": ..., "files_rewritten": ..., "seconds": ...}`)
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) > 0 {
		return usagef("gc takes no arguments, got %q", pos[0])
	}
	st, err := openStore(*store, false)
	if err != nil {
		return err
	}
	defer st.Close()
	stats, err := st.GC()
	if err != nil {
		return err
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(stats)
	}
	fmt.Fprintf(stdout, "store %s: %s -> %s on disk (%d value-log files rewritten, %.1fs)\n",
		*store, gcMB(stats.BytesBefore), gcMB(stats.BytesAfter), stats.FilesRewritten, stats.Seconds)
	return nil
}

func gcMB(n int64) string { return fmt.Sprintf("%.1f MB", float64(n)/(1<<20)) }
