package runs

import (
	"context"
	"path/filepath"
	"testing"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// BenchmarkCollectorOverhead trains the default tiny model with LoRA r=8
// on q,k,v,o, once without collectors and once with every built-in
// collector at the default frequency (every 10 steps), and reports the
// per-step time of each; the ratio is the collectors' overhead.
//
//	go test ./engine/runs -run XXX -bench CollectorOverhead -benchtime 40x
func BenchmarkCollectorOverhead(b *testing.B) {
	base, err := model.New(model.Tiny(), 1)
	if err != nil {
		b.Fatal(err)
	}
	all := []collect.Spec{{Name: "adapter_weights", Every: 10}, {Name: "adapter_grads", Every: 10},
		{Name: "lora_activations", Every: 10}, {Name: "activations", Every: 10}}
	for _, tc := range []struct {
		name string
		c    []collect.Spec
	}{{"none", nil}, {"all", all}} {
		b.Run(tc.name, func(b *testing.B) {
			st, err := kv.Open(filepath.Join(b.TempDir(), "s"), kv.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer st.Close()
			ref, err := StoreBase(st, base)
			if err != nil {
				b.Fatal(err)
			}
			spec := Spec{Base: ref, LoRA: &lora.Config{Rank: 8, Alpha: 16, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}},
				Train: train.Config{Steps: b.N, BatchSize: 16, SeqLen: 128, LR: 1e-3, EvalBatches: 1}, Data: DataRef{Source: "opticks"}, Collect: tc.c}
			job, err := Prepare(spec, base)
			if err != nil {
				b.Fatal(err)
			}
			b.ResetTimer()
			if _, err := job.Run(context.Background(), st, Options{}); err != nil {
				b.Fatal(err)
			}
			b.ReportMetric(float64(b.N*16*128)/b.Elapsed().Seconds(), "tokens/s")
		})
	}
}
