// Package tokenize turns text into token ids and back. The built-in
// tokenizer is byte-level: ids 0–255 are the bytes themselves, special
// tokens come after. The Tokenizer interface is where an HF tokenizer.json
// tokenizer plugs in.
package tokenize

import (
	"fmt"
	"os"
	"path/filepath"
	"strings"
)

// Tokenizer maps text to ids and back.
type Tokenizer interface {
	Encode(text string) []int32
	Decode(ids []int32) string
	VocabSize() int
}

// Byte is the byte-level tokenizer.
type Byte struct{ specials []string }

// NewByte returns a byte tokenizer with optional special tokens, numbered
// from 256 in order.
func NewByte(specials ...string) *Byte { return &Byte{specials: specials} }

// Encode returns the bytes of text; it never produces special tokens.
func (b *Byte) Encode(text string) []int32 {
	out := make([]int32, len(text))
	for i := 0; i < len(text); i++ {
		out[i] = int32(text[i])
	}
	return out
}

// EncodeBytes is Encode for raw bytes.
func (b *Byte) EncodeBytes(p []byte) []int32 {
	out := make([]int32, len(p))
	for i, c := range p {
		out[i] = int32(c)
	}
	return out
}

// Decode writes bytes back and special tokens by name; unknown ids as ⟨id⟩.
func (b *Byte) Decode(ids []int32) string {
	var sb strings.Builder
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

// VocabSize is 256 plus the special tokens.
func (b *Byte) VocabSize() int { return 256 + len(b.specials) }

// Load returns the tokenizer of a model directory: the byte tokenizer when
// there is no tokenizer.json.
func Load(dir string) (Tokenizer, error) {
	p := filepath.Join(dir, "tokenizer.json")
	if _, err := os.Stat(p); err == nil {
		return nil, fmt.Errorf("%s: tokenizer.json is not supported yet (only the byte tokenizer)", p)
	}
	return NewByte(), nil
}
