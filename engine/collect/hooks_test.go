package collect

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
)

// TestLNFinalNormalizedBeforeWeight: the collectors' ln_final.hook_normalized
// is TransformerLens's, the final residual stream over its RMS before the
// final norm's weight (it was the forward pass's point of that name, after
// the weight). Times model.norm.weight it gives the forward pass's own
// normed output, the input of the unembedding; with a weight other than 1
// the two differ.
func TestLNFinalNormalizedBeforeWeight(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.RMSNormEps = 32, 64, 2, 0.01
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	w := m.Weights["model.norm.weight"]
	for i := range w.Data {
		w.Data[i] = 0.5 + float32(i%5)/4
	}
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj"}}, 1)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(1, 2))
	tokens := make([]int32, 2048)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(256))
	}
	b, err := data.NewBatcher(tokens, 2, 16, 1)
	require.NoError(t, err)
	tr, err := train.New(m, ad, b, nil, train.Config{Steps: 1, BatchSize: 2, SeqLen: 16})
	require.NoError(t, err)
	defer tr.Close()
	p := &Probe{Inputs: tokens[:32], Targets: tokens[1:33], Batch: 2}
	acts, err := probeForward(tr, p)
	require.NoError(t, err)
	norm, shape, err := acts.Read(LNFinalNormalized)
	require.NoError(t, err)
	require.Equal(t, []int{32, 32}, shape)
	raw, err := tr.Probe(p.Inputs, p.Targets, p.Batch)
	require.NoError(t, err)
	weighted, _, err := raw.Read(LNFinalNormalized)
	require.NoError(t, err)
	differs := 0
	for i, v := range norm {
		want := float64(weighted[i])
		got := float64(v) * float64(w.Data[i%32])
		require.InDelta(t, want, got, 1e-5*(1+math.Abs(want)), "position %d unit %d", i/32, i%32)
		if math.Abs(float64(v)-want) > 1e-3 {
			differs++
		}
	}
	require.Greater(t, differs, len(norm)/2, "before the weight, not after it")
	// Other hook points read through unchanged.
	a, _, err := acts.Read("blocks.1.hook_resid_post")
	require.NoError(t, err)
	r, _, err := raw.Read("blocks.1.hook_resid_post")
	require.NoError(t, err)
	require.Equal(t, r, a)
}
