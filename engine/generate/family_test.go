package generate

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// TestFamiliesDecode: for every family the decoder's logits equal the
// training graph's (itself checked against PyTorch) at every position,
// prefilled at once and decoded one token at a time, with a LoRA adapter on
// every linear module; the device pass on accel.Host gives the same logits.
func TestFamiliesDecode(t *testing.T) {
	const V, T = 64, 30
	cases := []struct {
		name string
		edit func(*model.Config)
	}{
		{"llama rope_scaling llama3", func(c *model.Config) {
			c.RopeTheta, c.RopeScaling = 500000, &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
		}},
		{"llama rope_scaling linear attention_bias", func(c *model.Config) {
			c.AttentionBias, c.RopeScaling = true, &model.RopeScaling{RopeType: "linear", Factor: 4}
		}},
		{"mistral sliding_window 5", func(c *model.Config) { c.ModelType, c.SlidingWindow = "mistral", 5 }},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }},
		{"qwen3", func(c *model.Config) { c.ModelType, c.HeadDim = "qwen3", 16 }},
		{"gemma3_text", func(c *model.Config) {
			c.ModelType, c.HeadDim, c.HiddenAct, c.NumHiddenLayers = "gemma3_text", 16, "", 3
			c.QueryPreAttnScalar, c.SlidingWindow, c.SlidingWindowPattern = 24, 6, 2
			c.RopeTheta, c.RopeScaling = 1e6, &model.RopeScaling{RopeType: "linear", Factor: 8}
		}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := model.Tiny()
			c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 32, 48, 2, V
			c.NumAttentionHeads, c.NumKeyValueHeads = 4, 2
			tc.edit(&c)
			m, err := model.New(c, 3)
			require.NoError(t, err)
			rng := rand.New(rand.NewPCG(4, 4))
			for _, w := range m.Weights { // biases 0 and norms 1 would hide them
				if len(w.Shape) == 1 {
					for i := range w.Data {
						w.Data[i] += float32(rng.NormFloat64() * 0.3)
					}
				}
			}
			ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 5)
			require.NoError(t, err)
			for _, b := range ad.B {
				for i := range b.Data {
					b.Data[i] = float32(rng.NormFloat64() * 0.1)
				}
			}
			prompt := make([]int32, T)
			for i := range prompt {
				prompt[i] = int32(rng.IntN(V))
			}
			feed := &nn.Feed{B: 1, T: T, Inputs: prompt, Targets: make([]int32, T)}
			g := nn.NewGraph[float32](feed)
			net, err := model.Build(g, m, ad.GraphAdapters(), false)
			require.NoError(t, err)
			mach, err := g.Compile(net.Loss)
			require.NoError(t, err)
			defer mach.Close()
			_, err = mach.Run()
			require.NoError(t, err)
			want, err := nn.Data[float32](net.Logits)
			require.NoError(t, err)

			gen, err := New(m, ad)
			require.NoError(t, err)
			sess, err := gen.NewSession(T)
			require.NoError(t, err)
			got, err := sess.Append(prompt)
			require.NoError(t, err)
			require.Less(t, maxAbsDiff(got, want[(T-1)*V:]), 1e-4, "prefill")
			sess.Close()
			sess, err = gen.NewSession(T)
			require.NoError(t, err)
			for p := range T {
				got, err := sess.Append(prompt[p : p+1])
				require.NoError(t, err)
				require.Less(t, maxAbsDiff(got, want[p*V:(p+1)*V]), 1e-4, "decoding position %d", p)
			}
			sess.Close()

			on, err := NewOn(accel.Host{}, m, ad)
			require.NoError(t, err)
			defer on.Close()
			sess, err = on.NewSession(T)
			require.NoError(t, err)
			for p := range T {
				got, err := sess.Append(prompt[p : p+1])
				require.NoError(t, err)
				require.Less(t, maxAbsDiff(got, want[p*V:(p+1)*V]), 1e-4, "decoding position %d on %s", p, on.Device())
			}
			sess.Close()
		})
	}
}
