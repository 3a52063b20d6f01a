package chat

import (
	"fmt"
	"os"
	"path/filepath"

	"lens/engine/tokenize"
)

// Tokenizer is a model directory's tokenizer.json together with its
// tokenizer_config.json: encoding with the special tokens the config asks
// for, and its chat template.
type Tokenizer struct {
	BPE    *tokenize.BPE
	Config *Config
	// Template is nil when the model has no chat template.
	Template *Template

	bos, eos       int32
	addBOS, addEOS bool
}

// LoadTokenizer reads dir/tokenizer.json, dir/tokenizer_config.json (if
// any) and dir/chat_template.jinja (if any).
func LoadTokenizer(dir string) (*Tokenizer, error) {
	p := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(p); err != nil {
		return nil, fmt.Errorf("tokenizer: %w", err)
	}
	bpe, err := tokenize.LoadJSON(p)
	if err != nil {
		return nil, err
	}
	cfg, err := LoadDir(dir)
	if err != nil {
		return nil, err
	}
	return NewTokenizer(bpe, cfg)
}

// NewTokenizer pairs a tokenizer with its config. add_bos_token and
// add_eos_token, where the config sets them, decide whether Encode adds
// BOS and EOS, as transformers' Llama and Gemma tokenizers rebuild their
// post-processor from them; where unset, the tokenizer.json
// post-processor's BOS is added.
func NewTokenizer(bpe *tokenize.BPE, cfg *Config) (*Tokenizer, error) {
	t := &Tokenizer{BPE: bpe, Config: cfg}
	name := nameOr(cfg.Path, "tokenizer config")
	if cfg.AddBOS != nil {
		if t.addBOS = *cfg.AddBOS; t.addBOS {
			id, err := t.specialID("bos_token")
			if err != nil {
				return nil, fmt.Errorf("%s: add_bos_token: %w", name, err)
			}
			t.bos = id
		}
	} else {
		t.bos, t.addBOS = bpe.BOS()
	}
	if cfg.AddEOS != nil && *cfg.AddEOS {
		id, err := t.specialID("eos_token")
		if err != nil {
			return nil, fmt.Errorf("%s: add_eos_token: %w", name, err)
		}
		t.eos, t.addEOS = id, true
	}
	if cfg.ChatTemplate != "" {
		tpl, err := NewTemplate(cfg)
		if err != nil {
			return nil, err
		}
		t.Template = tpl
	}
	return t, nil
}

func (t *Tokenizer) specialID(name string) (int32, error) {
	s, ok := t.Config.Token(name)
	if !ok {
		return 0, fmt.Errorf("%s is not set", name)
	}
	id, ok := t.BPE.TokenID(s)
	if !ok {
		return 0, fmt.Errorf("%s %q is not in tokenizer.json", name, s)
	}
	return id, nil
}

// Encode returns the ids of text, reading the spelling of special tokens
// as those tokens (as transformers' encode does); addSpecial adds BOS and
// EOS as the config or post-processor asks.
func (t *Tokenizer) Encode(text string, addSpecial bool) []int32 {
	ids := t.BPE.EncodeWithSpecial(text)
	if !addSpecial || (!t.addBOS && !t.addEOS) {
		return ids
	}
	out := make([]int32, 0, len(ids)+2)
	if t.addBOS {
		out = append(out, t.bos)
	}
	out = append(out, ids...)
	if t.addEOS {
		out = append(out, t.eos)
	}
	return out
}

// Decode writes ids back as text, special tokens included.
func (t *Tokenizer) Decode(ids []int32) string { return t.BPE.Decode(ids) }

// VocabSize is the tokenizer's vocabulary size, added tokens included.
func (t *Tokenizer) VocabSize() int { return t.BPE.VocabSize() }

// ApplyChatTemplate renders messages with the model's chat template.
func (t *Tokenizer) ApplyChatTemplate(messages []Message, opts Options) (string, error) {
	if t.Template == nil {
		return "", fmt.Errorf("%s: the model has no chat template", nameOr(t.Config.Path, "tokenizer config"))
	}
	return t.Template.Render(messages, opts)
}

// Encoded is a conversation as token ids, with the tokens of assistant
// messages marked.
type Encoded struct {
	Rendered
	IDs []int32
	// AssistantMask[j] is true where IDs[j] belongs to an assistant message's
	// span (see Rendered), the tokens to train on.
	AssistantMask []bool
}

// EncodeChat renders messages (see Template.RenderSpans) and encodes the
// text as apply_chat_template(tokenize=True) does, without adding special
// tokens. It encodes the stretches between span boundaries one by one so
// that every token lies wholly inside or outside an assistant span, and
// checks that this gives the ids of the whole text; a tokenizer that
// merges across a boundary is an error naming the message.
func (t *Tokenizer) EncodeChat(messages []Message, opts Options) (Encoded, error) {
	if t.Template == nil {
		return Encoded{}, fmt.Errorf("%s: the model has no chat template", nameOr(t.Config.Path, "tokenizer config"))
	}
	r, err := t.Template.RenderSpans(messages, opts)
	if err != nil {
		return Encoded{}, err
	}
	e := Encoded{Rendered: r}
	at := 0
	add := func(s string, mask bool) {
		ids := t.BPE.EncodeWithSpecial(s)
		e.IDs = append(e.IDs, ids...)
		for range ids {
			e.AssistantMask = append(e.AssistantMask, mask)
		}
	}
	for _, sp := range r.Assistant {
		add(r.Text[at:sp.Start], false)
		add(r.Text[sp.Start:sp.End], true)
		at = sp.End
	}
	add(r.Text[at:], false)
	whole := t.BPE.EncodeWithSpecial(r.Text)
	if k := firstDiff(whole, e.IDs); k >= 0 {
		return Encoded{}, fmt.Errorf("%s: an assistant span boundary splits a token: encoding the text whole and span by span differ at token %d (%v vs %v)",
			t.Template.name, k, window(whole, k), window(e.IDs, k))
	}
	return e, nil
}

func firstDiff(a, b []int32) int {
	for i := range min(len(a), len(b)) {
		if a[i] != b[i] {
			return i
		}
	}
	if len(a) != len(b) {
		return min(len(a), len(b))
	}
	return -1
}

func window(ids []int32, k int) []int32 { return ids[k:min(k+4, len(ids))] }

// Specials are the tokens put around a prompt/completion or text example
// when training on it: BOS where encoding adds it (add_bos_token, or the
// tokenizer.json post-processor), and the config's eos_token, which TRL's
// SFTTrainer appends to every completion whatever add_eos_token says, so
// the tuned model learns to stop.
func (t *Tokenizer) Specials() (bos, eos []int32) {
	if t.addBOS {
		bos = []int32{t.bos}
	}
	if id, err := t.specialID("eos_token"); err == nil {
		eos = []int32{id}
	}
	return bos, eos
}
