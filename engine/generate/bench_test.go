package generate

import (
	"context"
	"encoding/json"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"lens/engine/model"
)

// BenchmarkGenerate times greedy decoding (a 16-token prompt, then 128 new
// tokens) on random weights and reports generated tokens/s. When PyTorch is
// installed it first runs generate_ref.py --bench on the same shape (eager
// KV-cache loop, 2 threads) and reports its rate and lens's ratio to it:
//
//	go test -run '^$' -bench Generate -benchtime 3x ./engine/generate/
func BenchmarkGenerate(b *testing.B) {
	const prompt, newTokens = 16, 128
	shapes := []struct {
		name                                    string
		hidden, layers, heads, kv, inter, vocab int
	}{
		{"tiny", 128, 4, 4, 4, 344, 256},
		{"smollm2-135m", 576, 30, 9, 3, 1536, 49152},
	}
	for _, s := range shapes {
		b.Run(s.name, func(b *testing.B) {
			torchRate := 0.0
			if exec.Command(python, "-c", "import torch").Run() == nil {
				out, err := exec.Command(python, filepath.Join(torchDir(), "generate_ref.py"), "--bench",
					"--hidden", strconv.Itoa(s.hidden), "--layers", strconv.Itoa(s.layers), "--heads", strconv.Itoa(s.heads),
					"--kv-heads", strconv.Itoa(s.kv), "--inter", strconv.Itoa(s.inter), "--vocab", strconv.Itoa(s.vocab),
					"--prompt-len", strconv.Itoa(prompt), "--new", strconv.Itoa(newTokens), "--threads", "2").Output()
				if err != nil {
					b.Fatalf("generate_ref.py --bench: %v", err)
				}
				var r struct {
					TokensPerS float64 `json:"tokens_per_s"`
				}
				if err := json.Unmarshal(out, &r); err != nil {
					b.Fatalf("generate_ref.py --bench: %v: %s", err, out)
				}
				torchRate = r.TokensPerS
			} else {
				b.Log("PyTorch not installed: no torch_tok/s or ratio")
			}
			c := model.Config{VocabSize: s.vocab, HiddenSize: s.hidden, IntermediateSize: s.inter, NumHiddenLayers: s.layers,
				NumAttentionHeads: s.heads, NumKeyValueHeads: s.kv, MaxPositionEmbeddings: prompt + newTokens,
				RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true}
			m, err := model.New(c, 1)
			if err != nil {
				b.Fatal(err)
			}
			g, err := New(m, nil)
			if err != nil {
				b.Fatal(err)
			}
			p := prompts(1, s.vocab, prompt)[0]
			opts := Options{MaxNewTokens: newTokens}
			if _, err := g.Generate(context.Background(), p, Options{MaxNewTokens: 8}, nil); err != nil { // warm-up
				b.Fatal(err)
			}
			b.ResetTimer()
			for range b.N {
				out, err := g.Generate(context.Background(), p, opts, nil)
				if err != nil || len(out) != newTokens {
					b.Fatalf("generated %d tokens: %v", len(out), err)
				}
			}
			rate := float64(newTokens*b.N) / b.Elapsed().Seconds()
			b.ReportMetric(rate, "tok/s")
			if torchRate > 0 {
				b.ReportMetric(torchRate, "torch_tok/s")
				b.ReportMetric(rate/torchRate, "ratio")
			}
		})
	}
}
