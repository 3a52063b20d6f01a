package train

import (
	"flag"
	"math/rand/v2"
	"os"
	"runtime"
	"runtime/pprof"
	"testing"
	"time"

	"lens/engine/lora"
	"lens/engine/memstat"
	"lens/engine/model"
)

var (
	mem1b      = flag.String("mem1b", "", `TestMemory1B's base form: "nf4", "nf4-dq" or "bf16" (one per process: peak RSS only grows)`)
	mem1bProf  = flag.String("mem1b.heap", "", "TestMemory1B writes a heap profile after the step to this file")
	mem1bChunk = flag.Int("mem1b.chunk", 256, "TestMemory1B's head_chunk")
)

// llama1B is Llama-3.2-1B's shape (tied embeddings, 128k vocabulary) with
// max_position_embeddings cut to seq.
func llama1B(seq int) model.Config {
	c := model.Tiny()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 128256, 2048, 8192, 16
	c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.TieWordEmbeddings = 32, 8, 64, true
	c.MaxPositionEmbeddings, c.RopeTheta = seq, 500000
	return c
}

// TestMemory1B measures issue 22's memory target: the 1B shape built
// packed (model.NewQuantized: never float32), LoRA r=16 on every linear
// module, one step at batch 1×1024 with head_chunk and checkpointing on
// the CPU; it logs the Go heap in use and the peak RSS after building and
// after the step. Minutes of CPU: it runs only when asked, one form per
// process:
//
//	go test -run TestMemory1B -v ./engine/train -args -mem1b=nf4
func TestMemory1B(t *testing.T) {
	if *mem1b == "" {
		t.Skip("measures a 1B model for minutes: run with -args -mem1b=nf4 (or bf16)")
	}
	const seq = 1024
	report := func(what string, start time.Time) {
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		t.Logf("%s head_chunk %d %s: heap in use %.2f GB, peak RSS %.2f GB (%.1f s)", *mem1b, *mem1bChunk, what,
			float64(ms.HeapInuse)/1e9, float64(memstat.PeakRSS())/1e9, time.Since(start).Seconds())
	}
	start := time.Now()
	m, _, err := model.NewQuantized(llama1B(seq), 1, *mem1b)
	if err != nil {
		t.Fatal(err)
	}
	report("built", start)
	ad, err := lora.New(m, lora.Config{Rank: 16, Alpha: 32, Targets: []string{"all-linear"}}, 1)
	if err != nil {
		t.Fatal(err)
	}
	rng := rand.New(rand.NewPCG(1, 1))
	toks := make([]int32, 1<<14)
	for i := range toks {
		toks[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	tr, err := New(m, ad, &randBatches{rng: rng, toks: toks, seq: seq}, nil,
		Config{Steps: 1, BatchSize: 1, SeqLen: seq, LR: 1e-4, BaseQuant: *mem1b, HeadChunk: *mem1bChunk, Checkpointing: true})
	if err != nil {
		t.Fatal(err)
	}
	defer tr.Close()
	report("trainer built", start)
	start = time.Now()
	info, err := tr.TrainStep()
	if err != nil {
		t.Fatal(err)
	}
	report("after one step", start)
	if *mem1bProf != "" {
		f, err := os.Create(*mem1bProf)
		if err != nil {
			t.Fatal(err)
		}
		defer f.Close()
		if err := pprof.WriteHeapProfile(f); err != nil {
			t.Fatal(err)
		}
	}
	t.Logf("loss %.4f (ln V = 11.76)", info.Loss)
}
