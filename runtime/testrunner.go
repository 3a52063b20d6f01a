package runtime

import (
	"cmp"
	"context"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"time"

	"go.starlark.net/starlark"
)

// TestSuffix ends the names of the files lens test runs.
const TestSuffix = "_test.star"

// LoadTest is the name reported for a test file whose top level failed:
// it counts as one failed test.
const LoadTest = "<load>"

// TestResult is the outcome of one test function, or of loading a file.
type TestResult struct {
	File    string        // the test file, as found
	Name    string        // the test function, or LoadTest
	Err     error         // nil when the test passed
	Elapsed time.Duration // time spent in the test (for LoadTest, in the file's top level)
}

// Passed reports whether the test passed.
func (r TestResult) Passed() bool { return r.Err == nil }

// TestRunner runs Starlark test files: each file's top level executes
// once, with Host.Predecl and the assert module predeclared; then every
// global function whose name starts with "test_" runs, in the order of
// definition, on a fresh thread prepared as the Host prepares a script's
// thread (print to Out, the cancellation context, Setup).
type TestRunner struct {
	Host Host // Root, Predecl, Out and Setup, as for scripts
	// Match, if set, selects the tests to run by name.
	Match *regexp.Regexp
	// FileSetup, if set, gives the Setup for the threads of one test file
	// (replacing Host.Setup), e.g. to record the file as the script behind
	// the runs its tests train. src is the file's content.
	FileSetup func(path string, src []byte) func(*starlark.Thread)
}

// Run runs the files in order and returns every result. Cancelling ctx
// interrupts the running test (which fails) and skips the rest; Run then
// returns the results so far and an error.
func (r *TestRunner) Run(ctx context.Context, files []string) ([]TestResult, error) {
	var results []TestResult
	for _, f := range files {
		if err := ctx.Err(); err != nil {
			return results, fmt.Errorf("tests interrupted: %w", err)
		}
		results = append(results, r.runFile(ctx, f)...)
	}
	if err := ctx.Err(); err != nil {
		return results, fmt.Errorf("tests interrupted: %w", err)
	}
	return results, nil
}

func (r *TestRunner) runFile(ctx context.Context, path string) []TestResult {
	start := time.Now()
	loadFailed := func(err error) []TestResult {
		return []TestResult{{File: path, Name: LoadTest, Err: err, Elapsed: time.Since(start)}}
	}
	h := r.Host
	h.Predecl = make(starlark.StringDict, len(r.Host.Predecl)+1)
	for k, v := range r.Host.Predecl {
		h.Predecl[k] = v
	}
	h.Predecl["assert"] = AssertModule
	src, err := os.ReadFile(path)
	if err != nil {
		return loadFailed(fmt.Errorf("read test file: %w", err))
	}
	if r.FileSetup != nil {
		h.Setup = r.FileSetup(path, src)
	}
	l, err := h.newLoader()
	if err != nil {
		return loadFailed(fmt.Errorf("test %s: %w", path, err))
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return loadFailed(fmt.Errorf("test %s: %w", path, err))
	}
	if err := l.inside(abs); err != nil {
		return loadFailed(fmt.Errorf("test %s: %w", path, err))
	}

	fileCtx, cancel := context.WithCancel(ctx)
	t := h.thread(fileCtx, path, l)
	stopOnCancel(fileCtx, t)
	l.cache[abs] = nil // a test file that loads itself is a cycle
	l.inFlight = []string{abs}
	globals, err := starlark.ExecFileOptions(FileOptions, t, path, src, h.Predecl)
	cancel()
	if err != nil {
		return loadFailed(err)
	}

	var results []TestResult
	for _, tf := range testFuncs(globals, path) {
		if r.Match != nil && !r.Match.MatchString(tf.name) {
			continue
		}
		if ctx.Err() != nil {
			break
		}
		testCtx, cancel := context.WithCancel(ctx)
		th := h.thread(testCtx, tf.name, l)
		stopOnCancel(testCtx, th)
		start := time.Now()
		_, err := starlark.Call(th, tf.fn, nil, nil)
		cancel()
		results = append(results, TestResult{File: path, Name: tf.name, Err: err, Elapsed: time.Since(start)})
	}
	return results
}

type testFunc struct {
	name string
	fn   *starlark.Function
}

// testFuncs returns the test_ functions among globals in the order of
// their definitions: those written in file first, by position, then any
// bound from elsewhere (e.g. loaded), by file and position.
func testFuncs(globals starlark.StringDict, file string) []testFunc {
	var out []testFunc
	for name, v := range globals {
		if fn, ok := v.(*starlark.Function); ok && strings.HasPrefix(name, "test_") {
			out = append(out, testFunc{name, fn})
		}
	}
	slices.SortFunc(out, func(a, b testFunc) int {
		pa, pb := a.fn.Position(), b.fn.Position()
		if c := cmp.Compare(boolInt(pa.Filename() != file), boolInt(pb.Filename() != file)); c != 0 {
			return c
		}
		return cmp.Or(cmp.Compare(pa.Filename(), pb.Filename()), cmp.Compare(pa.Line, pb.Line),
			cmp.Compare(pa.Col, pb.Col), cmp.Compare(a.name, b.name))
	})
	return out
}

func boolInt(b bool) int {
	if b {
		return 1
	}
	return 0
}

// FindTestFiles returns the *_test.star files named by paths, sorted:
// a file is taken as it is, a directory is searched recursively, skipping
// hidden directories (such as the store, .lens) and testdata directories
// unless the path names them itself. No paths means ".".
func FindTestFiles(paths []string) ([]string, error) {
	if len(paths) == 0 {
		paths = []string{"."}
	}
	seen := map[string]bool{}
	var files []string
	add := func(p string) {
		p = filepath.Clean(p)
		if !seen[p] {
			seen[p] = true
			files = append(files, p)
		}
	}
	for _, root := range paths {
		info, err := os.Stat(root)
		if err != nil {
			return nil, fmt.Errorf("find tests: %w", err)
		}
		if !info.IsDir() {
			add(root)
			continue
		}
		err = filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.IsDir() {
				if p != root && (strings.HasPrefix(d.Name(), ".") || d.Name() == "testdata") {
					return filepath.SkipDir
				}
				return nil
			}
			if strings.HasSuffix(d.Name(), TestSuffix) {
				add(p)
			}
			return nil
		})
		if err != nil {
			return nil, fmt.Errorf("find tests under %s: %w", root, err)
		}
	}
	slices.Sort(files)
	return files, nil
}
