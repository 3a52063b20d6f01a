package train

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel/acceltest"
	"lens/engine/lora"
	"lens/engine/model"
)

// memRun trains steps steps of LoRA from ad's copy and returns each step's
// loss and the final adapter tensors, A then B by module.
func memRun(t *testing.T, m *model.Model, ad *lora.Adapter, cfg Config, steps int) ([]float64, [][]float32) {
	t.Helper()
	toks := make([]int32, 4096)
	rng := rand.New(rand.NewPCG(2, 3))
	for i := range toks {
		toks[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	cfg.Steps, cfg.LR = steps, 1e-2
	tr, err := New(m, ad.Clone(), &randBatches{rng: rand.New(rand.NewPCG(4, 5)), toks: toks, seq: cfg.SeqLen}, nil, cfg)
	require.NoError(t, err)
	defer tr.Close()
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
	return losses, w
}

func requireBitEqual(t *testing.T, what string, l0, l1 []float64, w0, w1 [][]float32) {
	t.Helper()
	require.Equal(t, l0, l1, "%s: losses", what)
	for i := range w0 {
		for j := range w0[i] {
			if math.Float32bits(w0[i][j]) != math.Float32bits(w1[i][j]) {
				t.Fatalf("%s: adapter tensor %d[%d] = %v, want %v", what, i, j, w1[i][j], w0[i][j])
			}
		}
	}
}

// TestHeadChunkChangesNothing: three LoRA steps with the head and loss in
// chunks of 5 and 64 rows (uneven, and several sequences) give the same
// losses and adapter weights, bit for bit, as without chunking.
func TestHeadChunkChangesNothing(t *testing.T) {
	m, ad := acceltest.Model(t)
	cfg := Config{BatchSize: 4, SeqLen: 32}
	l0, w0 := memRun(t, m, ad, cfg, 3)
	for _, chunk := range []int{5, 64} {
		cfg.HeadChunk = chunk
		l1, w1 := memRun(t, m, ad, cfg, 3)
		requireBitEqual(t, "head_chunk", l0, l1, w0, w1)
	}
}

// TestEvalHeadChunk: the evaluation graphs take the run's head_chunk (so
// an eval at a 128k vocabulary never holds the batch's whole logits) and
// give the loss of the whole graph without chunks bit for bit, layer at a
// time (checkpointing, two layer buffers in turn) or not.
func TestEvalHeadChunk(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 5 // layers share the two buffers
	m, err := model.New(cfg, 2)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 3)
	require.NoError(t, err)
	for _, mod := range ad.Modules { // B is zero at initialisation: make the adapter count
		for i := range ad.B[mod].Data {
			ad.B[mod].Data[i] = 0.01 * float32(i%7-3)
		}
	}
	const B, T = 4, 32
	rng := rand.New(rand.NewPCG(3, 4))
	tokens := make([]int32, 5*T+1)
	for i := range tokens {
		tokens[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	var want EvalResult
	for _, ckpt := range []bool{false, true} {
		for _, chunk := range []int{0, 5, 64} {
			fs, err := newForwardShards(m, ad, B, T, ckpt, chunk)
			require.NoError(t, err)
			got, err := fs.eval(tokens, 0)
			fs.close()
			require.NoError(t, err)
			if !ckpt && chunk == 0 {
				want = got
				continue
			}
			require.Equal(t, want, got, "checkpointing %v, head_chunk %d", ckpt, chunk)
		}
	}
}

// TestEvalReleasesChangesNothing: Run lets the training graphs go before
// its final evaluation and each evaluation's graphs after it (so their
// buffers are never held together); the steps after, which build the
// training graphs again, and the evaluations give bit for bit what a
// trainer that only stepped and evaluated gives, with and without
// checkpointing and dropout.
func TestEvalReleasesChangesNothing(t *testing.T) {
	m, ad := acceltest.Model(t)
	toks := make([]int32, 4096)
	rng := rand.New(rand.NewPCG(2, 3))
	for i := range toks {
		toks[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	evals := []EvalSet{{Name: "e", Tokens: toks[:5*16+1]}}
	for _, tc := range []struct {
		name    string
		ckpt    bool
		dropout float64
	}{{"plain", false, 0}, {"checkpointing", true, 0}, {"checkpointing, dropout", true, 0.1}, {"dropout", false, 0.1}} {
		t.Run(tc.name, func(t *testing.T) {
			a := ad.Clone()
			a.Config.Dropout = tc.dropout
			cfg := Config{Steps: 2, BatchSize: 2, SeqLen: 16, LR: 1e-2, Checkpointing: tc.ckpt, HeadChunk: 8}
			run := func(useRun bool) ([]float64, [][]float32) {
				tr, err := New(m, a.Clone(), &randBatches{rng: rand.New(rand.NewPCG(4, 5)), toks: toks, seq: 16}, evals, cfg)
				require.NoError(t, err)
				defer tr.Close()
				var out []float64
				tr.AddHooks(Hooks{AfterStep: func(_ *Trainer, s *StepInfo) error { out = append(out, s.Loss); return nil }})
				ev := func() {
					l, err := tr.Evaluate()
					require.NoError(t, err)
					out = append(out, l["e"])
				}
				ev()
				if useRun {
					require.NoError(t, tr.Run(context.Background()))
					require.Nil(t, tr.shards, "the training graphs were kept through the final evaluation")
					ev() // Run's final evaluation gave the same; evaluate again to record it
				} else {
					for range cfg.Steps {
						_, err := tr.TrainStep()
						require.NoError(t, err)
					}
					ev()
				}
				for range 2 { // steps past the end build the graphs again
					_, err := tr.TrainStep()
					require.NoError(t, err)
				}
				ev()
				var w [][]float32
				for _, mod := range tr.Adapter.Modules {
					w = append(w, append([]float32(nil), tr.Adapter.A[mod].Data...), append([]float32(nil), tr.Adapter.B[mod].Data...))
				}
				return out, w
			}
			l0, w0 := run(false)
			l1, w1 := run(true)
			requireBitEqual(t, tc.name, l0, l1, w0, w1)
		})
	}
}

// TestBaseQuantTrains: LoRA training with base_quant gives, bit for bit,
// the run on a float32 base holding the widened weights (so the trainer
// uses the packed base, and nothing else changes), for nf4, nf4-dq and
// bf16; full training refuses base_quant. (The device step over a packed
// base: TestDeviceBaseQuantMatchesCPU.)
func TestBaseQuantTrains(t *testing.T) {
	m, ad := acceltest.Model(t)
	cfg := Config{BatchSize: 2, SeqLen: 16}
	for _, kind := range model.QuantKinds {
		q, err := m.Quantized(kind)
		require.NoError(t, err)
		dense := m.Clone()
		for n, p := range q.Packed {
			p.Widen(dense.Weights[n].Data)
		}
		l0, w0 := memRun(t, dense, ad, cfg, 3)
		qc := cfg
		qc.BaseQuant = kind
		l1, w1 := memRun(t, m, ad, qc, 3)
		requireBitEqual(t, kind, l0, l1, w0, w1)
		if kind != model.QuantBF16 {
			lf, _ := memRun(t, m, ad, cfg, 1)
			require.NotEqual(t, lf[0], l1[0], "%s: the quantized base gave the float32 loss", kind)
		}
	}
	_, err := New(m, nil, nil, nil, Config{Full: true, BaseQuant: "nf4"})
	require.ErrorContains(t, err, "full training needs float32")
	_, err = New(m, ad.Clone(), nil, nil, Config{BaseQuant: "int4"})
	require.ErrorContains(t, err, "nf4, nf4-dq, bf16")
}
