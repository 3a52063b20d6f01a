package train

import (
	"encoding/json"
	"flag"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"

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

var benchShape = flag.String("shape", "135m", "BenchmarkStepShape's model shape: 135m (SmolLM2-135M) or 1b (Llama-3.2-1B)")

// stepShapes are the real model shapes of issue 22's speed target, random
// weights, real vocabularies.
var stepShapes = map[string]model.Config{
	"135m": {VocabSize: 49152, HiddenSize: 576, IntermediateSize: 1536, NumHiddenLayers: 30,
		NumAttentionHeads: 9, NumKeyValueHeads: 3, HeadDim: 64},
	"1b": {VocabSize: 128256, HiddenSize: 2048, IntermediateSize: 8192, NumHiddenLayers: 16,
		NumAttentionHeads: 32, NumKeyValueHeads: 8, HeadDim: 64},
}

// BenchmarkStepShape measures one LoRA step (r=16, alpha 32, every linear
// module, AdamW) at batch 1×1024 on the shape -shape names, after one
// warm-up step. A 1b step takes tens of seconds: use -benchtime 2x.
func BenchmarkStepShape(b *testing.B) {
	cfg, ok := stepShapes[*benchShape]
	if !ok {
		b.Fatalf("-shape %q: want 135m or 1b", *benchShape)
	}
	base := model.Tiny()
	base.VocabSize, base.HiddenSize, base.IntermediateSize, base.NumHiddenLayers = cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers
	base.NumAttentionHeads, base.NumKeyValueHeads, base.HeadDim = cfg.NumAttentionHeads, cfg.NumKeyValueHeads, cfg.HeadDim
	const seq = 1024
	base.MaxPositionEmbeddings = seq
	m, err := model.New(base, 1)
	if err != nil {
		b.Fatal(err)
	}
	ad, err := lora.New(m, lora.Config{Rank: 16, Alpha: 32,
		Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	toks := make([]int32, 1<<16)
	for i := range toks {
		toks[i] = int32(rng.IntN(cfg.VocabSize))
	}
	tr, err := New(m, ad, &randBatches{rng: rng, toks: toks, seq: seq}, nil,
		Config{Steps: 1 << 30, BatchSize: 1, SeqLen: seq, LR: 1e-3})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	if _, err := tr.TrainStep(); err != nil {
		b.Fatal(err)
	}
	// CPU seconds per step beside the wall time: on a shared machine the
	// wall time moves with the neighbours' load, the CPU time much less,
	// and their ratio is how many cores the step kept busy.
	cpu0 := cpuSeconds()
	b.ResetTimer()
	for range b.N {
		if _, err := tr.TrainStep(); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportMetric(float64(seq*b.N)/b.Elapsed().Seconds(), "tokens/s")
	b.ReportMetric((cpuSeconds()-cpu0)/float64(b.N), "cpu-s/step")
}

// cpuSeconds is the process's user and system CPU time.
func cpuSeconds() float64 {
	var ru syscall.Rusage
	if syscall.Getrusage(syscall.RUSAGE_SELF, &ru) != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano()).Seconds()
}
