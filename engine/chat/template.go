package chat

import (
	"errors"
	"fmt"

	"github.com/ardanlabs/jinja"
)

// Message is one turn of a conversation.
type Message struct {
	Role    string `json:"role"`
	Content string `json:"content"`
}

// Options are apply_chat_template's rendering options.
type Options struct {
	// AddGenerationPrompt ends the text with the template's opening of an
	// assistant turn.
	AddGenerationPrompt bool
	// Extra are further template variables (HF's **kwargs, e.g.
	// enable_thinking); they override special tokens of the same name.
	Extra map[string]any
}

// RaiseError is the error a template raises with raise_exception(msg);
// Message is the template's own text.
type RaiseError struct{ Message string }

func (e *RaiseError) Error() string { return e.Message }

// Template is a compiled chat template with the special tokens its
// context carries. It is safe for concurrent use.
type Template struct {
	cfg  *Config
	name string
	tpl  *jinja.Template
}

// reserved are the context names apply_chat_template sets itself; passing
// them as extra arguments is a TypeError in transformers too.
var reserved = map[string]bool{"messages": true, "add_generation_prompt": true, "tools": true, "documents": true}

// NewTemplate compiles cfg.ChatTemplate. A syntax error names the file the
// template came from (cfg.TemplatePath, else "chat_template").
func NewTemplate(cfg *Config) (*Template, error) {
	name := cfg.TemplatePath
	if name == "" {
		name = "chat_template"
	}
	if cfg.ChatTemplate == "" {
		return nil, fmt.Errorf("%s: the tokenizer config has no chat_template", nameOr(cfg.Path, "chat template"))
	}
	tpl, err := jinja.Compile(cfg.ChatTemplate)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return &Template{cfg: cfg, name: name, tpl: tpl}, nil
}

func nameOr(s, def string) string {
	if s == "" {
		return def
	}
	return s
}

// Load compiles the chat template of a model directory (see LoadDir).
func Load(dir string) (*Template, error) {
	cfg, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	if cfg.ChatTemplate == "" {
		return nil, fmt.Errorf("%s: no chat_template in tokenizer_config.json and no chat_template.jinja", dir)
	}
	return NewTemplate(cfg)
}

// Config returns the tokenizer config the template was built from.
func (t *Template) Config() *Config { return t.cfg }

// Render renders a conversation as transformers' apply_chat_template
// (tokenize=False) does: the context holds messages (dicts of role and
// content), add_generation_prompt, tools and documents (None), the special
// tokens that are set, additional_special_tokens, and opts.Extra. An error
// the template raises is a *RaiseError wrapped with the template's name.
func (t *Template) Render(messages []Message, opts Options) (string, error) {
	msgs := make([]any, len(messages))
	for i, m := range messages {
		msgs[i] = map[string]any{"role": m.Role, "content": m.Content}
	}
	ctx := map[string]any{
		"messages":              msgs,
		"add_generation_prompt": opts.AddGenerationPrompt,
		"tools":                 nil,
		"documents":             nil,
	}
	for k, v := range t.cfg.Special {
		ctx[k] = v
	}
	if t.cfg.AdditionalSpecial != nil {
		l := make([]any, len(t.cfg.AdditionalSpecial))
		for i, s := range t.cfg.AdditionalSpecial {
			l[i] = s
		}
		ctx["additional_special_tokens"] = l
	}
	for k, v := range opts.Extra {
		if reserved[k] {
			return "", fmt.Errorf("%s: %q is set by the renderer and cannot be an extra argument", t.name, k)
		}
		ctx[k] = v
	}
	vals := make(map[string]jinja.Value, len(ctx)+1)
	for k, v := range ctx {
		vals[k] = jinja.FromGoValue(v)
	}
	// Our own raise_exception, so the template's message comes back as a
	// typed error rather than as an engine error string.
	vals["raise_exception"] = jinja.NewCallable("raise_exception", func(args []jinja.Value, _ map[string]jinja.Value) (jinja.Value, error) {
		if len(args) == 0 {
			return jinja.Undefined(), &RaiseError{Message: "raise_exception() called without a message"}
		}
		return jinja.Undefined(), &RaiseError{Message: valueText(args[0])}
	})
	out, err := t.tpl.RenderValues(vals)
	if err != nil {
		var re *RaiseError
		if errors.As(err, &re) {
			return "", fmt.Errorf("%s: template raised: %w", t.name, re)
		}
		return "", fmt.Errorf("%s: %w", t.name, err)
	}
	return out, nil
}

// valueText is how Jinja prints a value: strings as they are.
func valueText(v jinja.Value) string {
	if v.IsString() {
		return v.AsString()
	}
	return v.String()
}
