// Package tokenize turns text into token ids and back. Two tokenizers
// implement the Tokenizer interface: Byte, the built-in byte-level one (ids
// 0–255 are the bytes themselves, special tokens come after), and BPE, a
// Hugging Face tokenizer.json with a BPE model (byte-level BPE as GPT-2,
// SmolLM and Llama-3 ship it; SentencePiece-style BPE with byte fallback as
// Llama-2 and Mistral ship it). Load picks the tokenizer of a model
// directory. Training tokenizers is not part of this package.
package tokenize

import (
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// Tokenizer maps text to ids and back.
type Tokenizer interface {
	// Encode returns the ids of text. It never produces special tokens.
	Encode(text string) []int32
	// Decode writes ids back as text, special tokens by name.
	Decode(ids []int32) string
	// VocabSize is one more than the largest id Encode or a special token
	// can produce.
	VocabSize() int
}

// Byte is the byte-level tokenizer: any byte string, valid UTF-8 or not,
// encodes to one id per byte and decodes back to the same bytes.
type Byte struct{ specials []string }

var _ Tokenizer = (*Byte)(nil)

// NewByte returns a byte tokenizer with optional special tokens, numbered
// from 256 in the order given (NewByte("<bos>", "<eos>") gives <bos> = 256,
// <eos> = 257).
func NewByte(specials ...string) *Byte {
	return &Byte{specials: append([]string(nil), specials...)}
}

// Encode returns the bytes of text; it never produces special tokens, even
// when text spells one.
func (b *Byte) Encode(text string) []int32 {
	out := make([]int32, len(text))
	for i := 0; i < len(text); i++ {
		out[i] = int32(text[i])
	}
	return out
}

// EncodeBytes is Encode for raw bytes, without a string copy.
func (b *Byte) EncodeBytes(p []byte) []int32 {
	out := make([]int32, len(p))
	for i, c := range p {
		out[i] = int32(c)
	}
	return out
}

// Decode writes bytes back and special tokens by name; ids outside the
// vocabulary come out as ⟨id⟩ rather than being dropped.
func (b *Byte) Decode(ids []int32) string {
	var sb strings.Builder
	sb.Grow(len(ids))
	for _, id := range ids {
		switch {
		case id >= 0 && id < 256:
			sb.WriteByte(byte(id))
		case id >= 256 && int(id)-256 < len(b.specials):
			sb.WriteString(b.specials[id-256])
		default:
			fmt.Fprintf(&sb, "⟨%d⟩", id)
		}
	}
	return sb.String()
}

// VocabSize is 256 plus the number of special tokens.
func (b *Byte) VocabSize() int { return 256 + len(b.specials) }

// Specials returns the special token names in id order (from 256).
func (b *Byte) Specials() []string { return append([]string(nil), b.specials...) }

// SpecialID returns the id of the named special token (the first, if the
// name was given twice).
func (b *Byte) SpecialID(name string) (int32, bool) {
	for i, s := range b.specials {
		if s == name {
			return int32(256 + i), true
		}
	}
	return 0, false
}

// Load returns the tokenizer of a model directory: its tokenizer.json when
// there is one (see ParseJSON for what is supported), else the byte
// tokenizer.
func Load(dir string) (Tokenizer, error) {
	st, err := os.Stat(dir)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	if !st.IsDir() {
		return nil, fmt.Errorf("load tokenizer: %s is not a directory", dir)
	}
	p := filepath.Join(dir, "tokenizer.json")
	_, err = os.Stat(p)
	switch {
	case err == nil:
		return LoadJSON(p)
	case errors.Is(err, fs.ErrNotExist):
		return NewByte(), nil
	default:
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
}
