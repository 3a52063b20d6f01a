package acceltest

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

func familyModel(t *testing.T, edit func(*model.Config)) *model.Model {
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 32, 48, 2, 64
	c.NumAttentionHeads, c.NumKeyValueHeads, c.TieWordEmbeddings = 4, 2, false
	edit(&c)
	m, err := model.New(c, 11)
	require.NoError(t, err)
	return m
}

// Families checks the model families on dev: the step computes
// rope_scaling, attention biases (Qwen2, Llama's attention_bias) and
// Qwen3's q/k norms, with its loss and every gradient (relative to the
// gradient's norm) within tol of the graph's, full fine-tuning and LoRA on
// every linear module; the blocks it does not compute (Gemma, a sliding
// window shorter than the sequence) are refused by name.
func Families(t *testing.T, dev accel.Device, tol float64) {
	const B, T = 2, 24
	for _, tc := range []struct {
		name string
		edit func(*model.Config)
	}{
		{"llama rope_scaling llama3", func(c *model.Config) {
			c.RopeTheta = 500000
			c.RopeScaling = &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
		}},
		{"llama attention_bias", func(c *model.Config) { c.AttentionBias = true }},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }},
		{"qwen3", func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 16 }},
		{"mistral window ≥ T", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = T }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := familyModel(t, tc.edit)
			// Biases start at 0 and norms at 1: give them values that matter.
			rng := rand.New(rand.NewPCG(1, 2))
			for _, w := range m.Weights {
				if len(w.Shape) == 1 {
					for i := range w.Data {
						w.Data[i] += float32(rng.NormFloat64() * 0.3)
					}
				}
			}
			feed := &nn.Feed{B: B, T: T}
			for i := range B * T {
				feed.Inputs = append(feed.Inputs, int32(i*7%64))
				feed.Targets = append(feed.Targets, int32(i*5%64))
			}
			ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 3)
			require.NoError(t, err)
			for _, bt := range ad.B {
				for i := range bt.Data {
					bt.Data[i] = float32(rng.NormFloat64() * 0.1)
				}
			}
			for _, full := range []bool{true, false} {
				var ads map[string]model.Adapter
				if !full {
					ads = ad.GraphAdapters()
				}
				g := nn.NewGraph[float32](feed)
				net, err := model.Build(g, m, ads, full)
				require.NoError(t, err)
				var s *accel.Step
				if full {
					s, err = accel.NewFullStep(dev, m, B, T)
				} else {
					s, err = accel.NewStep(dev, m, ads, B, T)
				}
				require.NoError(t, err)
				names := s.Params()
				var wrt []*G.Node
				for _, n := range names {
					require.Contains(t, net.Params, n)
					wrt = append(wrt, net.Params[n])
				}
				mach, err := g.Compile(net.Loss, wrt...)
				require.NoError(t, err)
				want, err := mach.Run()
				require.NoError(t, err)
				got, err := s.Run(feed.Inputs, feed.Targets, nil)
				require.NoError(t, err)
				require.InEpsilon(t, want, got, tol, "full=%v loss", full)
				for i, n := range names {
					wg, err := mach.Grad(i)
					require.NoError(t, err)
					gg := make([]float32, len(wg))
					require.NoError(t, s.Grad(n, gg))
					require.Less(t, relDiff(gg, wg), tol, "full=%v gradient %s", full, n)
				}
				mach.Close()
				s.Close()
				t.Logf("full=%v: loss %.6f, %d gradients equal the graph's", full, got, len(names))
			}
		})
	}
	for _, tc := range []struct {
		name string
		edit func(*model.Config)
		want string
	}{
		{"gemma3_text", func(c *model.Config) { c.ModelType = "gemma3_text"; c.HeadDim = 8 }, "Gemma"},
		{"mistral window", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = 8 }, "sliding_window 8"},
	} {
		_, err := accel.NewFullStep(dev, familyModel(t, tc.edit), B, T)
		require.Error(t, err, tc.name)
		require.True(t, strings.Contains(err.Error(), tc.want) && strings.Contains(err.Error(), "CPU graph only"), "%s: %v", tc.name, err)
	}
}

func relDiff(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		d += float64(a[i]-b[i]) * float64(a[i]-b[i])
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / math.Max(n, 1e-30))
}
