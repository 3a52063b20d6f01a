package train

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/debug"
	"testing"

	"lens/engine/lora"
	"lens/engine/memstat"
	"lens/engine/model"
)

var (
	memShape = flag.String("memshape", "", "BenchmarkStepPeakRSS's shape: 135m (SmolLM2-135M) or 1b (Llama-3.2-1B); unset skips it")
	memCkpt  = flag.Bool("memckpt", false, "BenchmarkStepPeakRSS: train with checkpointing")
	memChunk = flag.Int("memchunk", 0, "BenchmarkStepPeakRSS: head_chunk")
	memQuant = flag.String("memquant", "", "BenchmarkStepPeakRSS: base_quant")
)

// BenchmarkStepPeakRSS reports the process's peak resident set during LoRA
// steps (r=16 on every linear module) at batch 1×1024 on a real model
// shape with random weights, with the -memckpt, -memchunk and -memquant
// settings. Peak RSS is the process's: run one setting per process, e.g.
//
//	go test -run '^$' -bench StepPeakRSS -benchtime 1x ./engine/train -memshape 135m -memckpt
func BenchmarkStepPeakRSS(b *testing.B) {
	shapes := map[string]model.Config{
		"135m": {VocabSize: 49152, HiddenSize: 576, IntermediateSize: 1536, NumHiddenLayers: 30,
			NumAttentionHeads: 9, NumKeyValueHeads: 3, TieWordEmbeddings: true},
		"1b": {VocabSize: 128256, HiddenSize: 2048, IntermediateSize: 8192, NumHiddenLayers: 16,
			NumAttentionHeads: 32, NumKeyValueHeads: 8, TieWordEmbeddings: true},
	}
	if *memShape == "" {
		b.Skip("set -memshape to measure a real shape's peak RSS (minutes a step)")
	}
	s, ok := shapes[*memShape]
	if !ok {
		b.Fatalf("-memshape %q: want 135m or 1b", *memShape)
	}
	const seq = 1024
	c := model.Tiny()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = s.VocabSize, s.HiddenSize, s.IntermediateSize, s.NumHiddenLayers
	c.NumAttentionHeads, c.NumKeyValueHeads, c.TieWordEmbeddings = s.NumAttentionHeads, s.NumKeyValueHeads, s.TieWordEmbeddings
	c.MaxPositionEmbeddings = seq
	m, err := model.New(c, 1)
	if err != nil {
		b.Fatal(err)
	}
	if *memQuant != "" { // drop the float32 base: the trainer holds the packed one
		if m, err = m.Quantized(*memQuant); err != nil {
			b.Fatal(err)
		}
	}
	ad, err := lora.New(m, lora.Config{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}}, 1)
	if err != nil {
		b.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	toks := make([]int32, 1<<14)
	for i := range toks {
		toks[i] = int32(rng.IntN(c.VocabSize))
	}
	before := memstat.PeakRSS()
	// Forget the float32 model a packed base was made from and start the
	// high-water mark again (Linux: "5" to clear_refs), so the peak below
	// is the trainer's, not the model construction's.
	runtime.GC()
	debug.FreeOSMemory()
	if err := os.WriteFile("/proc/self/clear_refs", []byte("5"), 0); err != nil {
		b.Logf("peak RSS not reset (%v): peak_rss_MiB includes building the model", err)
	}
	tr, err := New(m, ad, &randBatches{rng: rng, toks: toks, seq: seq}, nil,
		Config{Steps: 1 << 30, BatchSize: 1, SeqLen: seq, LR: 1e-3, Checkpointing: *memCkpt, HeadChunk: *memChunk, BaseQuant: *memQuant})
	if err != nil {
		b.Fatal(err)
	}
	defer tr.Close()
	b.ResetTimer()
	for range b.N {
		if _, err := tr.TrainStep(); err != nil {
			b.Fatal(err)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(before)/(1<<20), "build_peak_MiB")
	b.ReportMetric(float64(memstat.PeakRSS())/(1<<20), "peak_rss_MiB")
	b.ReportMetric(float64(seq*b.N)/b.Elapsed().Seconds(), "tokens/s")
}

// BenchmarkStepCheckpointing is BenchmarkStep's LoRA step (the default
// tiny model, batch 16×128, r=8 on q,k,v,o) with and without activation
// checkpointing: the checkpointed step costs about one more forward pass
// of the blocks.
func BenchmarkStepCheckpointing(b *testing.B) {
	for _, ckpt := range []bool{false, true} {
		b.Run(fmt.Sprintf("checkpointing=%v", ckpt), func(b *testing.B) {
			m, err := model.New(model.Tiny(), 1)
			if err != nil {
				b.Fatal(err)
			}
			toks := make([]int32, 1<<16)
			rng := rand.New(rand.NewPCG(1, 1))
			for i := range toks {
				toks[i] = int32(rng.IntN(256))
			}
			ad, err := lora.New(m, lora.Config{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 1)
			if err != nil {
				b.Fatal(err)
			}
			tr, err := New(m, ad, &randBatches{rng: rng, toks: toks, seq: 128}, nil,
				Config{Steps: 1 << 30, BatchSize: 16, SeqLen: 128, LR: 1e-3, Checkpointing: ckpt})
			if err != nil {
				b.Fatal(err)
			}
			defer tr.Close()
			if _, err := tr.TrainStep(); err != nil { // buffers are allocated by the first run
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
