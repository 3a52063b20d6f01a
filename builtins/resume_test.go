package builtins

import (
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// lens.train(resume=run) takes none of the arguments a new run requires;
// without resume=, a missing model is still an error.
func TestTrainResumeNeedsNoModel(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	out, err := runWithStore(t, st, `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
r = lens.train(name = "x", model = base, data = data.opticks(), steps = 4, batch_size = 2, seq_len = 16, checkpoint_every = 2)
again = lens.train(resume = lens.run(r.id))
status = again.status
`, nil)
	require.NoError(t, err)
	require.Equal(t, `"done"`, out["status"].String())
	_, err = runWithStore(t, st, `lens.train(data = data.opticks())`, nil)
	require.ErrorContains(t, err, "missing argument for model")
}
