package main

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"regexp"
	"strings"

	"go.starlark.net/starlark"

	"lens/builtins"
	"lens/runtime"
)

// cmdTest runs the test_ functions of *_test.star files and prints a
// table of results, the failures with their backtraces, and a closing
// "N passed, N failed" line.
func cmdTest(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("test", "[--run REGEX] [PATH...]",
		"Run the test_ functions of the *_test.star files in PATHs (files or directories, default .; hidden and testdata directories are searched only when named); tests see the lens builtins, an assert module and the store", stderr)
	store := storeFlag(fs)
	run := fs.String("run", "", "run only the tests whose names match this regular expression")
	pos, err := parse(fs, args)
	if err != nil {
		return err
	}
	var match *regexp.Regexp
	if *run != "" {
		if match, err = regexp.Compile(*run); err != nil {
			return usagef("--run: %v", err)
		}
	}
	files, err := runtime.FindTestFiles(pos)
	if err != nil {
		return usagef("%v", err)
	}
	st, err := openStore(*store, false)
	if err != nil {
		return err
	}
	defer st.Close()
	ctx, stop := interruptible(stderr)
	defer stop()
	prog := newProgress(stderr)
	out := &progressWriter{w: stdout, p: prog}
	logger := slog.New(slog.NewTextHandler(stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	wd, err := os.Getwd()
	if err != nil {
		return fmt.Errorf("test: %w", err)
	}
	r := &runtime.TestRunner{
		Host:  runtime.Host{Root: wd, Predecl: builtins.Modules(nil), Out: out},
		Match: match,
		FileSetup: func(path string, src []byte) func(*starlark.Thread) {
			sum := sha256.Sum256(src)
			abs, _ := filepath.Abs(path)
			env := withIntegrations(&builtins.Env{Store: st, Args: map[string]string{}, Script: abs, ScriptHash: hex.EncodeToString(sum[:8]),
				Out: out, Progress: prog.update, Logger: logger, Workspace: wd})
			return env.Attach
		},
	}
	results, runErr := r.Run(ctx, files)
	prog.done()
	failed := writeTestReport(stdout, files, results)
	if runErr != nil {
		fmt.Fprintf(stderr, "lens test: %v\n", runErr)
		return errReported
	}
	if failed > 0 {
		return errReported
	}
	return nil
}

// writeTestReport prints the results table, then each failure with its
// backtrace, then "N passed, N failed", and returns the number failed.
func writeTestReport(w io.Writer, files []string, results []runtime.TestResult) int {
	passed, failed := 0, 0
	var rows [][]string
	for _, r := range results {
		res := "PASS"
		if r.Passed() {
			passed++
		} else {
			failed++
			res = "FAIL"
		}
		rows = append(rows, []string{r.File, r.Name, res, fmt.Sprintf("%.2fs", r.Elapsed.Seconds())})
	}
	switch {
	case len(files) == 0:
		fmt.Fprintf(w, "no *%s files found\n", runtime.TestSuffix)
	case len(results) == 0:
		fmt.Fprintln(w, "no tests to run")
	default:
		table(w, []string{"file", "test", "result", "time"}, rows)
	}
	for _, r := range results {
		if r.Passed() {
			continue
		}
		fmt.Fprintf(w, "\n--- FAIL: %s %s (%.2fs)\n%s\n", r.File, r.Name, r.Elapsed.Seconds(), strings.TrimRight(runtime.FormatError(r.Err), "\n"))
	}
	if failed > 0 {
		fmt.Fprintln(w)
	}
	fmt.Fprintf(w, "%d passed, %d failed\n", passed, failed)
	return failed
}
