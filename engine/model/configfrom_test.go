package model

import (
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestConfigFrom: a config given field by field gets the defaults a
// config.json with the same keys gets from ParseConfig, the absent-key
// ones included.
func TestConfigFrom(t *testing.T) {
	for _, tc := range []struct {
		name   string
		fields map[string]any
		check  func(*testing.T, Config)
	}{
		{"mistral window absent", map[string]any{"model_type": "mistral"},
			func(t *testing.T, c Config) { require.Equal(t, 4096, c.SlidingWindow) }},
		{"mistral window null", map[string]any{"model_type": "mistral", "sliding_window": nil},
			func(t *testing.T, c Config) { require.Equal(t, 0, c.SlidingWindow) }},
		{"gemma tied by default", map[string]any{"model_type": "gemma3_text", "head_dim": 16},
			func(t *testing.T, c Config) {
				require.True(t, c.TieWordEmbeddings)
				require.Equal(t, 4096, c.SlidingWindow)
			}},
		{"gemma untied", map[string]any{"model_type": "gemma3_text", "head_dim": 16, "tie_word_embeddings": false},
			func(t *testing.T, c Config) { require.False(t, c.TieWordEmbeddings) }},
		{"llama untouched", map[string]any{"model_type": "llama", "tie_word_embeddings": false},
			func(t *testing.T, c Config) {
				require.False(t, c.TieWordEmbeddings)
				require.Equal(t, 0, c.SlidingWindow)
			}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			f := map[string]any{"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2,
				"num_attention_heads": 4, "max_position_embeddings": 64}
			for k, v := range tc.fields {
				f[k] = v
			}
			b, err := json.Marshal(f)
			require.NoError(t, err)
			var c Config
			require.NoError(t, json.Unmarshal(b, &c))
			keys := make([]string, 0, len(f))
			for k := range f {
				keys = append(keys, k)
			}
			got, err := ConfigFrom(c, keys)
			require.NoError(t, err)
			want, err := ParseConfig(b)
			require.NoError(t, err)
			require.Equal(t, want, got)
			tc.check(t, got)
		})
	}
	bad := Tiny()
	bad.ModelType = "gpt2"
	_, err := ConfigFrom(bad, []string{"model_type"})
	require.ErrorContains(t, err, `model_type = "gpt2"`)
}
