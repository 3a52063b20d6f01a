package builtins

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"

	"lens/kv"
)

// TestRecordsAndCheckpointsConversion: run.records converts a collector's
// JSON records to structs whose value dict leaves out what the record
// leaves out (adapter_grads' ratio while ∇A = 0, the cosine with a zero
// previous gradient: absent, not 0), filters by step, and reads JSON only;
// run.checkpoints() gives an eval loss only for a checkpoint whose step
// evaluated (eval_every = 0: the last one).
func TestRecordsAndCheckpointsConversion(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	out, err := runWithStore(t, st, `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
r = lens.train(model = base, data = data.opticks(), lora = lora.config(r = 4, alpha = 8, targets = ["q_proj"]),
               steps = 4, batch_size = 2, seq_len = 16, checkpoint_every = 2, eval_batches = 1,
               collect = [collect.adapter_grads(every = 1), collect.adapter_weights(every = 2, tensors = True)])
mod = "model.layers.0.self_attn.q_proj"
def rec(step):
    return [x for x in r.records("adapter_grads", step = step) if x.name == mod][0]
first, second, third = rec(1), rec(2), rec(3)
steps = sorted({x.step: 1 for x in r.records("adapter_grads")}.keys())
weights = r.records("adapter_weights")
ckpts = [(c.step, c.eval_loss) for c in r.checkpoints()]
`, nil)
	require.NoError(t, err)
	keys := func(name string) []string {
		v, err := out[name].(starlark.HasAttrs).Attr("value")
		require.NoError(t, err)
		var ks []string
		for _, k := range v.(*starlark.Dict).Keys() {
			ks = append(ks, string(k.(starlark.String)))
		}
		return ks
	}
	require.NotContains(t, keys("first"), "ratio_b_a", "∇A = 0 at step 1: no ratio")
	require.NotContains(t, keys("first"), "cos_prev_a")
	require.NotContains(t, keys("first"), "cos_prev_b", "no previous gradient at step 1")
	require.Contains(t, keys("second"), "ratio_b_a")
	require.NotContains(t, keys("second"), "cos_prev_a", "step 1's ∇A was zero")
	require.Contains(t, keys("second"), "cos_prev_b")
	require.Contains(t, keys("third"), "cos_prev_a")
	require.Equal(t, "[1, 2, 3, 4]", out["steps"].String())
	require.Equal(t, 2*2, out["weights"].(*starlark.List).Len(), "JSON records only (tensors=True adds A and B tensors, not records)")
	ck := out["ckpts"].(*starlark.List)
	require.Equal(t, 2, ck.Len())
	require.Equal(t, "(2, {})", ck.Index(0).String())
	last := ck.Index(1).(starlark.Tuple)
	require.Equal(t, "4", last[0].String())
	require.Equal(t, 1, last[1].(*starlark.Dict).Len())
}
