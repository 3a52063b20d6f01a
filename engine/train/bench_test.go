package train

import (
	"encoding/json"
	"math/rand/v2"
	"testing"

	"lens/engine/lora"
	"lens/engine/model"
)

type randBatches struct {
	rng  *rand.Rand
	toks []int32
	seq  int
}

func (r *randBatches) Next(in, tg []int32) error {
	for b := 0; b < len(in)/r.seq; b++ {
		off := r.rng.IntN(len(r.toks) - r.seq - 1)
		copy(in[b*r.seq:(b+1)*r.seq], r.toks[off:])
		copy(tg[b*r.seq:(b+1)*r.seq], r.toks[off+1:])
	}
	return nil
}
func (r *randBatches) State() (json.RawMessage, error) { return nil, nil }
func (r *randBatches) Restore(json.RawMessage) error   { return nil }

// BenchmarkStep measures one training step of the default tiny model at
// batch 16×128: full (pretraining) and LoRA r=8 on q,k,v,o. Run it with
// -benchmem: a step in steady state should allocate almost nothing.
func BenchmarkStep(b *testing.B) {
	for _, mode := range []string{"full", "lora"} {
		b.Run(mode, func(b *testing.B) {
			m, err := model.New(model.Tiny(), 1)
			if err != nil {
				b.Fatal(err)
			}
			toks := make([]int32, 1<<16)
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range toks {
				toks[i] = int32(rng.IntN(256))
			}
			var ad *lora.Adapter
			cfg := Config{Steps: 1 << 30, BatchSize: 16, SeqLen: 128, LR: 1e-3, Full: mode == "full"}
			if mode == "lora" {
				if ad, err = lora.New(m, lora.Config{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 1); err != nil {
					b.Fatal(err)
				}
			}
			tr, err := New(m, ad, &randBatches{rng: rng, toks: toks, seq: 128}, nil, cfg)
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			// One step first: buffers are allocated by the first run and
			// reused after, so B/op and allocs/op are the steady state.
			if _, err := tr.TrainStep(); err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				if _, err := tr.TrainStep(); err != nil {
					b.Fatal(err)
				}
			}
			b.ReportMetric(float64(16*128*b.N)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
