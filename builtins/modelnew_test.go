package builtins

import (
	"context"
	"fmt"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"

	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

// TestModelNewFamilyDefaults: model.new applies the defaults a config.json
// with the same keys gets, those for absent keys included.
func TestModelNewFamilyDefaults(t *testing.T) {
	base := `"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64`
	for _, tc := range []struct{ src, want string }{
		{`m = model.new({"model_type": "mistral", ` + base + `})`, `sliding_window 4096 tied False`},
		{`m = model.new({"model_type": "mistral", "sliding_window": None, ` + base + `})`, `sliding_window 0 tied False`},
		{`m = model.new({"model_type": "gemma3_text", "head_dim": 8, ` + base + `})`, `sliding_window 4096 tied True`},
		{`m = model.new({"model_type": "gemma3_text", "head_dim": 8, "tie_word_embeddings": False, ` + base + `})`, `sliding_window 4096 tied False`},
	} {
		out, err := runStar(t, tc.src+"\nc = m.config\ns = \"sliding_window %d tied %s\" % (c.get(\"sliding_window\") or 0, c[\"tie_word_embeddings\"])", nil)
		require.NoError(t, err, tc.src)
		require.Equal(t, `"`+tc.want+`"`, out["s"].String(), tc.src)
	}
}

// TestModelNewTrainsPacked: lens.train(base_quant="nf4") on a model.new
// that nothing else touched draws the base packed (model.NewQuantized): the
// script's model value never holds float32 linear or vocabulary weights
// and the store no float32 copy (the run records the seed, not a blob).
// The run's losses equal bit for bit those of the same run on the same
// model drawn in float32 first (model.save draws it) and quantized by the
// trainer, both runs record the same base, and a copy of the packed run
// cancelled after its step-3 checkpoint and resumed from a script
// (lens.train(resume=)) stores exactly what the straight run did.
func TestModelNewTrainsPacked(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	const trainSrc = `lens.train(model = %s, data = data.opticks(), steps = 6, batch_size = 2, seq_len = 16, lr = 1e-2, lora = lora.config(r = 4, targets = ["all-linear"]),
    base_quant = "nf4", checkpointing = True, head_chunk = 8, checkpoint_every = 3, seed = 5)`
	out, err := runWithStore(t, st, `
cfg = {"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2, "num_attention_heads": 4,
       "num_key_value_heads": 2, "max_position_embeddings": 64, "tie_word_embeddings": True}
m = model.new(cfg, seed = 1)
a = `+fmt.Sprintf(trainSrc, "m")+`
f = model.new(cfg, seed = 1)
f.save(dir)
b = `+fmt.Sprintf(trainSrc, "f")+`
la, lb, ida, idb = a.metrics("loss"), b.metrics("loss"), a.id, b.id
`, starlark.StringDict{"dir": starlark.String(t.TempDir())})
	require.NoError(t, err)
	require.Equal(t, out["la"].String(), out["lb"].String())
	require.Equal(t, 6, out["la"].(*starlark.List).Len())

	mv := out["m"].(*Model)
	require.Nil(t, mv.m, "the float32 model was drawn")
	require.NotNil(t, mv.packed)
	require.Equal(t, model.QuantNF4, mv.packed.Quant)
	cfg := mv.packed.Config
	for _, mod := range cfg.LinearModules() {
		name := mod + ".weight"
		require.Nil(t, mv.packed.Weights[name].Data, name)
		require.Contains(t, mv.packed.Packed, name)
	}
	require.Nil(t, mv.packed.Weights[model.EmbedName].Data)
	require.Contains(t, mv.packed.Packed, model.EmbedName)
	require.NotNil(t, out["f"].(*Model).m)

	ida, _ := starlark.AsString(out["ida"])
	idb, _ := starlark.AsString(out["idb"])
	specs := map[string]runs.Spec{}
	for _, id := range []string{ida, idb} {
		meta, err := st.GetRun(id)
		require.NoError(t, err)
		specs[id], err = runs.SpecOf(meta)
		require.NoError(t, err)
	}
	ref := specs[ida].Base
	require.Equal(t, runs.BaseRef{Init: true, Seed: 1, Hash: mv.ref.Hash}, ref)
	require.Equal(t, ref, specs[idb].Base)
	fm, err := model.New(cfg, 1)
	require.NoError(t, err)
	require.Equal(t, runs.HashModel(fm), ref.Hash)
	stored, err := st.HasBlob("model", ref.Hash)
	require.NoError(t, err)
	require.False(t, stored, "the base was stored")

	// The same run, cut after its step-3 checkpoint and resumed by a script.
	spec := specs[ida]
	spec.Name = "cut"
	base, err := runs.LoadTrainingBase(st, spec)
	require.NoError(t, err)
	require.Equal(t, mv.packed.Packed, base.Packed)
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	ctx, cancel := context.WithCancel(context.Background())
	cut, err := job.Run(ctx, st, runs.Options{Hooks: []train.Hooks{{AfterStep: func(_ *train.Trainer, s *train.StepInfo) error {
		if s.Step == 3 {
			cancel()
		}
		return nil
	}}}})
	require.NoError(t, err)
	require.Equal(t, kv.StatusCancelled, cut.Status)
	out, err = runWithStore(t, st, `status = lens.train(resume = lens.run(id)).status`, starlark.StringDict{"id": starlark.String(cut.ID)})
	require.NoError(t, err)
	require.Equal(t, `"done"`, out["status"].String())
	diffs, err := runs.Differences(st, ida, cut.ID)
	require.NoError(t, err)
	require.Empty(t, diffs)
}
