package model

import (
	"encoding/json"
	"testing"
)

// FuzzParseConfig: any config.json either parses into a config that
// validates and whose shapes are consistent, or is rejected; never a panic.
func FuzzParseConfig(f *testing.F) {
	tiny, _ := json.Marshal(Tiny())
	f.Add(tiny)
	f.Add([]byte(`{"hidden_size": 64, "num_attention_heads": 3}`))
	f.Add([]byte(`{"vocab_size": -1}`))
	f.Add([]byte(`{"hidden_size": 32, "intermediate_size": 48, "num_hidden_layers": 1, "num_attention_heads": 4, "num_key_value_heads": 2, "vocab_size": 16, "max_position_embeddings": 8, "head_dim": 16}`))
	f.Fuzz(func(t *testing.T, b []byte) {
		c, err := ParseConfig(b)
		if err != nil {
			return
		}
		if err := c.Validate(); err != nil {
			t.Fatalf("parsed config does not validate: %v", err)
		}
		for name, shape := range c.Shapes() {
			for _, d := range shape {
				if d <= 0 {
					t.Fatalf("%s has shape %v", name, shape)
				}
			}
		}
	})
}
