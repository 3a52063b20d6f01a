package builtins

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"

	"lens/kv"
)

// model.from_dir(quantize="nf4") trains LoRA with the run recording
// base_quant, and the same script with base_quant= on a float32 model
// gives the same losses bit for bit; a mismatched base_quant and an
// unknown form are refused; the quantized model generates.
func TestFromDirQuantize(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	dir := tokenizerDir(t)
	out, err := runWithStore(t, st, `
tok = model.tokenizer(dir)
model.tiny(vocab_size = tok.vocab_size, hidden_size = 64, intermediate_size = 128, num_hidden_layers = 2, seed = 1).save(dir)
rows = [{"text": "fox %d" % i} for i in range(40)]
d = data.examples(rows)
q = model.from_dir(dir, quantize = "nf4")
a = lens.train(model = q, data = d, steps = 3, batch_size = 2, seq_len = 16, lr = 1e-2)
b = lens.train(model = model.from_dir(dir), data = d, steps = 3, batch_size = 2, seq_len = 16, lr = 1e-2, base_quant = "nf4")
c = lens.train(model = model.from_dir(dir), data = d, steps = 3, batch_size = 2, seq_len = 16, lr = 1e-2)
la, lb, lc = a.metrics("loss"), b.metrics("loss"), c.metrics("loss")
ida = a.id
`, starlark.StringDict{"dir": starlark.String(dir)})
	require.NoError(t, err)
	require.Equal(t, out["la"].String(), out["lb"].String())
	require.NotEqual(t, out["la"].String(), out["lc"].String())
	id, _ := starlark.AsString(out["ida"])
	meta, err := st.GetRun(id)
	require.NoError(t, err)
	require.Contains(t, string(meta.Config), `"base_quant":"nf4"`)

	for _, tc := range []struct{ src, want string }{
		{`lens.train(model = model.from_dir(dir, quantize = "nf4"), data = data.examples([{"text": "ab"}] * 8), steps = 1, batch_size = 2, seq_len = 8, base_quant = "bf16")`, `loaded with quantize = "nf4"`},
		{`model.from_dir(dir, quantize = "int4")`, "nf4, nf4-dq, bf16"},
	} {
		_, err := runWithStore(t, st, tc.src, starlark.StringDict{"dir": starlark.String(dir)})
		require.ErrorContains(t, err, tc.want, tc.src)
	}
	// A quantized model generates on the CPU (engine/generate's
	// TestQuantizedDecode checks its logits).
	_, err = runWithStore(t, st, `model.generate(model.from_dir(dir, quantize = "nf4"), "hi", max_new_tokens = 2, device = "cpu")`, starlark.StringDict{"dir": starlark.String(dir)})
	require.NoError(t, err)
}
