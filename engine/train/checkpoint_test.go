package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
)

// ckptRun trains steps LoRA steps from a copy of ad and returns each
// step's loss and every gradient (by step, then parameter name) and the
// final adapter tensors, then the held-out loss of the trained adapter
// (with checkpointing, evaluated a layer at a time too), and how many
// block graphs a checkpointed shard has (0: none, the step is not
// checkpointed).
func ckptRun(t *testing.T, m *model.Model, ad *lora.Adapter, b Batches, cfg Config, steps int) ([]float64, []map[string][]float32, [][]float32, int) {
	t.Helper()
	return ckptRunOn(t, nil, m, ad, b, cfg, steps)
}

// ckptRunOn is ckptRun with the step on dev (nil: the CPU graph).
func ckptRunOn(t *testing.T, dev accel.Device, m *model.Model, ad *lora.Adapter, b Batches, cfg Config, steps int) ([]float64, []map[string][]float32, [][]float32, int) {
	t.Helper()
	cfg.Steps, cfg.LR = steps, 1e-2
	held := make([]int32, 3*cfg.BatchSize*(cfg.SeqLen+1)+5)
	rng := rand.New(rand.NewPCG(8, 9))
	for i := range held {
		held[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	tr, err := New(m, ad.Clone(), b, []EvalSet{{Name: "held", Tokens: held}}, cfg)
	require.NoError(t, err)
	defer tr.Close()
	if dev != nil {
		require.NoError(t, tr.UseDevice(dev))
	}
	var grads []map[string][]float32
	tr.AddHooks(Hooks{AfterBackward: func(tr *Trainer, _ *StepInfo) error {
		g := map[string][]float32{}
		for _, p := range tr.Params {
			g[p.Name] = append([]float32(nil), p.Grad...)
		}
		grads = append(grads, g)
		return nil
	}})
	var losses []float64
	for range steps {
		info, err := tr.TrainStep()
		require.NoError(t, err)
		losses = append(losses, info.Loss)
	}
	var w [][]float32
	for _, mod := range tr.Adapter.Modules {
		w = append(w, append([]float32(nil), tr.Adapter.A[mod].Data...), append([]float32(nil), tr.Adapter.B[mod].Data...))
	}
	blocks := 0
	if ck := tr.shards[0].ck; ck != nil {
		blocks = len(ck.blocks)
		_, ok := tr.evalNet[0].mach.(*ckptStep)
		require.True(t, ok, "eval is not checkpointed")
	}
	ev, err := tr.Evaluate()
	require.NoError(t, err)
	losses = append(losses, ev["held"])
	return losses, grads, w, blocks
}

// familyTiny is a small model of a family, its 1-D weights (norms,
// biases) moved away from their initial values so they matter.
func familyTiny(t *testing.T, layers int, edit func(*model.Config)) *model.Model {
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 32, 48, layers, 64
	c.NumAttentionHeads, c.NumKeyValueHeads, c.TieWordEmbeddings = 4, 2, false
	edit(&c)
	m, err := model.New(c, 11)
	require.NoError(t, err)
	acceltest.ShiftVectors(m, 1)
	return m
}

// TestCheckpointingChangesNothing: LoRA runs with checkpointing give the
// same losses, every gradient of every step, the final adapter and its
// held-out loss, bit for bit, as without: with dropout, gradient accumulation, two shards,
// a chunked head, packed rows, packed bases (nf4, bf16), tied embeddings
// and the families whose blocks differ (Qwen2 biases, Qwen3 q/k norms,
// Gemma 3's local and global layers, which take two block graphs).
func TestCheckpointingChangesNothing(t *testing.T) {
	tiny, tinyAd := acceltest.Model(t)
	adapter := func(m *model.Model, dropout float64) *lora.Adapter { return ckptAdapter(t, m, dropout) }
	random := ckptBatches
	gemma := familyTiny(t, 4, func(c *model.Config) {
		c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 8, 12
		c.SlidingWindow, c.SlidingWindowPattern, c.TieWordEmbeddings = 5, 2, true
	})
	qwen2 := familyTiny(t, 3, func(c *model.Config) { c.ModelType = "qwen2" })
	qwen3 := familyTiny(t, 3, func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 16 })
	tied := familyTiny(t, 3, func(c *model.Config) { c.TieWordEmbeddings = true })
	quant := func(kind string) *model.Model {
		q, err := tiny.Quantized(kind)
		require.NoError(t, err)
		return q
	}
	rows := packRows(t, tiny.Config.VocabSize)
	packed := func() Batches {
		b, err := sft.NewBatcher(rows, 2, 32, 5)
		require.NoError(t, err)
		b.Pack()
		return b
	}
	for _, tc := range []struct {
		name    string
		m       *model.Model
		ad      *lora.Adapter
		batches func() Batches
		cfg     Config
		blocks  int // block graphs a checkpointed step builds
	}{
		{"lora", tiny, tinyAd, random(tiny, 16), Config{BatchSize: 1, SeqLen: 16}, 1},
		{"two shards, dropout", tiny, adapter(tiny, 0.1), random(tiny, 16), Config{BatchSize: 4, SeqLen: 16}, 1},
		{"grad_accum, clip", tiny, adapter(tiny, 0.2), random(tiny, 16), Config{BatchSize: 2, SeqLen: 16, GradAccum: 2, ClipNorm: 0.5}, 1},
		{"head_chunk", tiny, tinyAd, random(tiny, 24), Config{BatchSize: 2, SeqLen: 24, HeadChunk: 7}, 1},
		{"packed rows", tiny, adapter(tiny, 0.1), packed, Config{BatchSize: 2, SeqLen: 32}, 1},
		{"nf4 base", quant(model.QuantNF4), tinyAd, random(tiny, 16), Config{BatchSize: 2, SeqLen: 16, BaseQuant: model.QuantNF4}, 1},
		{"bf16 base, dropout", quant(model.QuantBF16), adapter(tiny, 0.1), random(tiny, 16), Config{BatchSize: 2, SeqLen: 16, BaseQuant: model.QuantBF16}, 1},
		{"tied", tied, adapter(tied, 0.1), random(tied, 16), Config{BatchSize: 2, SeqLen: 16}, 1},
		{"qwen2", qwen2, adapter(qwen2, 0.1), random(qwen2, 16), Config{BatchSize: 2, SeqLen: 16}, 1},
		{"qwen3", qwen3, adapter(qwen3, 0), random(qwen3, 16), Config{BatchSize: 2, SeqLen: 16}, 1},
		{"gemma3 local and global", gemma, adapter(gemma, 0.1), random(gemma, 16), Config{BatchSize: 2, SeqLen: 16, HeadChunk: 5}, 2},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const steps = 3
			l0, g0, w0, b0 := ckptRun(t, tc.m, tc.ad, tc.batches(), tc.cfg, steps)
			cfg := tc.cfg
			cfg.Checkpointing = true
			l1, g1, w1, b1 := ckptRun(t, tc.m, tc.ad, tc.batches(), cfg, steps)
			require.Equal(t, 0, b0)
			require.Equal(t, tc.blocks, b1, "block graphs")
			requireBitEqual(t, tc.name, l0, l1, w0, w1)
			require.Len(t, g1, steps)
			for s := range g0 {
				require.Len(t, g1[s], len(g0[s]))
				nonzero := false
				for name, want := range g0[s] {
					got := g1[s][name]
					require.Len(t, got, len(want), "step %d gradient %s", s+1, name)
					for j := range want {
						nonzero = nonzero || want[j] != 0
						if math.Float32bits(want[j]) != math.Float32bits(got[j]) {
							t.Fatalf("step %d: gradient %s[%d] = %v with checkpointing, %v without", s+1, name, j, got[j], want[j])
						}
					}
				}
				require.True(t, nonzero, "step %d: every gradient is zero", s+1)
			}
			require.NotEqual(t, l0[0], l0[steps-1], "the adapter did not train")
			require.Len(t, l1, steps+1, "losses and the eval loss")
		})
	}
}

// TestCheckpointingRefusals: full fine-tuning refuses checkpointing by
// name.
func TestCheckpointingRefusals(t *testing.T) {
	m, _ := acceltest.Model(t)
	_, err := New(m, nil, nil, nil, Config{Full: true, Checkpointing: true})
	require.ErrorContains(t, err, "checkpointing")
	require.ErrorContains(t, err, "full fine-tuning")
}

// countingHost is accel.Host counting the floats allocated.
type countingHost struct {
	accel.Host
	floats *int
}

func (h countingHost) Alloc(n int) (accel.Buf, error) {
	*h.floats += n
	return h.Host.Alloc(n)
}

// TestDeviceCheckpointingChangesNothing: on a device (accel.Host) the
// checkpointed step (accel.NewCheckpointedStep) gives the losses, every
// gradient, the adapter and the eval loss of the step without it, bit for
// bit, with dropout, gradient accumulation, packed rows, Qwen2's biases,
// Qwen3's q/k norms and Gemma 3's block (local layers with a window
// shorter than seq_len, global ones, a tied head; packed rows too), and
// allocates less device memory.
func TestDeviceCheckpointingChangesNothing(t *testing.T) {
	tiny := familyTiny(t, 3, func(*model.Config) {})
	qwen2 := familyTiny(t, 3, func(c *model.Config) { c.ModelType = "qwen2" })
	qwen3 := familyTiny(t, 3, func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 16 })
	gemma := familyTiny(t, 4, func(c *model.Config) {
		c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 8, 12
		c.SlidingWindow, c.SlidingWindowPattern, c.TieWordEmbeddings = 5, 2, true
		c.RopeTheta, c.RopeLocalBaseFreq = 1e6, 1e4
	})
	adapter := func(m *model.Model, dropout float64) *lora.Adapter { return ckptAdapter(t, m, dropout) }
	random := ckptBatches
	rows := packRows(t, tiny.Config.VocabSize)
	packed := func() Batches {
		b, err := sft.NewBatcher(rows, 2, 32, 5)
		require.NoError(t, err)
		b.Pack()
		return b
	}
	for _, tc := range []struct {
		name    string
		m       *model.Model
		ad      *lora.Adapter
		batches func() Batches
		cfg     Config
	}{
		{"dropout, grad_accum, clip", tiny, adapter(tiny, 0.1), random(tiny, 16), Config{BatchSize: 2, SeqLen: 16, GradAccum: 2, ClipNorm: 0.5}},
		{"packed rows", tiny, adapter(tiny, 0.1), packed, Config{BatchSize: 2, SeqLen: 32}},
		{"qwen2", qwen2, adapter(qwen2, 0.1), random(qwen2, 16), Config{BatchSize: 2, SeqLen: 16}},
		{"qwen3", qwen3, adapter(qwen3, 0), random(qwen3, 16), Config{BatchSize: 2, SeqLen: 16}},
		{"gemma3 local and global", gemma, adapter(gemma, 0.1), random(gemma, 16), Config{BatchSize: 2, SeqLen: 16, GradAccum: 2}},
		{"gemma3 packed rows", gemma, adapter(gemma, 0.1), packed, Config{BatchSize: 2, SeqLen: 32}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			const steps = 3
			var plain, ckpt int
			l0, g0, w0, _ := ckptRunOn(t, countingHost{floats: &plain}, tc.m, tc.ad, tc.batches(), tc.cfg, steps)
			cfg := tc.cfg
			cfg.Checkpointing = true
			l1, g1, w1, _ := ckptRunOn(t, countingHost{floats: &ckpt}, tc.m, tc.ad, tc.batches(), cfg, steps)
			requireBitEqual(t, tc.name, l0, l1, w0, w1)
			require.Len(t, g1, steps)
			for s := range g0 {
				for name, want := range g0[s] {
					got := g1[s][name]
					require.Len(t, got, len(want), "step %d gradient %s", s+1, name)
					for j := range want {
						if math.Float32bits(want[j]) != math.Float32bits(got[j]) {
							t.Fatalf("step %d: gradient %s[%d] = %v with checkpointing, %v without", s+1, name, j, got[j], want[j])
						}
					}
				}
			}
			require.Less(t, ckpt, plain, "device floats allocated with checkpointing")
			t.Logf("device floats: %d without checkpointing, %d with", plain, ckpt)
		})
	}
}

// TestCheckpointingResumes: a checkpointed LoRA run with dropout stopped
// after two steps and restored into a new trainer (State, tensors and
// moments) continues bit for bit as the run that did not stop.
func TestCheckpointingResumes(t *testing.T) {
	m := familyTiny(t, 3, func(*model.Config) {})
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Dropout: 0.2, Targets: []string{"all-linear"}}, 3)
	require.NoError(t, err)
	toks := make([]int32, 4096)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range toks {
		toks[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	cfg := Config{Steps: 4, BatchSize: 2, SeqLen: 16, LR: 1e-2, Checkpointing: true, Seed: 3}
	trainer := func() *Trainer {
		b, err := data.NewBatcher(toks, 2, 16, 1)
		require.NoError(t, err)
		tr, err := New(m, ad.Clone(), b, nil, cfg)
		require.NoError(t, err)
		t.Cleanup(func() { tr.Close() })
		return tr
	}
	steps := func(tr *Trainer, n int) (losses []float64) {
		for range n {
			info, err := tr.TrainStep()
			require.NoError(t, err)
			losses = append(losses, info.Loss)
		}
		return losses
	}
	whole := trainer()
	want := steps(whole, 4)

	first := trainer()
	got := steps(first, 2)
	st, err := first.State()
	require.NoError(t, err)
	second := trainer()
	for i, p := range first.Params {
		q := second.Params[i]
		copy(q.Data, p.Data)
		copy(q.M, p.M)
		copy(q.V, p.V)
	}
	require.NoError(t, second.Restore(st))
	got = append(got, steps(second, 2)...)
	require.Equal(t, want, got, "losses")
	for i, p := range whole.Params {
		for j, v := range p.Data {
			if math.Float32bits(v) != math.Float32bits(second.Params[i].Data[j]) {
				t.Fatalf("%s[%d] = %v after resuming, %v without stopping", p.Name, j, second.Params[i].Data[j], v)
			}
		}
	}
}

// ckptAdapter is an all-linear rank-4 adapter with non-zero B, so every
// gradient of the checkpointing comparisons is exercised.
func ckptAdapter(t *testing.T, m *model.Model, dropout float64) *lora.Adapter {
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Dropout: dropout, Targets: []string{"all-linear"}}, 3)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, bt := range ad.B {
		for i := range bt.Data {
			bt.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	return ad
}

// ckptBatches returns a maker of identical random-token batch streams.
func ckptBatches(m *model.Model, seq int) func() Batches {
	toks := make([]int32, 4096)
	rng := rand.New(rand.NewPCG(2, 3))
	for i := range toks {
		toks[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	return func() Batches { return &randBatches{rng: rand.New(rand.NewPCG(4, 5)), toks: toks, seq: seq} }
}
