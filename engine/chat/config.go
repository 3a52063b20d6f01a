// Package chat renders conversations with a model's own chat template, as
// Hugging Face transformers' apply_chat_template does, and finds the
// assistant turns in the rendered text so that training can compute the
// loss on them alone. The template and the special tokens come from the
// model directory's tokenizer_config.json (or chat_template.jinja); the
// Jinja engine is github.com/ardanlabs/jinja, which follows HF's
// environment (trim_blocks, lstrip_blocks, loopcontrols, a tojson that
// does not escape HTML, raise_exception, strftime_now).
package chat

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"math"
	"math/big"
	"os"
	"path/filepath"
)

// specialNames are the special-token attributes HF's special_tokens_map
// puts into the template context, in its order.
var specialNames = []string{"bos_token", "eos_token", "unk_token", "sep_token", "pad_token", "cls_token", "mask_token"}

// Config is what lens reads from a tokenizer_config.json.
type Config struct {
	// Path is the tokenizer_config.json the config was read from ("" when
	// built in code or absent).
	Path string
	// TemplatePath is the file ChatTemplate came from (Path, or a
	// chat_template.jinja); template errors name it.
	TemplatePath string
	// ChatTemplate is the Jinja source ("" when the model has none). The
	// list form [{name, template}] contributes its "default" entry.
	ChatTemplate string
	// Special maps each special-token attribute that is set (bos_token,
	// eos_token, unk_token, sep_token, pad_token, cls_token, mask_token) to
	// its text; an AddedToken object contributes its content.
	Special map[string]string
	// AdditionalSpecial is additional_special_tokens, as text.
	AdditionalSpecial []string
	// AddBOS and AddEOS are add_bos_token and add_eos_token; nil when the
	// file does not set them (then the tokenizer.json post-processor
	// decides).
	AddBOS, AddEOS *bool
	// ModelMaxLength is model_max_length; 0 when absent or when it is
	// HF's "no limit" placeholder (int(1e30)), which no int64 holds.
	ModelMaxLength int64
}

// Token returns the text of a special token by attribute name
// ("bos_token"), and whether it is set.
func (c *Config) Token(name string) (string, bool) {
	s, ok := c.Special[name]
	return s, ok
}

// LoadConfig reads a tokenizer_config.json.
func LoadConfig(path string) (*Config, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("tokenizer config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	c.Path = path
	if c.ChatTemplate != "" {
		c.TemplatePath = path
	}
	return c, nil
}

// ParseConfig parses the contents of a tokenizer_config.json. Fields lens
// does not use are ignored; a used field of the wrong type is an error
// naming it.
func ParseConfig(data []byte) (*Config, error) {
	var raw map[string]json.RawMessage
	dec := json.NewDecoder(bytes.NewReader(data))
	dec.UseNumber()
	if err := dec.Decode(&raw); err != nil {
		return nil, fmt.Errorf("tokenizer config: %w", err)
	}
	c := &Config{Special: map[string]string{}}
	if v, ok := raw["chat_template"]; ok {
		t, err := parseChatTemplate(v)
		if err != nil {
			return nil, fmt.Errorf("chat_template: %w", err)
		}
		c.ChatTemplate = t
	}
	for _, name := range specialNames {
		v, ok := raw[name]
		if !ok {
			continue
		}
		s, set, err := addedToken(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", name, err)
		}
		if set {
			c.Special[name] = s
		}
	}
	if v, ok := raw["additional_special_tokens"]; ok && !isNull(v) {
		var list []json.RawMessage
		if err := json.Unmarshal(v, &list); err != nil {
			return nil, fmt.Errorf("additional_special_tokens: want a list: %w", err)
		}
		for i, e := range list {
			s, set, err := addedToken(e)
			if err != nil || !set {
				return nil, fmt.Errorf("additional_special_tokens[%d]: want a string or an AddedToken", i)
			}
			c.AdditionalSpecial = append(c.AdditionalSpecial, s)
		}
	}
	var err error
	if c.AddBOS, err = optBool(raw, "add_bos_token"); err != nil {
		return nil, err
	}
	if c.AddEOS, err = optBool(raw, "add_eos_token"); err != nil {
		return nil, err
	}
	if v, ok := raw["model_max_length"]; ok && !isNull(v) {
		n, ok := new(big.Float).SetString(string(v))
		if !ok || n.Sign() < 0 {
			return nil, fmt.Errorf("model_max_length: want a non-negative number, got %s", v)
		}
		if n.IsInt() && n.Cmp(big.NewFloat(math.MaxInt64)) < 0 {
			c.ModelMaxLength, _ = n.Int64()
		} else if !n.IsInt() {
			return nil, fmt.Errorf("model_max_length: want an integer, got %s", v)
		}
	}
	return c, nil
}

func isNull(v json.RawMessage) bool { return string(bytes.TrimSpace(v)) == "null" }

// parseChatTemplate accepts a string or HF's list of named templates, of
// which apply_chat_template uses "default" when no name is asked for.
func parseChatTemplate(v json.RawMessage) (string, error) {
	if isNull(v) {
		return "", nil
	}
	var s string
	if err := json.Unmarshal(v, &s); err == nil {
		return s, nil
	}
	var named []struct {
		Name     string `json:"name"`
		Template string `json:"template"`
	}
	if err := json.Unmarshal(v, &named); err != nil {
		return "", fmt.Errorf("want a string or a list of {name, template}: %w", err)
	}
	for _, n := range named {
		if n.Name == "default" {
			return n.Template, nil
		}
	}
	names := make([]string, len(named))
	for i, n := range named {
		names[i] = n.Name
	}
	return "", fmt.Errorf("the list of templates has no \"default\" (has %q)", names)
}

// addedToken reads a special token: a string, an AddedToken object
// ({"content": ...}), or null (not set).
func addedToken(v json.RawMessage) (s string, set bool, err error) {
	if isNull(v) {
		return "", false, nil
	}
	if err := json.Unmarshal(v, &s); err == nil {
		return s, true, nil
	}
	var obj struct {
		Content *string `json:"content"`
	}
	if err := json.Unmarshal(v, &obj); err != nil || obj.Content == nil {
		return "", false, fmt.Errorf("want a string or an AddedToken object with content, got %.60s", v)
	}
	return *obj.Content, true, nil
}

func optBool(raw map[string]json.RawMessage, name string) (*bool, error) {
	v, ok := raw[name]
	if !ok || isNull(v) {
		return nil, nil
	}
	var b bool
	if err := json.Unmarshal(v, &b); err != nil {
		return nil, fmt.Errorf("%s: want true, false or null, got %.40s", name, v)
	}
	return &b, nil
}

// LoadDir reads a model directory's tokenizer_config.json and, where there
// is one, its chat_template.jinja, which newer transformers versions write
// instead of the config's chat_template and which wins over it, as in
// transformers. A directory without tokenizer_config.json gives an empty
// Config (no template, no special tokens).
func LoadDir(dir string) (*Config, error) {
	p := filepath.Join(dir, "tokenizer_config.json")
	c, err := LoadConfig(p)
	if errors.Is(err, fs.ErrNotExist) {
		c, err = &Config{Special: map[string]string{}}, nil
	}
	if err != nil {
		return nil, err
	}
	jp := filepath.Join(dir, "chat_template.jinja")
	b, err := os.ReadFile(jp)
	switch {
	case err == nil:
		c.ChatTemplate = string(b)
		c.TemplatePath = jp
	case !errors.Is(err, fs.ErrNotExist):
		return nil, fmt.Errorf("chat template: %w", err)
	}
	return c, nil
}
