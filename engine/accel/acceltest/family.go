package acceltest

import (
	"math"
	"math/rand/v2"
	"slices"
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
// rope_scaling, attention biases (Qwen2, Llama's attention_bias), Qwen3's
// q/k norms, Mistral's sliding window shorter than the sequence and Gemma
// 3's block (scaled embedding, (1 + w) norms before and after attention
// and MLP, q/k norms, query_pre_attn_scalar, GeGLU, local layers with a
// short window and their own RoPE base, global layers, tied head), also
// over packed rows, with its loss and every gradient (relative to the
// gradient's norm) within tol of the graph's, full fine-tuning and LoRA on
// every linear module. With names, only the cases so named run.
func Families(t *testing.T, dev accel.Device, tol float64, names ...string) {
	const B, T = 2, 24
	gemma := func(c *model.Config) {
		c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 8, 12
		// Layer 0 is local (window 5, RoPE base 10⁴), layer 1 global (10⁶).
		c.SlidingWindow, c.SlidingWindowPattern, c.TieWordEmbeddings = 5, 2, true
		c.RopeTheta, c.RopeLocalBaseFreq = 1e6, 1e4
	}
	for _, tc := range []struct {
		name string
		edit func(*model.Config)
		pack bool // packed rows: several examples per row (Step.Pack)
	}{
		{"llama rope_scaling llama3", func(c *model.Config) {
			c.RopeTheta = 500000
			c.RopeScaling = &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
		}, false},
		{"llama attention_bias", func(c *model.Config) { c.AttentionBias = true }, false},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }, false},
		{"qwen3", func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 16 }, false},
		{"mistral window ≥ T", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = T }, false},
		{"mistral window 8 < T", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = 8 }, false},
		{"mistral window 8, packed rows", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = 8 }, true},
		{"gemma3_text local and global", gemma, false},
		{"gemma3_text untied, attention_bias", func(c *model.Config) { gemma(c); c.TieWordEmbeddings, c.AttentionBias = false, true }, false},
		{"gemma3_text packed rows", gemma, true},
	} {
		if len(names) > 0 && !slices.Contains(names, tc.name) {
			continue
		}
		t.Run(tc.name, func(t *testing.T) {
			m := familyModel(t, tc.edit)
			c := m.Config
			for i := range c.NumHiddenLayers {
				if w := c.LayerWindow(i); w > 0 && w < T {
					t.Logf("layer %d: window %d < %d, RoPE table %s", i, w, T, c.LayerRopeKey(i))
				}
			}
			ShiftVectors(m, 1)
			rng := rand.New(rand.NewPCG(1, 2))
			feed := &nn.Feed{B: B, T: T}
			for i := range B * T {
				feed.Inputs = append(feed.Inputs, int32(i*7%64))
				feed.Targets = append(feed.Targets, int32(i*5%64))
			}
			if tc.pack { // rows of examples of 7, 3, 11, ... tokens
				lens := []int{7, 3, 11, 1, 9}
				for b := range B {
					pos, id := 0, int32(0)
					for range T {
						if pos == lens[(int(id)+b)%len(lens)] {
							pos, id = 0, id+1
						}
						feed.Positions = append(feed.Positions, int32(pos))
						feed.Segments = append(feed.Segments, id)
						pos++
					}
				}
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
				if tc.pack {
					require.NoError(t, s.Pack(feed.Positions, feed.Segments))
				}
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
				worst := 0.0
				for i, n := range names {
					wg, err := mach.Grad(i)
					require.NoError(t, err)
					gg := make([]float32, len(wg))
					require.NoError(t, s.Grad(n, gg))
					d := relDiff(gg, wg)
					require.Less(t, d, tol, "full=%v gradient %s", full, n)
					worst = max(worst, d)
				}
				mach.Close()
				s.Close()
				t.Logf("full=%v: loss %.6f (graph %.6f), %d gradients within %.2g of the graph's", full, got, want, len(names), worst)
			}
		})
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
