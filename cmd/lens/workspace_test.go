package main

import (
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestRunScriptElsewhere: `lens run /elsewhere/x.star` from another
// directory runs the script with its own directory as the workspace: it
// loads its neighbours and reads files there; leaving it is still refused.
func TestRunScriptElsewhere(t *testing.T) {
	elsewhere := t.TempDir()
	outside := t.TempDir()
	files := map[string]string{
		"corpus.txt": corpus(),
		"lib.star":   "def double(x):\n    return 2 * x\n",
		"x.star":     "load('lib.star', 'double')\nd = data.text(" + quote(filepath.Join(elsewhere, "corpus.txt")) + ")\nprint('LOADED', double(21))\n",
		"up.star":    "load('../outside.star', 'x')\n",
		"far.star":   "data.text(" + quote(filepath.Join(outside, "f.txt")) + ")\n",
	}
	for name, body := range files {
		require.NoError(t, writeFileT(filepath.Join(elsewhere, name), body))
	}
	require.NoError(t, writeFileT(filepath.Join(outside, "f.txt"), corpus()))
	cwd := t.TempDir()
	cases := []struct {
		script string
		code   int
		want   string
	}{
		{"x.star", 0, "LOADED 42"},
		{"up.star", 1, "outside the workspace"},
		{"far.star", 1, "outside the workspace"},
	}
	for _, c := range cases {
		out, stderr, code := lens(t, cwd, "run", filepath.Join(elsewhere, c.script))
		require.Equal(t, c.code, code, "%s: %s%s", c.script, out, stderr)
		require.Contains(t, out+stderr, c.want, c.script)
	}
	// A script under the current directory keeps it as the workspace: it
	// may read files beside its own folder, relative to here.
	here := workspace(t, map[string]string{"corpus.txt": corpus(), "sub/y.star": "data.text('corpus.txt')\nprint('READ')\n"})
	out, stderr, code := lens(t, here, "run", "sub/y.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "READ")
}

func TestWorkspaceOf(t *testing.T) {
	cases := []struct{ script, wd, want string }{
		{"/w/x.star", "/w", "/w"},
		{"/w/sub/x.star", "/w", "/w"},
		{"/elsewhere/x.star", "/w", "/elsewhere"},
		{"/w2/x.star", "/w", "/w2"},
	}
	for _, c := range cases {
		if got := workspaceOf(c.script, c.wd); got != c.want {
			t.Errorf("workspaceOf(%q, %q) = %q, want %q", c.script, c.wd, got, c.want)
		}
	}
}

func quote(s string) string { return "'" + s + "'" }

func writeFileT(path, body string) error { return os.WriteFile(path, []byte(body), 0o644) }
