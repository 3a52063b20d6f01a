package main

import (
	"fmt"
	"io"
	"strings"

	"lens/engine/reports"
)

func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", "RUN [RUN...] [--kind executive|technical|diagnostic] [--html FILE]",
		"Print a run's standard report (one run) or a comparison (several runs); --html also writes it as HTML with charts", stderr)
	store := storeFlag(fs)
	kind := fs.String("kind", "technical", "report kind: "+strings.Join(reports.Kinds, ", "))
	html := fs.String("html", "", "write the HTML report to FILE")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	if len(pos) == 0 {
		return usagef("want at least one run")
	}
	st, err := openStore(*store, true)
	if err != nil {
		return err
	}
	defer st.Close()
	var ids []string
	for _, r := range pos {
		m, err := st.FindRun(r)
		if err != nil {
			return err
		}
		ids = append(ids, m.ID)
	}
	var text string
	if len(ids) == 1 {
		d, err := reports.Standard(st, ids[0], *kind, reports.Options{})
		if err != nil {
			return usageIfKind(err)
		}
		text = reports.Text(d)
		if *html != "" {
			if err := d.WriteFile(*html); err != nil {
				return err
			}
		}
	} else {
		d, err := reports.Compare(st, ids)
		if err != nil {
			return err
		}
		text = reports.Text(d)
		if *html != "" {
			if err := d.WriteFile(*html); err != nil {
				return err
			}
		}
	}
	fmt.Fprint(stdout, text)
	if *html != "" {
		fmt.Fprintf(stdout, "\nwrote %s\n", *html)
	}
	return nil
}

func usageIfKind(err error) error {
	if strings.Contains(err.Error(), "report kind") {
		return usageError{err.Error()}
	}
	return err
}
