package model

import (
	"encoding/json"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/safetensors"
)

func small() Config {
	c := Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 16, 24, 2, 4, 2
	c.TieWordEmbeddings = false
	return c
}

func TestSaveLoadRoundTrip(t *testing.T) {
	for _, tied := range []bool{true, false} {
		c := small()
		c.TieWordEmbeddings = tied
		m, err := New(c, 3)
		require.NoError(t, err)
		dir := t.TempDir()
		require.NoError(t, m.Save(dir))
		got, err := Load(dir)
		require.NoError(t, err)
		require.Equal(t, m.Config, got.Config)
		require.Equal(t, len(m.Weights), len(got.Weights))
		for n, w := range m.Weights {
			require.Equal(t, w.Data, got.Weights[n].Data, n)
		}
		_, hasHead := got.Weights["lm_head.weight"]
		require.Equal(t, !tied, hasHead)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.HiddenSize = 0 }, "hidden_size"},
		{func(c *Config) { c.NumAttentionHeads = 3 }, "num_attention_heads = 3 does not divide hidden_size"},
		{func(c *Config) { c.NumKeyValueHeads = 3 }, "num_key_value_heads = 3"},
		{func(c *Config) { c.RMSNormEps = -1 }, "rms_norm_eps"},
		{func(c *Config) { c.VocabSize = -5 }, "vocab_size"},
		{func(c *Config) { c.HiddenAct = "gelu" }, "hidden_act"},
	} {
		c := small()
		tc.edit(&c)
		_, err := New(c, 1)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestLoadBadFiles(t *testing.T) {
	m, err := New(small(), 1)
	require.NoError(t, err)
	write := func(t *testing.T, edit func(dir string)) string {
		dir := t.TempDir()
		require.NoError(t, m.Save(dir))
		edit(dir)
		return dir
	}
	cases := []struct {
		name string
		edit func(dir string)
		want string
	}{
		{"missing config", func(d string) { os.Remove(filepath.Join(d, "config.json")) }, "config.json"},
		{"missing weights", func(d string) { os.Remove(filepath.Join(d, "model.safetensors")) }, "model.safetensors"},
		{"bad config value", func(d string) {
			var c map[string]any
			b, _ := os.ReadFile(filepath.Join(d, "config.json"))
			json.Unmarshal(b, &c)
			c["num_attention_heads"] = 5
			b, _ = json.Marshal(c)
			os.WriteFile(filepath.Join(d, "config.json"), b, 0o644)
		}, "num_attention_heads"},
		{"wrong shape", func(d string) {
			var ts []safetensors.Tensor
			for _, n := range m.Names() {
				w := m.Weights[n]
				shape := w.Shape
				if n == "model.layers.0.self_attn.q_proj.weight" {
					shape = []int{shape[1], shape[0]}
					if shape[0] == shape[1] {
						shape = []int{1, len(w.Data)}
					}
				}
				ts = append(ts, safetensors.F32Tensor(n, shape, w.Data))
			}
			safetensors.Write(filepath.Join(d, "model.safetensors"), ts, nil)
		}, "q_proj.weight has shape"},
		{"truncated", func(d string) {
			p := filepath.Join(d, "model.safetensors")
			b, _ := os.ReadFile(p)
			os.WriteFile(p, b[:len(b)-10], 0o644)
		}, "model.safetensors"},
		{"wrong dtype", func(d string) {
			ts := []safetensors.Tensor{{Name: "model.norm.weight", DType: "I32", Shape: []int{16}, Data: make([]byte, 64)}}
			safetensors.Write(filepath.Join(d, "model.safetensors"), ts, nil)
		}, "not a floating-point type"},
		{"missing tensor", func(d string) {
			safetensors.Write(filepath.Join(d, "model.safetensors"), []safetensors.Tensor{safetensors.F32Tensor("model.norm.weight", []int{16}, make([]float32, 16))}, nil)
		}, "is missing"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(write(t, tc.edit))
			require.ErrorContains(t, err, tc.want)
		})
	}
}
