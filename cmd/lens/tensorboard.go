package main

import (
	"fmt"
	"io"

	"lens/engine/tensorboard"
)

// exportTensorBoard is `lens export RUN --tensorboard DIR`.
func exportTensorBoard(storeDir string, pos []string, dir string, stdout io.Writer) error {
	if len(pos) != 1 {
		return usagef("want one run and --tensorboard DIR")
	}
	st, err := openStore(storeDir, true)
	if err != nil {
		return err
	}
	defer st.Close()
	meta, err := st.FindRun(pos[0])
	if err != nil {
		return err
	}
	s, err := tensorboard.ExportRun(st, meta.ID, dir)
	if err != nil {
		return err
	}
	fmt.Fprintf(stdout, "wrote %d scalars, %d histograms and %d texts of run %s to %s\n", s.Scalars, s.Histograms, s.Texts, meta.ID, s.File)
	fmt.Fprintf(stdout, "view with: tensorboard --logdir %s\n", dir)
	return nil
}
