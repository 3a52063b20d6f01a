package tokenize

import "strings"

// GPT-2's byte-level alphabet: every byte has a printable stand-in rune
// (printable Latin-1 bytes stand for themselves, the rest map to U+0100 and
// up), so a byte string becomes text a BPE vocabulary can hold.
var (
	byteRune  [256]rune
	byteChars [256]string
	runeByte  = map[rune]byte{}
)

func init() {
	n := 0
	for b := 0; b < 256; b++ {
		printable := ('!' <= b && b <= '~') || (0xA1 <= b && b <= 0xAC) || (0xAE <= b && b <= 0xFF)
		r := rune(b)
		if !printable {
			r = rune(256 + n)
			n++
		}
		byteRune[b] = r
		byteChars[b] = string(r)
		runeByte[r] = byte(b)
	}
}

// toByteLevel writes every byte of s as its stand-in rune.
func toByteLevel(s string) string {
	var b strings.Builder
	b.Grow(2 * len(s))
	for i := 0; i < len(s); i++ {
		b.WriteString(byteChars[s[i]])
	}
	return b.String()
}

// fromByteLevel maps stand-in runes back to bytes. ok is false when a rune
// has no byte (HF then keeps the token's own bytes).
func fromByteLevel(s string) (out []byte, ok bool) {
	out = make([]byte, 0, len(s))
	for _, r := range s {
		b, ok := runeByte[r]
		if !ok {
			return nil, false
		}
		out = append(out, b)
	}
	return out, true
}
