package chat

import (
	"fmt"
	"strings"
)

// Span is a byte range [Start, End) of a rendered text.
type Span struct{ Start, End int }

// Rendered is a conversation rendered for training: the text and, for each
// assistant message in order, the span of the text that message produced
// (its content and the template's end of turn, without the opening that
// add_generation_prompt would have written).
type Rendered struct {
	Text string
	// Assistant[k] is the span of the k-th assistant message; Index[k] is
	// that message's index in the conversation.
	Assistant []Span
	Index     []int
}

// RenderSpans renders messages (opts.AddGenerationPrompt is normally false
// for training data) and finds each assistant message's span by rendering
// prefixes of the conversation: for the assistant message i, the text of
// messages[:i] with the generation prompt ends where the span starts, and
// the text of messages[:i+1] ends where it ends. Both must be prefixes of
// the whole text; a template that renders an earlier turn differently once
// later turns follow (Qwen3 drops or adds a <think> block depending on
// where the last user turn is) breaks that, and RenderSpans says which
// message and where the texts part. Such a conversation can still be
// trained on one assistant turn at a time: RenderSpans(messages[:i+1]) for
// each assistant message i.
func (t *Template) RenderSpans(messages []Message, opts Options) (Rendered, error) {
	text, err := t.Render(messages, opts)
	if err != nil {
		return Rendered{}, err
	}
	r := Rendered{Text: text}
	prevEnd := 0
	for i, m := range messages {
		if m.Role != "assistant" {
			continue
		}
		pre, err := t.Render(messages[:i], Options{AddGenerationPrompt: true, Extra: opts.Extra})
		if err != nil {
			return Rendered{}, fmt.Errorf("message %d: rendering the turns before it: %w", i, err)
		}
		if err := prefixOf(pre, text, i, "the turns before it with the generation prompt"); err != nil {
			return Rendered{}, fmt.Errorf("%s: %w", t.name, err)
		}
		through, err := t.Render(messages[:i+1], Options{Extra: opts.Extra})
		if err != nil {
			return Rendered{}, fmt.Errorf("message %d: rendering the turns through it: %w", i, err)
		}
		if err := prefixOf(through, text, i, "the turns through it"); err != nil {
			return Rendered{}, fmt.Errorf("%s: %w", t.name, err)
		}
		end := len(through)
		if len(pre) < prevEnd || end < len(pre) {
			return Rendered{}, fmt.Errorf("%s: message %d (assistant): its span [%d, %d) is out of order (the previous one ended at %d)", t.name, i, len(pre), end, prevEnd)
		}
		r.Assistant = append(r.Assistant, Span{Start: len(pre), End: end})
		r.Index = append(r.Index, i)
		prevEnd = end
	}
	return r, nil
}

// prefixOf checks that part is a prefix of whole, and otherwise says where
// they part.
func prefixOf(part, whole string, i int, what string) error {
	if strings.HasPrefix(whole, part) {
		return nil
	}
	n := 0
	for n < len(part) && n < len(whole) && part[n] == whole[n] {
		n++
	}
	return fmt.Errorf("message %d (assistant): the chat template is not prefix-stable: rendering %s does not give a prefix of the whole conversation; they part at byte %d (%q vs %q)",
		i, what, n, excerpt(part, n), excerpt(whole, n))
}

func excerpt(s string, at int) string {
	end := min(at+24, len(s))
	return s[at:end]
}
