package builtins

import (
	"bytes"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// TestModelGenerateDevice: device= is resolved as lens.train's. This test
// binary has no CUDA backend, so "auto" falls back to the CPU with a note
// (printed once) and decodes as "cpu" and None do, while "cuda" and
// unknown names are refused.
func TestModelGenerateDevice(t *testing.T) {
	run := func(src string) (starlark.StringDict, string, error) {
		var out bytes.Buffer
		th := &starlark.Thread{Name: "test"}
		(&Env{Out: &out}).Attach(th)
		g, err := starlark.ExecFileOptions(&syntax.FileOptions{}, th, "generate_test.star", src, Modules(nil))
		return g, out.String(), err
	}
	g, out, err := run(`
m = model.tiny()
none = model.generate(m, "ab", max_new_tokens = 6)
cpu = model.generate(m, "ab", max_new_tokens = 6, device = "cpu")
auto = model.generate(m, "ab", max_new_tokens = 6, device = "auto")
auto2 = model.generate(m, "ab", max_new_tokens = 6, device = "auto")
`)
	require.NoError(t, err)
	require.Equal(t, g["none"], g["cpu"])
	require.Equal(t, g["none"], g["auto"])
	require.Equal(t, g["none"], g["auto2"])
	require.Equal(t, 1, bytes.Count([]byte(out), []byte("device auto: ")), "the fallback note, once: %q", out)
	for _, c := range []struct{ arg, want string }{
		{`"cuda"`, `model.generate: for parameter "device": device = "cuda": this lens was built without the CUDA backend`},
		{`"gpu"`, `for parameter "device": device = "gpu": want "auto", "cpu" or "cuda"`},
		{`3`, `for parameter "device": want string, got int`},
	} {
		_, _, err := run(`model.generate(model.tiny(), "ab", max_new_tokens = 2, device = ` + c.arg + `)`)
		require.ErrorContains(t, err, c.want, c.arg)
	}
}
