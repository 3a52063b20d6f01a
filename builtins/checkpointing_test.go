package builtins

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"

	"lens/kv"
)

// lens.train(checkpointing=True) records the setting in the run and gives
// the losses and eval losses of the same run without it, bit for bit;
// full training refuses it by name.
func TestTrainCheckpointing(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	out, err := runWithStore(t, st, `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 3, seed = 1)
args = dict(model = base, data = data.opticks(), steps = 4, batch_size = 2, seq_len = 16, lr = 1e-2, eval_every = 2)
a = lens.train(checkpointing = True, **args)
b = lens.train(**args)
la, lb = a.metrics("loss"), b.metrics("loss")
ea, eb = a.metrics("eval/opticks"), b.metrics("eval/opticks")
ida = a.id
`, nil)
	require.NoError(t, err)
	require.Equal(t, out["lb"].String(), out["la"].String())
	require.Equal(t, out["eb"].String(), out["ea"].String())
	require.NotEqual(t, "[]", out["ea"].String(), "no eval loss recorded")
	id, _ := starlark.AsString(out["ida"])
	meta, err := st.GetRun(id)
	require.NoError(t, err)
	require.Contains(t, string(meta.Config), `"checkpointing":true`)

	_, err = runWithStore(t, st, `lens.train(model = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 1), data = data.opticks(), steps = 1, batch_size = 2, seq_len = 16, full = True, checkpointing = True)`, nil)
	require.ErrorContains(t, err, "checkpointing")
}
