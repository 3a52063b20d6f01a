package train

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
)

// TestEvalExampleBatches checks that held-out examples evaluated in
// right-padded batches give the mean loss over their trained tokens that
// each example gives alone in a graph of its own length, without padding:
// padding is never attended to and never scored, and batches are weighed
// by their counted targets.
func TestEvalExampleBatches(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, 4)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	const B, T = 4, 16
	var rows []sft.Row
	for _, n := range []int{17, 5, 9, 2, 13, 11, 3} { // 7 rows: the second batch has a filler row
		r := sft.Row{Where: "row"}
		for i := range n {
			tk := int32(rng.IntN(cfg.VocabSize))
			r.Tokens = append(r.Tokens, tk)
			if i < n/3 {
				tk = sft.Ignore // a prompt
			}
			r.Labels = append(r.Labels, tk)
		}
		rows = append(rows, r)
	}
	bs, err := sft.EvalBatches(rows, B, T)
	require.NoError(t, err)
	tb, err := sft.NewBatcher(rows, B, T, 0)
	require.NoError(t, err)
	tr, err := New(m, ad, tb, []EvalSet{{Name: "ex", Batches: bs}}, Config{BatchSize: B, SeqLen: T})
	require.NoError(t, err)
	defer tr.Close()
	got, err := tr.Evaluate()
	require.NoError(t, err)

	var sum float64
	var count int
	for _, r := range rows {
		n := len(r.Tokens) - 1
		f, err := newForwardNet(m, ad, 1, n, 1)
		require.NoError(t, err)
		f.feed.Inputs, f.feed.Targets = r.Tokens[:n], r.Labels[1:]
		l, err := f.mach.Run()
		require.NoError(t, err)
		f.mach.Close()
		sum += l * float64(r.Trained())
		count += r.Trained()
	}
	want := sum / float64(count)
	require.InDelta(t, want, got["ex"], 1e-5*want)

	res, err := evalBatches(bs, B, T, 1, func(in, tg []int32) (float64, error) { return tr.evalNet.run(in, tg) })
	require.NoError(t, err)
	require.Equal(t, 4, res.Windows, "eval_batches caps the batches")
	_, err = evalBatches(bs, B, 8, 0, nil)
	require.ErrorContains(t, err, "want batch_size×seq_len = 4×8")
}
