package generate

import (
	"context"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
)

// TestQuantizedDecode: a quantized base (nf4, nf4-dq, bf16; its tables in
// bf16) decodes, with a LoRA adapter on every linear module, to the same
// logits bit for bit and the same tokens (greedy and sampled) as a float32
// model holding the widened values, prefilled at once and decoded one
// token at a time, on the CPU and on accel.Host; the head's vocabulary
// blocks are several here.
func TestQuantizedDecode(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(*model.Config)
	}{
		{"llama tied", func(c *model.Config) {}},
		{"qwen2 untied", func(c *model.Config) { c.ModelType, c.TieWordEmbeddings = "qwen2", false }},
	} {
		for _, kind := range model.QuantKinds {
			t.Run(tc.name+"/"+kind, func(t *testing.T) {
				c := model.Tiny()
				// hidden 64: 4 MB blocks of the head are 16384 rows; vocab 40000 makes three.
				c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 64, 128, 2, 40000
				c.NumAttentionHeads, c.NumKeyValueHeads = 4, 2
				tc.edit(&c)
				m, err := model.New(c, 3)
				require.NoError(t, err)
				q, err := m.Quantized(kind)
				require.NoError(t, err)
				dense := m.Clone()
				for n, p := range q.Packed {
					p.Widen(dense.Weights[n].Data)
				}
				ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 5)
				require.NoError(t, err)
				rng := rand.New(rand.NewPCG(4, 4))
				for _, b := range ad.B {
					for i := range b.Data {
						b.Data[i] = float32(rng.NormFloat64() * 0.1)
					}
				}
				gq, err := New(q, ad)
				require.NoError(t, err)
				gd, err := New(dense, ad)
				require.NoError(t, err)
				prompt := []int32{5, 39999, 17, 20000, 3}
				sq, err := gq.NewSession(12)
				require.NoError(t, err)
				sd, err := gd.NewSession(12)
				require.NoError(t, err)
				next := [][]int32{prompt, {7}, {31000}, {1, 2}}
				for i, toks := range next {
					lq, err := sq.Append(toks)
					require.NoError(t, err)
					ld, err := sd.Append(toks)
					require.NoError(t, err)
					for j := range ld {
						require.Equal(t, math.Float32bits(ld[j]), math.Float32bits(lq[j]), "append %d: logit %d", i, j)
					}
				}
				on, err := NewOn(accel.Host{}, q, ad) // the packed base widened on the device
				require.NoError(t, err)
				defer on.Close()
				for _, opts := range []Options{{MaxNewTokens: 6}, {MaxNewTokens: 6, Temperature: 1, Seed: 9}} {
					a, err := gq.Generate(context.Background(), prompt, opts, nil)
					require.NoError(t, err)
					b, err := gd.Generate(context.Background(), prompt, opts, nil)
					require.NoError(t, err)
					require.Equal(t, b, a)
					d, err := on.Generate(context.Background(), prompt, opts, nil)
					require.NoError(t, err)
					require.Equal(t, b, d, "on %s", on.Device())
				}
			})
		}
	}
}
