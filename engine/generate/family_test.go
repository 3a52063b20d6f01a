package generate

import (
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/model"
	"lens/engine/nn"
)

// TestFamiliesDecode: the decoder follows rope_scaling (its last-position
// logits equal the training graph's) and refuses the blocks it does not
// compute.
func TestFamiliesDecode(t *testing.T) {
	newModel := func(edit func(*model.Config)) *model.Model {
		c := model.Tiny()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 32, 48, 2, 64
		c.NumAttentionHeads, c.NumKeyValueHeads = 4, 2
		edit(&c)
		m, err := model.New(c, 3)
		require.NoError(t, err)
		return m
	}
	for _, rs := range []*model.RopeScaling{
		{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16},
		{RopeType: "linear", Factor: 4},
	} {
		m := newModel(func(c *model.Config) { c.RopeTheta, c.RopeScaling = 500000, rs })
		prompt := make([]int32, 30)
		for i := range prompt {
			prompt[i] = int32(i * 11 % 64)
		}
		gen, err := New(m, nil)
		require.NoError(t, err)
		sess, err := gen.NewSession(len(prompt))
		require.NoError(t, err)
		got, err := sess.Append(prompt)
		require.NoError(t, err)
		sess.Close()

		feed := &nn.Feed{B: 1, T: len(prompt), Inputs: prompt, Targets: make([]int32, len(prompt))}
		g := nn.NewGraph[float32](feed)
		net, err := model.Build(g, m, nil, false)
		require.NoError(t, err)
		mach, err := g.Compile(net.Loss)
		require.NoError(t, err)
		_, err = mach.Run()
		require.NoError(t, err)
		logits, err := nn.Data[float32](net.Logits)
		require.NoError(t, err)
		want := logits[(len(prompt)-1)*64:]
		require.Less(t, maxAbsDiff(got, want), 1e-4, "%s: decoder and graph logits differ", rs.RopeType)
		mach.Close()
	}
	_, err := New(newModel(func(c *model.Config) { c.ModelType = "qwen2" }), nil)
	require.ErrorContains(t, err, "CPU graph only")
}
