package sft

import (
	"fmt"
	"strings"
)

// Renderer turns a conversation into the text a model is trained on; with
// addGenerationPrompt it ends with the opening of an assistant turn, as
// Hugging Face's apply_chat_template(add_generation_prompt=True) does.
// A model's own chat template implements it; Simple is the fallback.
type Renderer interface {
	Render(msgs []Message, addGenerationPrompt bool) (string, error)
}

// EndMarker closes each turn of the Simple template; it is also the end
// of a text or completion example for a tokenizer without an EOS token
// (the byte tokenizer).
const EndMarker = "<|end|>"

// Simple is the built-in template for models without a chat template
// (the tiny byte-level model): each message is "<|role|>\n" + content +
// "<|end|>\n", and the generation prompt is "<|assistant|>\n".
type Simple struct{}

// Render implements Renderer.
func (Simple) Render(msgs []Message, addGenerationPrompt bool) (string, error) {
	var b strings.Builder
	for i, m := range msgs {
		if m.Role == "" {
			return "", fmt.Errorf("message %d: empty role", i)
		}
		b.WriteString("<|" + m.Role + "|>\n" + m.Content + EndMarker + "\n")
	}
	if addGenerationPrompt {
		b.WriteString("<|assistant|>\n")
	}
	return b.String(), nil
}

// Segment is a piece of a rendered conversation; Train marks an assistant
// turn (its content and end-of-turn text).
type Segment struct {
	Text  string
	Train bool
}

// Segments renders msgs and cuts the text at the assistant turns: turn i
// is what rendering msgs[:i+1] adds to rendering msgs[:i] with the
// generation prompt, so the prompt's "<|assistant|>" header is not
// trained on and the turn's end marker is. A template whose prefix
// renderings are not prefixes of the whole is an error.
func Segments(r Renderer, msgs []Message) ([]Segment, error) {
	full, err := r.Render(msgs, false)
	if err != nil {
		return nil, err
	}
	var out []Segment
	at := 0 // bytes of full already cut into segments
	for i, m := range msgs {
		if m.Role != "assistant" {
			continue
		}
		before, err := r.Render(msgs[:i], true)
		if err != nil {
			return nil, err
		}
		upto, err := r.Render(msgs[:i+1], false)
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(full, upto) || !strings.HasPrefix(upto, before) || len(before) < at {
			return nil, fmt.Errorf("message %d: the chat template's rendering of the conversation up to this assistant turn is not a prefix of the whole, so the turn cannot be located", i)
		}
		if len(before) > at {
			out = append(out, Segment{Text: full[at:len(before)]})
		}
		if len(upto) > len(before) {
			out = append(out, Segment{Text: full[len(before):len(upto)], Train: true})
		}
		at = len(upto)
	}
	if at < len(full) {
		out = append(out, Segment{Text: full[at:]})
	}
	return out, nil
}
