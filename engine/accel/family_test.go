package accel_test

import (
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
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

// TestStepFamilies: rope_scaling reaches the device step (its loss and
// gradients equal the graph's); the blocks the step does not compute are
// refused by name rather than computed wrongly.
func TestStepFamilies(t *testing.T) {
	const B, T = 2, 24
	m := familyModel(t, func(c *model.Config) {
		c.RopeTheta = 500000
		c.RopeScaling = &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
	})
	feed := &nn.Feed{B: B, T: T}
	for i := range B * T {
		feed.Inputs = append(feed.Inputs, int32(i*7%64))
		feed.Targets = append(feed.Targets, int32(i*5%64))
	}
	g := nn.NewGraph[float32](feed)
	net, err := model.Build(g, m, nil, true)
	require.NoError(t, err)
	wq := net.Params["model.layers.1.self_attn.q_proj.weight"]
	mach, err := g.Compile(net.Loss, wq)
	require.NoError(t, err)
	defer mach.Close()
	want, err := mach.Run()
	require.NoError(t, err)
	wantG, err := mach.Grad(0)
	require.NoError(t, err)

	s, err := accel.NewFullStep(accel.Host{}, m, B, T)
	require.NoError(t, err)
	defer s.Close()
	got, err := s.Run(feed.Inputs, feed.Targets, nil)
	require.NoError(t, err)
	require.InEpsilon(t, want, got, 1e-5, "loss")
	gotG := make([]float32, len(wantG))
	require.NoError(t, s.Grad("model.layers.1.self_attn.q_proj.weight", gotG))
	require.Less(t, relDiff(gotG, wantG), 1e-4)

	for _, tc := range []struct {
		name string
		edit func(*model.Config)
		want string
	}{
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }, "attention biases"},
		{"qwen3", func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 8 }, "q/k norms"},
		{"gemma3_text", func(c *model.Config) { c.ModelType = "gemma3_text"; c.HeadDim = 8 }, "Gemma"},
		{"mistral window", func(c *model.Config) { c.ModelType = "mistral"; c.SlidingWindow = 8 }, "sliding_window 8"},
	} {
		_, err := accel.NewFullStep(accel.Host{}, familyModel(t, tc.edit), B, T)
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
	if n == 0 {
		return d
	}
	return d / n
}
