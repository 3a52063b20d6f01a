package main

import (
	"fmt"
	"io"
	"strings"

	"lens/engine/report"
	"lens/engine/reports"
)

func cmdReport(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("report", "RUN [RUN...] [--kind executive|technical|diagnostic] [--html FILE] [--json]",
		"Print a run's standard report (one run) or a comparison (several runs); --html also writes it as HTML with charts, --json prints it as data", stderr)
	store := storeFlag(fs)
	kind := fs.String("kind", "technical", "report kind: "+strings.Join(reports.Kinds, ", "))
	html := fs.String("html", "", "write the HTML report to FILE")
	asJSON := fs.Bool("json", false, "print the report as JSON (sections, tables, findings and the charts' numbers) instead of text")
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
	var d *report.Document
	if len(ids) == 1 {
		if d, err = reports.Standard(st, ids[0], *kind, reports.Options{}); err != nil {
			return usageIfKind(err)
		}
	} else if d, err = reports.Compare(st, ids); err != nil {
		return err
	}
	if *html != "" {
		if err := d.WriteFile(*html); err != nil {
			return err
		}
	}
	if *asJSON {
		b, err := reports.MarshalJSON(d)
		if err != nil {
			return err
		}
		fmt.Fprintf(stdout, "%s\n", b)
		if *html != "" {
			fmt.Fprintf(stderr, "wrote %s\n", *html) // stdout holds only the JSON
		}
		return nil
	}
	fmt.Fprint(stdout, reports.Text(d))
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
