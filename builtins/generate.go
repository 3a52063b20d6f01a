package builtins

import (
	"fmt"
	"strings"

	"go.starlark.net/starlark"

	"lens/engine/chat"
	"lens/engine/device"
	"lens/engine/generate"
	"lens/engine/lora"
	"lens/engine/runs"
	"lens/engine/tokenize"
)

// model.generate(m, prompt, adapter=None, max_new_tokens=64, temperature=0.0,
// top_p=1.0, top_k=0, seed=0, stop=[], device=None) -> string: the text generated after
// prompt (a string, or a list of chat messages; see promptIDs). adapter is a PEFT
// adapter directory or a run (its latest checkpoint). Generation ends at
// the model's EOS ids (config.json / generation_config.json), at max
// tokens, or at the first of the stop strings, which is cut off with what
// follows it.
func modelGenerate(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var mv *Model
	var prompt starlark.Value
	var adapter starlark.Value
	var stop *starlark.List
	var maxNew, topK, seed int
	var temperature, topP float64
	var dev starlark.Value = starlark.None
	if err := unpack(fn, args, kwargs, &mv, &prompt, &adapter, &maxNew, &temperature, &topP, &topK, &seed, &stop, &dev); err != nil {
		return nil, err
	}
	where, err := generateDevice(t, dev)
	if err != nil {
		return nil, fmt.Errorf("%s: for parameter \"device\": %w", fn.Name(), err)
	}
	if seed < 0 {
		return nil, fmt.Errorf("%s: for parameter \"seed\": must not be negative, got %d", fn.Name(), seed)
	}
	var stops []string
	if stop != nil {
		for i := range stop.Len() {
			s, ok := starlark.AsString(stop.Index(i))
			if !ok || s == "" {
				return nil, fmt.Errorf("%s: for parameter \"stop\": element %d: want a non-empty string, got %s", fn.Name(), i, stop.Index(i).String())
			}
			stops = append(stops, s)
		}
	}
	// Generation reads the float32 weights (a model from from_dir(quantize=)
	// as loaded); drawing a seeded model also sets the hash a run's adapter
	// is checked against.
	base, err := mv.model()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	tok, err := runs.Spec{Base: mv.ref}.Tokenizer()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	ids, err := promptIDs(mv, tok, prompt)
	if err != nil {
		return nil, fmt.Errorf("%s: for parameter \"prompt\": %w", fn.Name(), err)
	}
	ad, err := generateAdapter(t, mv, adapter)
	if err != nil {
		return nil, fmt.Errorf("%s: for parameter \"adapter\": %w", fn.Name(), err)
	}
	g, err := generate.NewDevice(where, base, ad)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	defer g.Close()
	opts := generate.Options{MaxNewTokens: maxNew, Temperature: temperature, TopP: topP, TopK: topK, Seed: uint64(seed)}
	if mv.ref.Dir != "" {
		if opts.StopIDs, err = generate.EOSIDs(mv.ref.Dir); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	var out []int32
	emit := func(id int32) error {
		out = append(out, id)
		if len(stops) > 0 && stopAt(tok.Decode(out), stops) >= 0 {
			return generate.ErrStop
		}
		return nil
	}
	if _, err := g.Generate(ctxOf(t), ids, opts, emit); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return starlark.String(generatedText(tok, out, opts.StopIDs, stops)), nil
}

// generateDevice resolves device= as lens.train's: None is lens run
// --device (else the CPU); auto falls back to the CPU with the same note.
func generateDevice(t *starlark.Thread, v starlark.Value) (string, error) {
	env, _ := envOf(t)
	want := ""
	if env != nil {
		want = env.Device
	}
	if v != starlark.None {
		s, ok := v.(starlark.String)
		if !ok {
			return "", fmt.Errorf("want string, got %s", v.Type())
		}
		want = string(s)
	}
	got, note, err := device.Resolve(want)
	if err != nil {
		return "", err
	}
	if note != "" && env != nil && !env.noted {
		env.noted = true
		env.printf("%s\n", note)
	}
	return got, nil
}

// promptIDs encodes the prompt. For a model with a directory it goes
// through engine/chat's tokenizer as transformers does: a string with the
// special tokens the tokenizer config adds (BOS), and spelled special
// tokens read as such; a list of {"role", "content"} messages rendered by
// the chat template with the generation prompt, then encoded without
// adding special tokens. Models without a directory use the byte
// tokenizer (as a directory without tokenizer.json does) and take a
// string only.
func promptIDs(mv *Model, tok tokenize.Tokenizer, prompt starlark.Value) ([]int32, error) {
	var ct *chat.Tokenizer
	if _, isByte := tok.(*tokenize.Byte); mv.ref.Dir != "" && !isByte {
		var err error
		if ct, err = chat.LoadTokenizer(mv.ref.Dir); err != nil {
			return nil, err
		}
	}
	switch p := prompt.(type) {
	case starlark.String:
		if ct != nil {
			return ct.Encode(string(p), true), nil
		}
		return tok.Encode(string(p)), nil
	case *starlark.List:
		if ct == nil {
			return nil, fmt.Errorf("chat messages need a model from model.from_dir with tokenizer.json and a chat template")
		}
		msgs, err := chatMessages(p)
		if err != nil {
			return nil, err
		}
		text, err := ct.ApplyChatTemplate(msgs, chat.Options{AddGenerationPrompt: true})
		if err != nil {
			return nil, err
		}
		return ct.Encode(text, false), nil
	default:
		return nil, fmt.Errorf("want a string or a list of messages, got %s", prompt.Type())
	}
}

// generateAdapter resolves adapter=: None, a PEFT directory, or a run's
// latest checkpoint (which must be a LoRA run on the same base).
func generateAdapter(t *starlark.Thread, mv *Model, v starlark.Value) (*lora.Adapter, error) {
	switch a := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.String:
		dir := string(a)
		if env, err := envOf(t); err == nil {
			if _, err := env.readable(dir); err != nil {
				return nil, err
			}
		}
		base, err := mv.model()
		if err != nil {
			return nil, err
		}
		return lora.Load(dir, base)
	case *Run:
		_, st, err := storeOf(t)
		if err != nil {
			return nil, err
		}
		meta, err := st.GetRun(a.meta.ID)
		if err != nil {
			return nil, err
		}
		spec, err := runs.SpecOf(meta)
		if err != nil {
			return nil, err
		}
		if mv.ref.Hash != "" && spec.Base.Hash != "" && mv.ref.Hash != spec.Base.Hash {
			return nil, fmt.Errorf("run %s was trained on another base model (hash %.12s, this model %.12s)", a.meta.ID, spec.Base.Hash, mv.ref.Hash)
		}
		ad, _, err := runs.Adapter(st, a.meta.ID, -1)
		if err != nil {
			return nil, err
		}
		if ad == nil {
			return nil, fmt.Errorf("run %s is a full fine-tune and has no adapter", a.meta.ID)
		}
		return ad, nil
	default:
		return nil, fmt.Errorf("want None, a PEFT adapter directory or a run, got %s", v.Type())
	}
}

// stopAt is the byte offset of the earliest stop string in text, or -1.
func stopAt(text string, stops []string) int {
	at := -1
	for _, s := range stops {
		if i := strings.Index(text, s); i >= 0 && (at < 0 || i < at) {
			at = i
		}
	}
	return at
}

// generatedText decodes ids without a final EOS token and cuts it at the
// first stop string.
func generatedText(tok tokenize.Tokenizer, ids, eos []int32, stops []string) string {
	if n := len(ids); n > 0 {
		for _, e := range eos {
			if ids[n-1] == e {
				ids = ids[:n-1]
				break
			}
		}
	}
	text := tok.Decode(ids)
	if i := stopAt(text, stops); i >= 0 {
		text = text[:i]
	}
	return text
}
