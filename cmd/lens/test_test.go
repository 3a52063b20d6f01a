package main

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// lensTestWorkspace copies runtime/testdata/lenstest into a workspace as
// lenstest/ and adds the given files.
func lensTestWorkspace(t *testing.T, files map[string]string) string {
	t.Helper()
	src := filepath.Join("..", "..", "runtime", "testdata", "lenstest")
	entries, err := os.ReadDir(src)
	require.NoError(t, err)
	all := map[string]string{}
	for _, e := range entries {
		b, err := os.ReadFile(filepath.Join(src, e.Name()))
		require.NoError(t, err)
		all[filepath.Join("lenstest", e.Name())] = string(b)
	}
	for k, v := range files {
		all[k] = v
	}
	return workspace(t, all)
}

func lastLine(s string) string {
	lines := strings.Split(strings.TrimRight(s, "\n"), "\n")
	return lines[len(lines)-1]
}

// rowFor returns the table row naming test, or "".
func rowFor(out, file, test string) string {
	for _, l := range strings.Split(out, "\n") {
		if strings.Contains(l, " "+file+" ") && strings.Contains(l, " "+test+" ") {
			return l
		}
	}
	return ""
}

func TestLensTest(t *testing.T) {
	dir := lensTestWorkspace(t, map[string]string{
		"testdata/skipped_test.star": "def test_not_found():\n    fail('testdata is searched only when named')\n",
		".hidden/skipped_test.star":  "def test_not_found():\n    fail('hidden directories are skipped')\n",
	})

	out, stderr, code := lens(t, dir, "test")
	require.Equal(t, 1, code, out+stderr)
	require.Equal(t, "8 passed, 5 failed", lastLine(out))
	require.NotContains(t, out, "skipped_test.star")
	for _, row := range []struct{ file, test, result string }{
		{"lenstest/broken_test.star", "<load>", "FAIL"},
		{"lenstest/fail_test.star", "test_passes_first", "PASS"},
		{"lenstest/fail_test.star", "test_eq_fails", "FAIL"},
		{"lenstest/fail_test.star", "test_runs_after_failures", "PASS"},
		{"lenstest/pass_test.star", "test_fails", "PASS"},
	} {
		l := rowFor(out, row.file, row.test)
		require.NotEmpty(t, l, "no row for %s %s in\n%s", row.file, row.test, out)
		require.Contains(t, l, " "+row.result+" ")
		require.Regexp(t, `\d+\.\d\ds`, l)
	}
	require.NotContains(t, out, "test_never_runs")
	// Failures come after the table, with the assert call's file:line and both values.
	tableEnd := strings.LastIndex(out, "└")
	require.Greater(t, tableEnd, 0)
	failures := out[tableEnd:]
	require.Contains(t, failures, "--- FAIL: lenstest/fail_test.star test_eq_fails")
	require.Contains(t, failures, "lenstest/fail_test.star:8:14: in test_eq_fails\nError in assert.eq: loss after training: 2.5 != 3.0")
	require.Contains(t, failures, `lambda did not fail (it returned 1); want an error matching "anything"`)
	require.Contains(t, failures, `lambda failed with "fail: out of memory", which does not match "NaN"`)
	require.Contains(t, failures, "--- FAIL: lenstest/broken_test.star <load>")
	require.Contains(t, failures, "lenstest/broken_test.star:8:16: in <toplevel>")
	require.NotContains(t, failures, "test_passes_first")

	// Only passing tests: exit 0.
	out, stderr, code = lens(t, dir, "test", "lenstest/pass_test.star")
	require.Equal(t, 0, code, out+stderr)
	require.Equal(t, "6 passed, 0 failed", lastLine(out))
	require.NotContains(t, out, "--- FAIL")

	// --run filters by test name, before or after the paths.
	out, stderr, code = lens(t, dir, "test", "lenstest", "--run", "^test_(close|equality)")
	require.Equal(t, 1, code, out+stderr)
	require.Equal(t, "2 passed, 2 failed", lastLine(out), out) // <load> of broken_test.star counts
	require.NotEmpty(t, rowFor(out, "lenstest/fail_test.star", "test_close_fails"))
	require.Empty(t, rowFor(out, "lenstest/pass_test.star", "test_grid"))
	out, _, code = lens(t, dir, "test", "--run", "equality", "lenstest/pass_test.star", "lenstest/fail_test.star")
	require.Equal(t, 0, code)
	require.Equal(t, "1 passed, 0 failed", lastLine(out))

	// testdata is searched when named.
	out, _, code = lens(t, dir, "test", "testdata")
	require.Equal(t, 1, code)
	require.Contains(t, out, "testdata is searched only when named")
	require.Equal(t, "0 passed, 1 failed", lastLine(out))

	// Usage errors.
	for _, args := range [][]string{{"test", "--run", "("}, {"test", "missing"}, {"test", "--bogus"}} {
		out, stderr, code = lens(t, dir, args...)
		require.Equal(t, 2, code, "%v: %s%s", args, out, stderr)
		require.NotContains(t, stderr, "goroutine")
	}
	// Nothing to run.
	out, _, code = lens(t, dir, "test", "--run", "nothing_matches", "lenstest/pass_test.star")
	require.Equal(t, 0, code)
	require.Equal(t, "no tests to run\n0 passed, 0 failed\n", out)
}

func TestLensTestTrains(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"train_test.star": tinyScript + `
def test_lora_lowers_loss():
    r = train(name = "from-test")
    assert.eq(r.status, "done")
    assert.lt(r.final_loss, r.eval_loss(step = 0), msg = "training lowers the eval loss")
    assert.eq(len(r.metrics("loss")), 6)

def test_bad_rank():
    assert.fails(lambda: lora.config(r = 0), "must be positive")
`,
	})
	out, stderr, code := lens(t, dir, "test")
	require.Equal(t, 0, code, out+stderr)
	require.Equal(t, "2 passed, 0 failed", lastLine(out))
	out, stderr, code = lens(t, dir, "show", "from-test")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "status   done")
	require.Contains(t, out, "train_test.star")
}

func TestLensTestInterrupt(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a_test.star": tinyScript + `
def test_long():
    train(name = "long", steps = 100000)
def test_after():
    pass
`,
	})
	cmd := exec.Command(lensBin, "test")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LENS_STORE=")
	var outb, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &outb, &errb
	require.NoError(t, cmd.Start())
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(errb.String(), "step 1") {
		time.Sleep(200 * time.Millisecond)
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	var ee *exec.ExitError
	require.ErrorAs(t, err, &ee)
	require.Equal(t, 1, ee.ExitCode(), outb.String()+errb.String())
	require.Equal(t, "0 passed, 1 failed", lastLine(outb.String()))
	require.Contains(t, errb.String(), "interrupted")
	require.NotContains(t, outb.String(), "test_after")
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	m, err := st.FindRun("long")
	require.NoError(t, err)
	require.Equal(t, kv.StatusCancelled, m.Status)
}

// TestRepositoryScriptTests runs the repository's own *_test.star files
// (scripts/) with lens test, in a scratch workspace.
func TestRepositoryScriptTests(t *testing.T) {
	files, err := filepath.Glob(filepath.Join("..", "..", "scripts", "*_test.star"))
	require.NoError(t, err)
	require.NotEmpty(t, files)
	ws := map[string]string{}
	for _, f := range files {
		b, err := os.ReadFile(f)
		require.NoError(t, err)
		ws[filepath.Join("scripts", filepath.Base(f))] = string(b)
	}
	dir := workspace(t, ws)
	out, stderr, code := lens(t, dir, "test", "scripts")
	require.Equal(t, 0, code, out+stderr)
	require.Regexp(t, `(?m)^\d+ passed, 0 failed$`, out)
}
