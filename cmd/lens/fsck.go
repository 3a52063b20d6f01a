package main

import (
	"fmt"
	"io"
)

func cmdFsck(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("fsck", "", "Check a store without changing it: every key, record, metric, tensor checksum and index", stderr)
	store := storeFlag(fs)
	if _, err := parse(fs, args); err != nil {
		return err
	}
	st, err := openStore(*store, true)
	if err != nil {
		return err
	}
	defer st.Close()
	problems, err := st.Fsck()
	if err != nil {
		return err
	}
	if len(problems) == 0 {
		fmt.Fprintf(stdout, "store %s: no problems\n", *store)
		return nil
	}
	var rows [][]string
	for _, p := range problems {
		rows = append(rows, []string{p.Key, p.Message})
	}
	table(stdout, []string{"key", "problem"}, rows)
	return fmt.Errorf("store %s: %d problem(s)", *store, len(problems))
}
