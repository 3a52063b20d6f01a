package runtime

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
)

// outcome is "PASS" or the failure's formatted backtrace, by "file test".
func outcomes(results []TestResult) (names []string, got map[string]string) {
	got = map[string]string{}
	for _, r := range results {
		key := filepath.Base(r.File) + " " + r.Name
		names = append(names, key)
		if r.Passed() {
			got[key] = "PASS"
		} else {
			got[key] = FormatError(r.Err)
		}
	}
	return names, got
}

func TestExamples(t *testing.T) {
	files, err := FindTestFiles([]string{"testdata/lenstest"})
	require.NoError(t, err)
	require.Equal(t, []string{"testdata/lenstest/broken_test.star", "testdata/lenstest/fail_test.star", "testdata/lenstest/pass_test.star"}, files)
	var out bytes.Buffer
	r := &TestRunner{Host: Host{Root: ".", Out: &out}}
	results, err := r.Run(context.Background(), files)
	require.NoError(t, err)
	names, got := outcomes(results)
	// Files sorted, tests in the order of definition, helpers skipped.
	require.Equal(t, []string{
		"broken_test.star <load>",
		"fail_test.star test_passes_first", "fail_test.star test_eq_fails", "fail_test.star test_fails_without_error",
		"fail_test.star test_fails_wrong_message", "fail_test.star test_close_fails", "fail_test.star test_runs_after_failures",
		"pass_test.star test_equality", "pass_test.star test_ordering", "pass_test.star test_close",
		"pass_test.star test_contains", "pass_test.star test_fails", "pass_test.star test_grid",
	}, names)
	for _, n := range names {
		if strings.HasPrefix(n, "pass_test") || strings.HasSuffix(n, "test_passes_first") || strings.HasSuffix(n, "test_runs_after_failures") {
			require.Equal(t, "PASS", got[n], n)
		} else {
			require.NotEqual(t, "PASS", got[n], n)
		}
	}
	// A failed assertion names the file:line of the assert call, the message and both values.
	require.Contains(t, got["fail_test.star test_eq_fails"], "testdata/lenstest/fail_test.star:8:14: in test_eq_fails")
	require.Contains(t, got["fail_test.star test_eq_fails"], "Error in assert.eq: loss after training: 2.5 != 3.0")
	require.Contains(t, got["fail_test.star test_fails_without_error"], `lambda did not fail (it returned 1); want an error matching "anything"`)
	require.Contains(t, got["fail_test.star test_fails_wrong_message"], `failed with "fail: out of memory", which does not match "NaN"`)
	require.Contains(t, got["fail_test.star test_close_fails"], "fail_test.star:17:")
	require.Contains(t, got["fail_test.star test_close_fails"], "[1.0, 2.0, 3.0] is not close to [1.0, 2.0, 3.1]: at [2]: 3.0 vs 3.1")
	// The broken file's top-level error, with its position.
	require.Contains(t, got["broken_test.star <load>"], "broken_test.star:8:16: in <toplevel>")
	require.Contains(t, got["broken_test.star <load>"], `key "rank" not in dict`)
}

func TestMatch(t *testing.T) {
	r := &TestRunner{Host: Host{Root: ".", Out: &bytes.Buffer{}}, Match: regexp.MustCompile("clo")}
	results, err := r.Run(context.Background(), []string{"testdata/lenstest/fail_test.star", "testdata/lenstest/pass_test.star"})
	require.NoError(t, err)
	names, _ := outcomes(results)
	require.Equal(t, []string{"fail_test.star test_close_fails", "pass_test.star test_close"}, names)
}

func writeFiles(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// probe counts its calls in a thread local, so a test sees 1 on the first
// call only if its thread is new.
var probe = starlark.NewBuiltin("probe", func(t *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	n, _ := t.Local("probe").(int)
	n++
	t.SetLocal("probe", n)
	return starlark.MakeInt(n), nil
})

var threadName = starlark.NewBuiltin("thread_name", func(t *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
	return starlark.String(t.Name), nil
})

func TestFreshThreadPerTest(t *testing.T) {
	// Each test calls probe() twice on its own thread; the top level has
	// already called it on the file's thread.
	src := `
assert.eq(probe(), 1)
def check(name):
    assert.eq(probe(), 1, msg = name + " starts on a fresh thread")
    assert.eq(probe(), 2)
    assert.eq(thread_name(), name)
    assert.eq(env(), "file a_test.star")
def test_one():
    check("test_one")
def test_two():
    check("test_two")
    fail("a failure does not leak into the next test")
test_three = lambda: check("test_three")
`
	dir := writeFiles(t, map[string]string{"a_test.star": src})
	file := filepath.Join(dir, "a_test.star")
	var setups []string
	r := &TestRunner{
		Host: Host{Root: dir, Out: &bytes.Buffer{}, Predecl: starlark.StringDict{"probe": probe, "thread_name": threadName}},
		FileSetup: func(path string, src []byte) func(*starlark.Thread) {
			setups = append(setups, path)
			return func(t *starlark.Thread) {
				t.SetLocal("env", "file "+filepath.Base(path))
			}
		},
	}
	r.Host.Predecl["env"] = starlark.NewBuiltin("env", func(t *starlark.Thread, _ *starlark.Builtin, _ starlark.Tuple, _ []starlark.Tuple) (starlark.Value, error) {
		s, _ := t.Local("env").(string)
		return starlark.String(s), nil
	})
	results, err := r.Run(context.Background(), []string{file})
	require.NoError(t, err)
	require.Equal(t, []string{file}, setups)
	names, got := outcomes(results)
	require.Equal(t, []string{"a_test.star test_one", "a_test.star test_two", "a_test.star test_three"}, names)
	require.Equal(t, "PASS", got["a_test.star test_one"])
	require.Contains(t, got["a_test.star test_two"], "a failure does not leak")
	require.Equal(t, "PASS", got["a_test.star test_three"])

	// Running one test alone gives the same result as running it after others.
	r.Match = regexp.MustCompile("^test_three$")
	results, err = r.Run(context.Background(), []string{file})
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.True(t, results[0].Passed())
}

func TestCancel(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"a_test.star": "def test_spins():\n    while True:\n        pass\ndef test_skipped():\n    pass\n",
		"b_test.star": "def test_skipped_too():\n    pass\n",
	})
	files, err := FindTestFiles([]string{dir})
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	time.AfterFunc(200*time.Millisecond, cancel)
	r := &TestRunner{Host: Host{Root: dir, Out: &bytes.Buffer{}}}
	results, err := r.Run(ctx, files)
	require.ErrorIs(t, err, context.Canceled)
	require.Len(t, results, 1)
	require.Equal(t, "test_spins", results[0].Name)
	require.ErrorContains(t, results[0].Err, "interrupted")
}

func TestLoads(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"lib.star":           "def double(x):\n    return 2 * x\n",
		"t/a_test.star":      "load('../lib.star', 'double')\ndef test_double():\n    assert.eq(double(2), 4)\n",
		"t/self_test.star":   "load('self_test.star', 'x')\nx = 1\n",
		"t/syntax_test.star": "def test_x(:\n    pass\n",
	})
	files, err := FindTestFiles([]string{filepath.Join(dir, "t")})
	require.NoError(t, err)
	r := &TestRunner{Host: Host{Root: dir, Out: &bytes.Buffer{}}}
	results, err := r.Run(context.Background(), files)
	require.NoError(t, err)
	_, got := outcomes(results)
	require.Equal(t, "PASS", got["a_test.star test_double"])
	require.Contains(t, got["self_test.star <load>"], "load cycle")
	require.Contains(t, got["syntax_test.star <load>"], "syntax_test.star:1:13: syntax error")

	// A test file outside the workspace does not load.
	r.Host.Root = filepath.Join(dir, "t", "sub")
	require.NoError(t, os.MkdirAll(r.Host.Root, 0o755))
	results, err = r.Run(context.Background(), files[:1])
	require.NoError(t, err)
	require.Len(t, results, 1)
	require.Equal(t, LoadTest, results[0].Name)
	require.ErrorContains(t, results[0].Err, "outside the workspace")
}

func TestFindTestFiles(t *testing.T) {
	dir := writeFiles(t, map[string]string{
		"b_test.star":                     "",
		"a_test.star":                     "",
		"notatest.star":                   "",
		"sub/c_test.star":                 "",
		"sub/testdata/d_test.star":        "",
		"sub/.hidden/e_test.star":         "",
		".lens/f_test.star":               "",
		"testdata/x/g_test.star":          "",
		"testdata/x/testdata/h_test.star": "",
	})
	rel := func(files []string) []string {
		var out []string
		for _, f := range files {
			r, err := filepath.Rel(dir, f)
			require.NoError(t, err)
			out = append(out, filepath.ToSlash(r))
		}
		return out
	}
	files, err := FindTestFiles([]string{dir})
	require.NoError(t, err)
	require.Equal(t, []string{"a_test.star", "b_test.star", "sub/c_test.star"}, rel(files))
	// testdata is searched when named; its own testdata is not. A named file is taken as it is; duplicates once.
	files, err = FindTestFiles([]string{filepath.Join(dir, "testdata"), filepath.Join(dir, "notatest.star"), filepath.Join(dir, "a_test.star"), dir})
	require.NoError(t, err)
	require.Equal(t, []string{"a_test.star", "b_test.star", "notatest.star", "sub/c_test.star", "testdata/x/g_test.star"}, rel(files))
	_, err = FindTestFiles([]string{filepath.Join(dir, "missing")})
	require.ErrorContains(t, err, "missing")
	// Relative paths stay relative.
	t.Chdir(dir)
	files, err = FindTestFiles(nil)
	require.NoError(t, err)
	require.Equal(t, []string{"a_test.star", "b_test.star", filepath.Join("sub", "c_test.star")}, files)
}

// TestAssert checks each assert function's pass and failure, one snippet a case.
func TestAssert(t *testing.T) {
	cases := []struct {
		src  string
		fail string // "" passes
	}{
		{`assert.eq(1, 1)`, ""},
		{`assert.eq("a", "b")`, `Error in assert.eq: "a" != "b"`},
		{`assert.eq(1, 2, msg = "why")`, "why: 1 != 2"},
		{`assert.ne(1, 2)`, ""},
		{`assert.ne([1], [1])`, "[1] == [1]"},
		{`assert.true(1)`, ""},
		{`assert.true("", msg = "empty")`, `empty: "" is not true`},
		{`assert.false(None)`, ""},
		{`assert.false([1])`, "[1] is not false"},
		{`assert.lt(1, 2); assert.le(1, 1); assert.gt(2, 1); assert.ge(1, 1)`, ""},
		{`assert.lt(2, 1)`, "2 is not < 1"},
		{`assert.le(2, 1)`, "2 is not <= 1"},
		{`assert.gt(1, 2)`, "1 is not > 2"},
		{`assert.ge(1, 2)`, "1 is not >= 2"},
		{`assert.lt(1, "a")`, "Error in assert.lt: int < string not implemented"},
		{`assert.close(1, 1.0000001)`, ""},
		{`assert.close(1.0, 1.1)`, "1.0 is not close to 1.1: |diff| 0.1 > 1.1e-06 (rtol=1e-06, atol=0)"},
		{`assert.close(1.0, 1.1, rtol = 0.1)`, ""},
		{`assert.close(0.0, 1e-3, atol = 1e-2)`, ""},
		{`assert.close(float("inf"), float("inf"))`, ""},
		{`assert.close(float("nan"), float("nan"))`, "is not close"},
		{`assert.close([1, 2], [1])`, "lengths differ: 2 != 1"},
		{`assert.close([[1, 2]], [[1, 3]])`, "at [0][1]: 2 vs 3"},
		{`assert.close("a", "a")`, "want numbers or equal-length lists of numbers, got string and string"},
		{`assert.close(1, 1, rtol = -1)`, "must not be negative"},
		{`assert.close(1, 2, atol = 1)`, ""},
		{`assert.close(1, 2, atol = "x")`, "rtol and atol must be numbers (got float and string)"},
		{`assert.contains([1, 2], 1)`, ""},
		{`assert.contains({"a": 1}, "b")`, `{"a": 1} does not contain "b"`},
		{`assert.contains(1, 1)`, "unknown binary op"},
		{`assert.eq(assert.fails(lambda: fail("x1"), "x[0-9]"), "fail: x1")`, ""},
		{`assert.fails(lambda: None, "x")`, `lambda did not fail (it returned None); want an error matching "x"`},
		{`assert.fails(1, "x")`, "for parameter fn: got int, want callable"},
		{`assert.fails(lambda: fail("x"), "(")`, "pattern: error parsing regexp"},
		{`assert.fails(lambda: assert.fails(lambda: 1, "y"), "did not fail")`, ""},
		{`assert.eq(1)`, "missing argument for b"},
	}
	for _, c := range cases {
		th := &starlark.Thread{Name: "t"}
		_, err := starlark.ExecFileOptions(FileOptions, th, "case.star", c.src, starlark.StringDict{"assert": AssertModule})
		if c.fail == "" {
			require.NoError(t, err, c.src)
			continue
		}
		require.Error(t, err, c.src)
		require.Contains(t, FormatError(err), c.fail, c.src)
		require.Contains(t, FormatError(err), "case.star:1:", c.src)
	}
}
