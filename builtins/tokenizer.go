package builtins

import (
	"fmt"
	"path/filepath"

	"go.starlark.net/starlark"

	"lens/engine/chat"
)

// Tokenizer is the Starlark value of model.tokenizer(m_or_dir): a model
// directory's tokenizer.json with its tokenizer_config.json and chat
// template (engine/chat does the work; this only converts values).
//
//	tok.encode(text, add_special=True) -> list of int
//	tok.decode(ids) -> string
//	tok.apply_chat_template(messages, add_generation_prompt=False, tokenize=False, **template_vars) -> string or list of int
//	tok.vocab_size, tok.bos_token, tok.eos_token, tok.pad_token (None when unset)
type Tokenizer struct {
	t   *chat.Tokenizer
	dir string
}

var _ starlark.HasAttrs = (*Tokenizer)(nil)

func (t *Tokenizer) String() string {
	return fmt.Sprintf("<tokenizer %s vocab=%d>", t.dir, t.t.VocabSize())
}
func (t *Tokenizer) Type() string          { return "tokenizer" }
func (t *Tokenizer) Freeze()               {}
func (t *Tokenizer) Truth() starlark.Bool  { return true }
func (t *Tokenizer) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: tokenizer") }
func (t *Tokenizer) AttrNames() []string {
	return []string{"apply_chat_template", "bos_token", "decode", "encode", "eos_token", "pad_token", "vocab_size"}
}

func (t *Tokenizer) Attr(name string) (starlark.Value, error) {
	switch name {
	case "encode":
		return method("tokenizer.encode", t.encode), nil
	case "decode":
		return method("tokenizer.decode", t.decode), nil
	case "apply_chat_template":
		return method("tokenizer.apply_chat_template", t.applyChatTemplate), nil
	case "vocab_size":
		return starlark.MakeInt(t.t.VocabSize()), nil
	case "bos_token", "eos_token", "pad_token":
		if s, ok := t.t.Config.Token(name); ok {
			return starlark.String(s), nil
		}
		return starlark.None, nil
	}
	return nil, nil
}

// modelTokenizer is model.tokenizer(m_or_dir): the tokenizer of a model
// loaded with model.from_dir, or of a model directory.
func modelTokenizer(th *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var src starlark.Value
	if err := unpack(fn, args, kwargs, &src); err != nil {
		return nil, err
	}
	var dir string
	switch v := src.(type) {
	case *Model:
		if v.ref.Dir == "" {
			return nil, fmt.Errorf("%s: this model has no directory (model.tiny, model.new and model.pretrain use the byte tokenizer); pass a model from model.from_dir or a directory path", fn.Name())
		}
		dir = v.ref.Dir
	case starlark.String:
		dir = string(v)
		if env, err := envOf(th); err == nil {
			if _, err := env.readable(dir); err != nil {
				return nil, fmt.Errorf("%s: %w", fn.Name(), err)
			}
		}
		if abs, err := filepath.Abs(dir); err == nil {
			dir = abs
		}
	default:
		return nil, fmt.Errorf("%s: model: want a model or a directory path, got %s", fn.Name(), src.Type())
	}
	tok, err := chat.LoadTokenizer(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &Tokenizer{t: tok, dir: dir}, nil
}

func (t *Tokenizer) encode(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var text string
	var addSpecial bool
	if err := unpack(fn, args, kwargs, &text, &addSpecial); err != nil {
		return nil, err
	}
	return idList(t.t.Encode(text, addSpecial)), nil
}

func (t *Tokenizer) decode(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var list starlark.Iterable
	if err := unpack(fn, args, kwargs, &list); err != nil {
		return nil, err
	}
	var ids []int32
	it := list.Iterate()
	defer it.Done()
	var x starlark.Value
	for i := 0; it.Next(&x); i++ {
		n, err := starlark.AsInt32(x)
		if err != nil {
			return nil, fmt.Errorf("%s: ids[%d]: %w", fn.Name(), i, err)
		}
		ids = append(ids, int32(n))
	}
	return starlark.String(t.t.Decode(ids)), nil
}

// applyChatTemplate passes keyword arguments other than its own to the
// template as variables, as transformers does (e.g. enable_thinking).
func (t *Tokenizer) applyChatTemplate(_ *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var own, extra []starlark.Tuple
	for _, kv := range kwargs {
		switch kv[0].(starlark.String) {
		case "messages", "add_generation_prompt", "tokenize":
			own = append(own, kv)
		default:
			extra = append(extra, kv)
		}
	}
	var msgs *starlark.List
	var agp, tokenize bool
	if err := unpack(fn, args, own, &msgs, &agp, &tokenize); err != nil {
		return nil, err
	}
	messages, err := chatMessages(msgs)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	opts := chat.Options{AddGenerationPrompt: agp}
	if len(extra) > 0 {
		opts.Extra = map[string]any{}
		for _, kv := range extra {
			v, err := toGo(kv[1])
			if err != nil {
				return nil, fmt.Errorf("%s: %s: %w", fn.Name(), kv[0].(starlark.String), err)
			}
			opts.Extra[string(kv[0].(starlark.String))] = v
		}
	}
	text, err := t.t.ApplyChatTemplate(messages, opts)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if tokenize {
		return idList(t.t.Encode(text, false)), nil
	}
	return starlark.String(text), nil
}

// chatMessages converts a list of {"role": str, "content": str} dicts.
func chatMessages(l *starlark.List) ([]chat.Message, error) {
	out := make([]chat.Message, l.Len())
	for i := range l.Len() {
		d, ok := l.Index(i).(*starlark.Dict)
		if !ok {
			return nil, fmt.Errorf("messages[%d]: want a dict with role and content, got %s", i, l.Index(i).Type())
		}
		for _, key := range []string{"role", "content"} {
			v, found, err := d.Get(starlark.String(key))
			if err != nil || !found {
				return nil, fmt.Errorf("messages[%d]: missing %q", i, key)
			}
			s, ok := v.(starlark.String)
			if !ok {
				return nil, fmt.Errorf("messages[%d][%q]: want a string, got %s", i, key, v.Type())
			}
			if key == "role" {
				out[i].Role = string(s)
			} else {
				out[i].Content = string(s)
			}
		}
	}
	return out, nil
}

func idList(ids []int32) *starlark.List {
	vals := make([]starlark.Value, len(ids))
	for i, id := range ids {
		vals[i] = starlark.MakeInt(int(id))
	}
	return starlark.NewList(vals)
}
