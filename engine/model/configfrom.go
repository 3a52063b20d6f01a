package model

// ConfigFrom completes a configuration given field by field (a script's
// model.new dict): c holds the given fields and keys names them (their
// JSON names). The rest get Hugging Face's defaults as for a config.json,
// including those that apply only when a key is absent (Mistral's
// sliding_window 4096, Gemma 3's tie_word_embeddings and sliding_window),
// which a zero value alone cannot tell from an explicit 0 or false.
func ConfigFrom(c Config, keys []string) (Config, error) {
	present := make(map[string]bool, len(keys))
	for _, k := range keys {
		present[k] = true
	}
	c = c.withDefaultsFrom(present)
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	return c, nil
}
