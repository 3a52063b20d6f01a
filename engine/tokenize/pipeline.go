package tokenize

import (
	"strconv"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// The stages of an HF tokenizer around the BPE model, with the semantics of
// huggingface/tokenizers: normalizers rewrite a segment of text,
// pre-tokenizers cut it into pieces the model encodes one by one, decoders
// turn token strings back into text.

type normalizer interface{ normalize(s string) string }

type seqNormalizer []normalizer

// unicodeNormalizer applies a Unicode normalization form (Qwen2's
// tokenizer.json asks for NFC), with golang.org/x/text's tables.
type unicodeNormalizer struct{ form norm.Form }

func (u unicodeNormalizer) normalize(s string) string { return u.form.String(s) }

func (q seqNormalizer) normalize(s string) string {
	for _, n := range q {
		s = n.normalize(s)
	}
	return s
}

// prependNormalizer prepends to non-empty text (Llama-2's "▁").
type prependNormalizer struct{ prefix string }

func (p prependNormalizer) normalize(s string) string {
	if s == "" {
		return s
	}
	return p.prefix + s
}

// pattern is HF's {"String": ...} or {"Regex": ...}.
type pattern struct {
	literal string
	re      splitter // nil for a literal
}

// find returns the non-overlapping matches of p in s.
func (p pattern) find(s string) [][2]int {
	if p.re != nil {
		return p.re.findAll(s)
	}
	if p.literal == "" {
		return nil
	}
	var out [][2]int
	for i := 0; ; {
		j := strings.Index(s[i:], p.literal)
		if j < 0 {
			return out
		}
		out = append(out, [2]int{i + j, i + j + len(p.literal)})
		i += j + len(p.literal)
	}
}

// replace writes content over every match.
func (p pattern) replace(s, content string) string {
	if p.re == nil {
		if p.literal == "" {
			return s
		}
		return strings.ReplaceAll(s, p.literal, content)
	}
	ms := p.find(s)
	if len(ms) == 0 {
		return s
	}
	var b strings.Builder
	prev := 0
	for _, m := range ms {
		b.WriteString(s[prev:m[0]])
		b.WriteString(content)
		prev = m[1]
	}
	b.WriteString(s[prev:])
	return b.String()
}

type replaceNormalizer struct {
	pat     pattern
	content string
}

func (r replaceNormalizer) normalize(s string) string { return r.pat.replace(s, r.content) }

type stripNormalizer struct{ left, right bool }

func (n stripNormalizer) normalize(s string) string {
	if n.left {
		s = strings.TrimLeftFunc(s, unicode.IsSpace)
	}
	if n.right {
		s = strings.TrimRightFunc(s, unicode.IsSpace)
	}
	return s
}

// lowercaseNormalizer uses Go's case mapping, which differs from Rust's
// to_lowercase for a few characters (İ becomes i, not i̇).
type lowercaseNormalizer struct{}

func (lowercaseNormalizer) normalize(s string) string { return strings.ToLower(s) }

type byteLevelNormalizer struct{}

func (byteLevelNormalizer) normalize(s string) string { return toByteLevel(s) }

// piece is a span of text on its way to the model. start is whether it
// begins at offset 0 of the original text, which Metaspace's "first"
// scheme asks.
type piece struct {
	text  string
	start bool
}

type preTokenizer interface{ preTokenize(ps []piece) []piece }

type seqPreTokenizer []preTokenizer

func (q seqPreTokenizer) preTokenize(ps []piece) []piece {
	for _, p := range q {
		ps = p.preTokenize(ps)
	}
	return ps
}

// behavior is HF's SplitDelimiterBehavior: what happens to the matches of
// a split pattern.
type behavior int

const (
	removed behavior = iota
	isolated
	mergedWithPrevious
	mergedWithNext
	contiguous
)

var behaviors = map[string]behavior{
	"Removed": removed, "Isolated": isolated, "MergedWithPrevious": mergedWithPrevious,
	"MergedWithNext": mergedWithNext, "Contiguous": contiguous,
}

type span struct {
	start, end int
	match      bool
}

// cover turns matches into spans covering all of s, as HF's
// Pattern::find_matches does.
func cover(s string, ms [][2]int) []span {
	out := make([]span, 0, 2*len(ms)+1)
	prev := 0
	for _, m := range ms {
		if m[0] > prev {
			out = append(out, span{prev, m[0], false})
		}
		out = append(out, span{m[0], m[1], true})
		prev = m[1]
	}
	if prev < len(s) {
		out = append(out, span{prev, len(s), false})
	}
	return out
}

// runeMatches returns one match per rune for which f holds.
func runeMatches(s string, f func(rune) bool) [][2]int {
	var out [][2]int
	for i, r := range s {
		if f(r) {
			_, size := utf8.DecodeRuneInString(s[i:])
			out = append(out, [2]int{i, i + size})
		}
	}
	return out
}

// splitPiece cuts p by the matches ms with behavior b (NormalizedString::
// split); empty results are dropped.
func splitPiece(p piece, ms [][2]int, b behavior, invert bool, out []piece) []piece {
	spans := cover(p.text, ms)
	if invert {
		for i := range spans {
			spans[i].match = !spans[i].match
		}
	}
	type cut struct {
		start, end int
		remove     bool
	}
	var cuts []cut
	switch b {
	case isolated:
		for _, s := range spans {
			cuts = append(cuts, cut{s.start, s.end, false})
		}
	case removed:
		for _, s := range spans {
			cuts = append(cuts, cut{s.start, s.end, s.match})
		}
	case contiguous:
		prev := false
		for _, s := range spans {
			if s.match == prev && len(cuts) > 0 {
				cuts[len(cuts)-1].end = s.end
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prev = s.match
		}
	case mergedWithPrevious:
		prev := false
		for _, s := range spans {
			if s.match && !prev && len(cuts) > 0 {
				cuts[len(cuts)-1].end = s.end
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prev = s.match
		}
	case mergedWithNext:
		prev := false
		for i := len(spans) - 1; i >= 0; i-- {
			s := spans[i]
			if s.match && !prev && len(cuts) > 0 {
				cuts[len(cuts)-1].start = s.start
			} else {
				cuts = append(cuts, cut{s.start, s.end, false})
			}
			prev = s.match
		}
		for i, j := 0, len(cuts)-1; i < j; i, j = i+1, j-1 {
			cuts[i], cuts[j] = cuts[j], cuts[i]
		}
	}
	for _, c := range cuts {
		if c.remove || c.end <= c.start {
			continue
		}
		out = append(out, piece{p.text[c.start:c.end], p.start && c.start == 0})
	}
	return out
}

type splitPreTokenizer struct {
	pat      pattern
	behavior behavior
	invert   bool
}

func (s splitPreTokenizer) preTokenize(ps []piece) []piece {
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		out = splitPiece(p, s.pat.find(p.text), s.behavior, s.invert, out)
	}
	return out
}

// runeSplitPreTokenizer splits at runes for which f holds (Digits,
// WhitespaceSplit).
type runeSplitPreTokenizer struct {
	f        func(rune) bool
	behavior behavior
}

func (s runeSplitPreTokenizer) preTokenize(ps []piece) []piece {
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		out = splitPiece(p, runeMatches(p.text, s.f), s.behavior, false, out)
	}
	return out
}

// gpt2Pattern is the split ByteLevel does when use_regex is set.
const gpt2Pattern = `'s|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+`

type byteLevelPreTokenizer struct{ addPrefixSpace, useRegex bool }

func (bl byteLevelPreTokenizer) preTokenize(ps []piece) []piece {
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		if bl.addPrefixSpace && !strings.HasPrefix(p.text, " ") {
			p.text = " " + p.text
		}
		n := len(out)
		if bl.useRegex {
			out = splitPiece(p, gpt2Splitter{}.findAll(p.text), isolated, false, out)
		} else if p.text != "" {
			out = append(out, p)
		}
		for i := n; i < len(out); i++ {
			out[i].text = toByteLevel(out[i].text)
		}
	}
	return out
}

// prepend schemes of Metaspace.
const (
	prependAlways = "always"
	prependFirst  = "first"
	prependNever  = "never"
)

type metaspacePreTokenizer struct {
	repl   string
	scheme string
	split  bool
}

func (m metaspacePreTokenizer) preTokenize(ps []piece) []piece {
	out := make([]piece, 0, len(ps))
	for _, p := range ps {
		p.text = strings.ReplaceAll(p.text, " ", m.repl)
		if !strings.HasPrefix(p.text, m.repl) &&
			(m.scheme == prependAlways || m.scheme == prependFirst && p.start) {
			p.text = m.repl + p.text
		}
		if !m.split {
			if p.text != "" {
				out = append(out, p)
			}
			continue
		}
		out = splitPiece(p, pattern{literal: m.repl}.find(p.text), mergedWithNext, false, out)
	}
	return out
}

type decoder interface {
	decode(tokens []string) []string
}

type seqDecoder []decoder

func (q seqDecoder) decode(t []string) []string {
	for _, d := range q {
		t = d.decode(t)
	}
	return t
}

// byteLevelDecoder maps stand-in runes back to bytes. Unlike HF it keeps
// invalid UTF-8 as raw bytes instead of writing U+FFFD, so decoding ids in
// parts and concatenating gives the same bytes as decoding them at once.
type byteLevelDecoder struct{}

func (byteLevelDecoder) decode(t []string) []string {
	var b []byte
	for _, tok := range t {
		if bs, ok := fromByteLevel(tok); ok {
			b = append(b, bs...)
		} else {
			b = append(b, tok...)
		}
	}
	return []string{string(b)}
}

type metaspaceDecoder struct {
	repl       string
	stripFirst bool // prepend scheme is not "never": the first token loses its replacement runes
}

func (m metaspaceDecoder) decode(t []string) []string {
	out := make([]string, len(t))
	for i, tok := range t {
		with := " "
		if i == 0 && m.stripFirst {
			with = ""
		}
		out[i] = strings.ReplaceAll(tok, m.repl, with)
	}
	return out
}

type replaceDecoder struct {
	pat     pattern
	content string
}

func (r replaceDecoder) decode(t []string) []string {
	out := make([]string, len(t))
	for i, tok := range t {
		out[i] = r.pat.replace(tok, r.content)
	}
	return out
}

// byteFallbackDecoder turns runs of <0xNN> tokens into their bytes (raw,
// not U+FFFD, when they are not valid UTF-8: see byteLevelDecoder).
type byteFallbackDecoder struct{}

func byteToken(tok string) (byte, bool) {
	if len(tok) != 6 || !strings.HasPrefix(tok, "<0x") || tok[5] != '>' {
		return 0, false
	}
	v, err := strconv.ParseUint(tok[3:5], 16, 8)
	return byte(v), err == nil
}

func (byteFallbackDecoder) decode(t []string) []string {
	out := make([]string, 0, len(t))
	var pending []byte
	for _, tok := range t {
		if b, ok := byteToken(tok); ok {
			pending = append(pending, b)
			continue
		}
		if len(pending) > 0 {
			out = append(out, string(pending))
			pending = pending[:0]
		}
		out = append(out, tok)
	}
	if len(pending) > 0 {
		out = append(out, string(pending))
	}
	return out
}

type fuseDecoder struct{}

func (fuseDecoder) decode(t []string) []string { return []string{strings.Join(t, "")} }

// stripDecoder removes up to start leading and stop trailing runes equal
// to content from every token.
type stripDecoder struct {
	content    rune
	start, end int
}

func (s stripDecoder) decode(t []string) []string {
	out := make([]string, len(t))
	for i, tok := range t {
		for n := 0; n < s.start; n++ {
			r, size := utf8.DecodeRuneInString(tok)
			if size == 0 || r != s.content || r == utf8.RuneError && size == 1 {
				break
			}
			tok = tok[size:]
		}
		for n := 0; n < s.end; n++ {
			r, size := utf8.DecodeLastRuneInString(tok)
			if size == 0 || r != s.content || r == utf8.RuneError && size == 1 {
				break
			}
			tok = tok[:len(tok)-size]
		}
		out[i] = tok
	}
	return out
}

// bpeDecoder replaces the end-of-word suffix by a space (none after the
// last token).
type bpeDecoder struct{ suffix string }

func (d bpeDecoder) decode(t []string) []string {
	out := make([]string, len(t))
	for i, tok := range t {
		with := " "
		if i == len(t)-1 {
			with = ""
		}
		out[i] = strings.ReplaceAll(tok, d.suffix, with)
	}
	return out
}

// isWordRune is \w in the regex engines HF uses.
func isWordRune(r rune) bool {
	return unicode.IsLetter(r) || unicode.IsMark(r) || unicode.Is(unicode.Nd, r) || unicode.Is(unicode.Pc, r)
}
