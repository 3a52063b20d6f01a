package train

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	gorgonia "gorgonia.org/gorgonia"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// wholeBatch computes the loss and the adapter gradients of inputs and
// targets with one graph over the whole batch, the reference the shards'
// weighted sum must match.
func wholeBatch(t *testing.T, tr *Trainer) (float64, [][]float32) {
	t.Helper()
	c := tr.Config
	feed := &nn.Feed{B: c.BatchSize, T: c.SeqLen, Inputs: tr.feed.Inputs, Targets: tr.feed.Targets, Masks: tr.feed.Masks}
	g := nn.NewGraph[float32](feed)
	net, err := model.Build(g, tr.Model, tr.Adapter.GraphAdapters(), false)
	require.NoError(t, err)
	var wrt []*gorgonia.Node
	for _, p := range tr.Params {
		wrt = append(wrt, net.Params[p.Name])
	}
	m, err := g.Compile(net.Loss, wrt...)
	require.NoError(t, err)
	loss, err := m.Run()
	require.NoError(t, err)
	var grads [][]float32
	for i := range tr.Params {
		gr, err := m.Grad(i)
		require.NoError(t, err)
		grads = append(grads, append([]float32(nil), gr...))
	}
	return loss, grads
}

// TestShardsMatchWholeBatch checks that the shards' weighted loss and
// gradients equal one graph's over the whole batch, when ignored targets
// fall unevenly on the shards (even all of one shard's), with dropout
// masks, and whatever GOMAXPROCS, bit for bit across core counts.
func TestShardsMatchWholeBatch(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q_proj", "v_proj", "down_proj"}}, 4)
	require.NoError(t, err)
	// B starts at zero; give it values so every gradient is non-trivial.
	rng := rand.New(rand.NewPCG(5, 6))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	const B, T = 4, 16
	for _, tc := range []struct {
		name   string
		ignore func(i int) bool // position i of the flattened batch
	}{
		{"all counted", func(int) bool { return false }},
		{"uneven", func(i int) bool { return i < B*T/2 && i%3 != 0 }},
		{"first shard ignored", func(i int) bool { return i < B*T/2 }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			var ref []float32
			for _, procs := range []int{1, 2, 3} {
				func() {
					defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
					tr, err := New(m, ad, nil, nil, Config{Steps: 1, BatchSize: B, SeqLen: T, Seed: 7})
					require.NoError(t, err)
					defer tr.Close()
					require.Len(t, tr.shards, 2)
					r := rand.New(rand.NewPCG(1, 2))
					for i := range tr.feed.Inputs {
						tr.feed.Inputs[i], tr.feed.Targets[i] = int32(r.IntN(cfg.VocabSize)), int32(r.IntN(cfg.VocabSize))
						if tc.ignore(i) {
							tr.feed.Targets[i] = -100
						}
					}
					tr.fillMasks()
					loss, sq, err := tr.microShards(1)
					require.NoError(t, err)
					wantLoss, want := wholeBatch(t, tr)
					require.InDelta(t, wantLoss, loss, 1e-6*math.Abs(wantLoss))
					var wantSq float64
					got := []float32{float32(loss)}
					for i, p := range tr.Params {
						for j, v := range want[i] {
							wantSq += float64(v) * float64(v)
							require.InDelta(t, v, p.Grad[j], 1e-6+1e-4*math.Abs(float64(v)), "%s[%d]", p.Name, j)
						}
						got = append(got, p.Grad...)
					}
					require.InDelta(t, wantSq, sq, 1e-4*wantSq)
					require.Greater(t, wantSq, 0.0)
					if ref == nil {
						ref = got
						return
					}
					for i := range got {
						if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
							t.Fatalf("GOMAXPROCS=%d: value %d is %v, with 1 it is %v", procs, i, got[i], ref[i])
						}
					}
				}()
			}
		})
	}
}

// TestProbeShardsMatchWholeBatch checks that Probe's activations, read
// from one graph per shard, have the names, shapes and values of one
// graph's over the whole probe batch: hooks, attention patterns and the
// LoRA hidden activations, for a batch that splits and one that does not.
func TestProbeShardsMatchWholeBatch(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, 4)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(7, 8))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	const T = 16
	tr, err := New(m, ad, nil, nil, Config{Steps: 1, BatchSize: 2, SeqLen: T})
	require.NoError(t, err)
	defer tr.Close()
	// Batch 2 twice: the second probe must not read the first one's joins.
	for _, batch := range []int{2, 3, 2} {
		inputs, targets := make([]int32, batch*T), make([]int32, batch*T)
		for i := range inputs {
			inputs[i], targets[i] = int32(rng.IntN(cfg.VocabSize)), int32(rng.IntN(cfg.VocabSize))
		}
		acts, err := tr.Probe(inputs, targets, batch)
		require.NoError(t, err)
		require.Len(t, tr.probes[batch], numShards(batch))

		g := nn.NewGraph[float32](&nn.Feed{B: batch, T: T, Inputs: inputs, Targets: targets})
		net, err := model.Build(g, m, ad.GraphAdapters(), false)
		require.NoError(t, err)
		mach, err := g.Compile(net.Loss)
		require.NoError(t, err)
		_, err = mach.Run()
		require.NoError(t, err)
		ref := graphActs{gs: []*nn.Graph[float32]{g}, T: T}

		require.Equal(t, ref.Names(), acts.Names())
		require.Contains(t, acts.Names(), "blocks.1.attn.hook_pattern")
		for _, name := range ref.Names() {
			want, wantShape, err := ref.Read(name)
			require.NoError(t, err)
			got, shape, err := acts.Read(name)
			require.NoError(t, err)
			require.Equal(t, wantShape, shape, name)
			require.InDeltaSlice(t, want, got, 1e-5, "batch %d: %s", batch, name)
		}
		for _, mod := range ad.Modules {
			want, r, err := ref.LoRAHidden(mod)
			require.NoError(t, err)
			got, gr, err := acts.LoRAHidden(mod)
			require.NoError(t, err)
			require.Equal(t, r, gr)
			require.InDeltaSlice(t, want, got, 1e-5, "batch %d: %s", batch, mod)
		}
		_, err = tr.Probe(inputs[:T], targets, batch)
		require.ErrorContains(t, err, "probe: want")
	}
}

// TestEvalShardsMatchWholeBatch checks the sharded evaluation against one
// graph over the whole batch, with a last partial batch that leaves one
// shard partly or wholly padded.
func TestEvalShardsMatchWholeBatch(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	const B, T = 4, 16
	rng := rand.New(rand.NewPCG(9, 10))
	for _, windows := range []int{3, 5, 8} {
		tokens := make([]int32, windows*T+1)
		for i := range tokens {
			tokens[i] = int32(rng.IntN(cfg.VocabSize))
		}
		got, err := Evaluate(m, nil, tokens, T, B)
		require.NoError(t, err)
		whole, err := newForwardNet(m, nil, B, T, 0, false, 0)
		require.NoError(t, err)
		in, tg := make([]int32, B*T), make([]int32, B*T)
		whole.feed.Inputs, whole.feed.Targets = in, tg
		want, err := evalWindows(tokens, B, T, 0, in, tg, whole.mach.Run)
		require.NoError(t, err)
		require.Equal(t, want.Tokens, got.Tokens)
		require.Equal(t, windows, got.Windows)
		require.InDelta(t, want.Loss, got.Loss, 1e-6*want.Loss, "%d windows", windows)
	}
}
