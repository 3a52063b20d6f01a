package builtins

import (
	"testing"

	"github.com/stretchr/testify/require"
)

// TestModelNewFamilyDefaults: model.new applies the defaults a config.json
// with the same keys gets, those for absent keys included.
func TestModelNewFamilyDefaults(t *testing.T) {
	base := `"vocab_size": 64, "hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 2, "num_attention_heads": 4, "max_position_embeddings": 64`
	for _, tc := range []struct{ src, want string }{
		{`m = model.new({"model_type": "mistral", ` + base + `})`, `sliding_window 4096 tied False`},
		{`m = model.new({"model_type": "mistral", "sliding_window": None, ` + base + `})`, `sliding_window 0 tied False`},
		{`m = model.new({"model_type": "gemma3_text", "head_dim": 8, ` + base + `})`, `sliding_window 4096 tied True`},
		{`m = model.new({"model_type": "gemma3_text", "head_dim": 8, "tie_word_embeddings": False, ` + base + `})`, `sliding_window 4096 tied False`},
	} {
		out, err := runStar(t, tc.src+"\nc = m.config\ns = \"sliding_window %d tied %s\" % (c.get(\"sliding_window\") or 0, c[\"tie_word_embeddings\"])", nil)
		require.NoError(t, err, tc.src)
		require.Equal(t, `"`+tc.want+`"`, out["s"].String(), tc.src)
	}
}
