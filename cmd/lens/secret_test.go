package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// Credentials in the environment never reach output or the store, even
// when a script passes them along as arguments, prints them, or fails with
// them in its message.
func TestSecretsNeverWritten(t *testing.T) {
	const token, key = "hf_secretTOKEN123456", "wandbKEY0987654321abc"
	t.Setenv("HF_TOKEN", token)
	t.Setenv("WANDB_API_KEY", key)
	script := tinyScript + `
print("token is", lens.args["token"])
r = train(name = "s")
fail("bad key " + lens.args["key"])
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "s.star": script})
	out, stderr, code := lens(t, dir, "run", "s.star", "--", "token="+token, "key="+key)
	require.Equal(t, 1, code, stderr)
	all := out + stderr
	for _, cmd := range [][]string{{"runs"}, {"show", "s"}} {
		o, e, c := lens(t, dir, cmd...)
		require.Equal(t, 0, c, e)
		all += o + e
	}
	require.Contains(t, all, "token is [HF_TOKEN redacted]")
	require.Contains(t, all, "bad key [WANDB_API_KEY redacted]")
	require.NotContains(t, all, token)
	require.NotContains(t, all, key)

	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	runs, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, runs, 1)
	require.Equal(t, "[HF_TOKEN redacted]", runs[0].Args["token"])
	require.NoError(t, st.Close())
	// Nothing in the store's files either (values are Snappy-compressed in
	// tables, so this also checks the value log and holder files as written).
	require.NoError(t, filepath.Walk(filepath.Join(dir, ".lens"), func(p string, fi os.FileInfo, err error) error {
		if err != nil || fi.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		require.NoError(t, err)
		require.False(t, strings.Contains(string(b), token) || strings.Contains(string(b), key), "secret in %s", p)
		return nil
	}))
}
