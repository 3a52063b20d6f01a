package lora

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/model"
)

func base(t *testing.T) *model.Model {
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 32, 48, 2
	m, err := model.New(c, 1)
	require.NoError(t, err)
	return m
}

func TestTargets(t *testing.T) {
	m := base(t)
	for _, tc := range []struct {
		targets []string
		n       int
		err     string
	}{
		{[]string{"q_proj", "v_proj"}, 4, ""},
		{[]string{"all-linear"}, 14, ""},
		{[]string{`model\.layers\.1\.mlp\..*`}, 3, ""},
		{[]string{"qq_proj"}, 0, `"qq_proj" matches no linear module`},
		{[]string{}, 0, "target_modules is empty"},
	} {
		ad, err := New(m, Config{Rank: 4, Alpha: 8, Targets: tc.targets}, 1)
		if tc.err != "" {
			require.ErrorContains(t, err, tc.err)
			continue
		}
		require.NoError(t, err)
		require.Len(t, ad.Modules, tc.n)
	}
	for _, tc := range []struct {
		c   Config
		err string
	}{
		{Config{Rank: 0, Alpha: 8, Targets: []string{"q_proj"}}, "r = 0"},
		{Config{Rank: -2, Alpha: 8, Targets: []string{"q_proj"}}, "r = -2"},
		{Config{Rank: 64, Alpha: 8, Targets: []string{"q_proj"}}, "larger than module"},
		{Config{Rank: 4, Alpha: 8, Dropout: 1, Targets: []string{"q_proj"}}, "lora_dropout"},
	} {
		_, err := New(m, tc.c, 1)
		require.ErrorContains(t, err, tc.err)
	}
}

func TestInitAndScale(t *testing.T) {
	m := base(t)
	ad, err := New(m, Config{Rank: 4, Alpha: 16, Targets: []string{"q_proj"}}, 1)
	require.NoError(t, err)
	bound := float32(1 / math.Sqrt(32))
	for _, mod := range ad.Modules {
		for _, v := range ad.A[mod].Data {
			require.LessOrEqual(t, float32(math.Abs(float64(v))), bound)
		}
		for _, v := range ad.B[mod].Data {
			require.Zero(t, v)
		}
	}
	require.Equal(t, 4.0, ad.Config.Scale())
	ad.Config.RSLoRA = true
	require.Equal(t, 8.0, ad.Config.Scale())
	// Different ranks draw A from different streams.
	ad8, _ := New(m, Config{Rank: 8, Alpha: 16, Targets: []string{"q_proj"}}, 1)
	mod := ad.Modules[0]
	require.NotEqual(t, ad.A[mod].Data[:32], ad8.A[mod].Data[:32])
}

func TestPEFTRoundTrip(t *testing.T) {
	m := base(t)
	ad, err := New(m, Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "down_proj"}, RSLoRA: true}, 1)
	require.NoError(t, err)
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(i%7) * 0.01
		}
	}
	dir := t.TempDir()
	require.NoError(t, ad.Save(dir))
	got, err := Load(dir, m)
	require.NoError(t, err)
	require.Equal(t, ad.Config, got.Config)
	require.Equal(t, ad.Modules, got.Modules)
	for _, mod := range ad.Modules {
		require.Equal(t, ad.A[mod].Data, got.A[mod].Data)
		require.Equal(t, ad.B[mod].Data, got.B[mod].Data)
	}
	// Loading against a model without those modules fails clearly.
	other := base(t)
	delete(other.Weights, "model.layers.1.mlp.down_proj.weight")
	_, err = Load(dir, other)
	require.ErrorContains(t, err, "model.layers.1.mlp.down_proj is not a linear module")
}
