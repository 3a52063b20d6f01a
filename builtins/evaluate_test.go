package builtins

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"

	"lens/kv"
)

// evaluate.generate scores a model and a run on held-out examples with a
// built-in scorer and a script's function, stores a run's score as its
// metric, and refuses what it cannot score.
func TestEvaluateGenerate(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	out, err := runWithStore(t, st, `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
rows = [{"prompt": "say %s:" % w, "completion": " " + w} for w in ["red", "green", "blue", "cyan"]]
d = data.examples(rows, eval = rows)
r = lens.train(model = base, data = d, full = True, steps = 60, batch_size = 4, seq_len = 32, lr = 3e-3, schedule = "constant")
before = evaluate.generate(base, d, max_new_tokens = 8)
after = evaluate.generate(r, d, max_new_tokens = 8)
calls = []
def first_letter(pred, ex):
    calls.append(ex["expected"])
    return pred.strip()[:1] == ex["expected"].strip()[:1]
custom = evaluate.generate(r, d, scorer = first_letter, max_new_tokens = 8, limit = 2)
score = r.metrics("gen/examples/exact")
n_calls = len(calls)
`, nil)
	require.NoError(t, err)
	get := func(d starlark.Value, k string) starlark.Value {
		v, _, err := d.(*starlark.Dict).Get(starlark.String(k))
		require.NoError(t, err)
		return v
	}
	require.Equal(t, "0", get(out["before"], "score").String())
	require.Equal(t, "1", get(out["after"], "score").String(), get(out["after"], "predictions").String())
	require.Equal(t, "4", get(out["after"], "n").String())
	require.Equal(t, "1", get(out["custom"], "score").String())
	require.Equal(t, "2", out["n_calls"].String())
	require.Equal(t, "[(60, 1.0)]", out["score"].String())

	for _, tc := range []struct{ src, want string }{
		{`evaluate.generate(model.tiny(), data.opticks())`, "want examples"},
		{`evaluate.generate(model.tiny(), data.examples([{"prompt": "a", "completion": "b"}] * 3, eval = [{"prompt": "a", "completion": "b"}]), scorer = "close")`, `unknown scorer "close"`},
		{`evaluate.generate(model.tiny(), data.examples([{"text": "ab"}] * 3, eval = [{"text": "a"}]))`, "no prompt to answer"},
		{`evaluate.generate("x", data.examples([{"prompt": "a", "completion": "b"}] * 3, eval = [{"prompt": "a", "completion": "b"}]))`, "want run or model"},
		{`data.gofunc(task = "poem")`, `task "poem"`},
	} {
		_, err := runWithStore(t, st, tc.src, nil)
		require.ErrorContains(t, err, tc.want, tc.src)
	}
}
