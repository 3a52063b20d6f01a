package tokenize

import (
	"unicode"
	"unicode/utf8"
)

// Hand-written matchers for the two split patterns nearly every byte-level
// tokenizer uses. They give the same matches as the general splitRegex
// (TestFastSplittersMatchRegex checks, and both are checked against
// Python's regex module) several times faster, since Go's regexp runs these
// patterns on its slowest engine.

// splitter finds the matches of a split pattern.
type splitter interface {
	findAll(s string) [][2]int
}

// compileSplitter returns a hand-written matcher for a known pattern, else
// the general one.
func compileSplitter(pattern string) (splitter, error) {
	switch pattern {
	case gpt2Pattern:
		return gpt2Splitter{}, nil
	case llama3Pattern:
		return llama3Splitter{}, nil
	}
	return compileSplitRegex(pattern)
}

// llama3Pattern is the split of Llama-3 (and of tiktoken's cl100k).
const llama3Pattern = `(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+`

// isWS is \s as Oniguruma means it: Unicode White_Space.
func isWS(r rune) bool {
	return r >= '\t' && r <= '\r' || r == ' ' || r == 0x85 || r > 0x85 && unicode.Is(unicode.Z, r)
}

// isOther is [^\s\p{L}\p{N}]. Invalid UTF-8 decodes to U+FFFD, a symbol,
// as in Go's regexp.
func isOther(r rune) bool { return !isWS(r) && !unicode.IsLetter(r) && !unicode.IsNumber(r) }

func runeAt(s string, i int) (rune, int) {
	if i >= len(s) {
		return -1, 0
	}
	if c := s[i]; c < utf8.RuneSelf {
		return rune(c), 1
	}
	return utf8.DecodeRuneInString(s[i:])
}

// span of runes from i for which f holds; returns the end and the count.
func runWhile(s string, i int, f func(rune) bool, limit int) (end, n int) {
	for i < len(s) && (limit <= 0 || n < limit) {
		r, size := runeAt(s, i)
		if !f(r) {
			break
		}
		i += size
		n++
	}
	return i, n
}

// contraction matches 's 't 're 've 'm 'll 'd at i (any case when fold).
func contraction(s string, i int, fold bool) int {
	if i >= len(s) || s[i] != '\'' {
		return 0
	}
	lower := func(j int) (rune, int) {
		r, size := runeAt(s, j)
		if !fold {
			return r, size
		}
		switch r {
		case 'S', 'ſ':
			r = 's'
		case 'T', 'R', 'E', 'V', 'M', 'L', 'D':
			r += 'a' - 'A'
		}
		return r, size
	}
	r1, n1 := lower(i + 1)
	switch r1 {
	case 's', 't', 'm', 'd':
		return 1 + n1
	case 'r', 'v', 'l':
		r2, n2 := lower(i + 1 + n1)
		if r1 == 'r' && r2 == 'e' || r1 == 'v' && r2 == 'e' || r1 == 'l' && r2 == 'l' {
			return 1 + n1 + n2
		}
	}
	return 0
}

// whitespace is \s+(?!\S)|\s+ at i, where s[i] is whitespace: the run
// minus its last rune when a non-space follows it and that leaves any.
func whitespace(s string, i int) int {
	end, n := runWhile(s, i, isWS, 0)
	if end < len(s) && n > 1 {
		_, size := utf8.DecodeLastRuneInString(s[:end])
		return end - size
	}
	return end
}

type gpt2Splitter struct{}

func (gpt2Splitter) findAll(s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		e := gpt2Match(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

// gpt2Match is the end of the match at i: 's|'t|'re|'ve|'m|'ll|'d|
// ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+. Every rune starts one.
func gpt2Match(s string, i int) int {
	if n := contraction(s, i, false); n > 0 {
		return i + n
	}
	j := i
	if s[i] == ' ' {
		j++
	}
	if r, _ := runeAt(s, j); r >= 0 {
		for _, f := range []func(rune) bool{unicode.IsLetter, unicode.IsNumber, isOther} {
			if f(r) {
				end, _ := runWhile(s, j, f, 0)
				return end
			}
		}
	}
	// s[i] is whitespace here (a space followed by whitespace or nothing).
	return whitespace(s, i)
}

type llama3Splitter struct{}

func (llama3Splitter) findAll(s string) [][2]int {
	out := make([][2]int, 0, len(s)/4+1)
	for i := 0; i < len(s); {
		e := llama3Match(s, i)
		out = append(out, [2]int{i, e})
		i = e
	}
	return out
}

// llama3Match is the end of the match of llama3Pattern at i. Every rune
// starts one.
func llama3Match(s string, i int) int {
	if n := contraction(s, i, true); n > 0 {
		return i + n
	}
	r0, n0 := runeAt(s, i)
	// [^\r\n\p{L}\p{N}]?\p{L}+
	if unicode.IsLetter(r0) {
		end, _ := runWhile(s, i, unicode.IsLetter, 0)
		return end
	}
	if r0 != '\r' && r0 != '\n' && !unicode.IsNumber(r0) {
		if r1, _ := runeAt(s, i+n0); r1 >= 0 && unicode.IsLetter(r1) {
			end, _ := runWhile(s, i+n0, unicode.IsLetter, 0)
			return end
		}
	}
	// \p{N}{1,3}
	if unicode.IsNumber(r0) {
		end, _ := runWhile(s, i, unicode.IsNumber, 3)
		return end
	}
	// ?[^\s\p{L}\p{N}]+[\r\n]*
	j := i
	if r0 == ' ' {
		j++
	}
	if r, _ := runeAt(s, j); r >= 0 && isOther(r) {
		end, _ := runWhile(s, j, isOther, 0)
		end, _ = runWhile(s, end, func(r rune) bool { return r == '\r' || r == '\n' }, 0)
		return end
	}
	// r0 is whitespace. \s*[\r\n]+: up to and including the run's last
	// newline.
	end, _ := runWhile(s, i, isWS, 0)
	for k := end - 1; k >= i; k-- {
		if s[k] == '\r' || s[k] == '\n' {
			return k + 1
		}
	}
	return whitespace(s, i)
}
