package runs

import (
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/model"
	"lens/kv"
)

// bigVocab is a model whose embedding (131,072 × 136 float32, 71 MB) is
// over Badger's value limit (kv.MaxValueBytes), the size of a real
// vocabulary's embedding: its base blob and a full fine-tune's checkpoints
// (the embedding and its two AdamW moments) go in chunks.
func bigVocab() model.Config {
	cfg := model.Tiny()
	cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 131072, 136, 272, 1
	return cfg
}

func init() {
	crashScenarios["bigvocab"] = func(st *kv.Store) (Spec, *model.Model, error) {
		base, err := model.New(bigVocab(), 5)
		if err != nil {
			return Spec{}, nil, err
		}
		ref, err := StoreBase(st, base)
		if err != nil {
			return Spec{}, nil, err
		}
		spec := tinySpecFrom(ref)
		spec.LoRA = nil
		spec.KeepLast = 1
		spec.CheckpointEvery = 1
		spec.Train.Steps, spec.Train.BatchSize, spec.Train.SeqLen = 3, 1, 16
		spec.Train.EvalEvery, spec.Train.EvalBatches = 0, 1
		spec.Train.LR = 1e-3
		return spec, base, nil
	}
}

// A base model over the store's value limit goes in and comes back exactly
// (issue 22: model.new with a real vocabulary failed to store its base).
func TestLargeVocabBase(t *testing.T) {
	if testing.Short() {
		t.Skip("stores a 71 MB embedding")
	}
	st := openStore(t)
	base, err := model.New(bigVocab(), 5)
	require.NoError(t, err)
	emb := base.Weights["model.embed_tokens.weight"]
	require.Greater(t, 4*len(emb.Data), kv.MaxValueBytes)
	ref, err := StoreBase(st, base)
	require.NoError(t, err)
	back, err := LoadBase(st, Spec{Base: ref})
	require.NoError(t, err)
	require.Equal(t, HashModel(base), HashModel(back))
	problems, err := st.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)
}

// A full fine-tune of that model, killed just before its second
// checkpoint, resumes from the first (its embedding and moments read back
// from chunks) to exactly the uninterrupted run. The checkpoint still fits
// one Badger transaction (large values travel as pointers), so it commits
// whole or not at all.
func TestLargeVocabCrash(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and kills a full fine-tune of a 71 MB embedding")
	}
	crashAndCompare(t, "bigvocab", kv.FaultCheckpointBegin, 2)
}
