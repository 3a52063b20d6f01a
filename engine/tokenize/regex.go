package tokenize

import (
	"fmt"
	"regexp"
	"strings"
	"unicode/utf8"
)

// Tokenizer patterns are written for Oniguruma / fancy-regex, where \s, \d
// and \w are Unicode-aware and the GPT-2 family ends with the lookahead
// alternative \s+(?!\S). Go's regexp has ASCII-only \s\d\w and no
// lookaround, so patterns are translated, and the lookahead alternative is
// emulated exactly (see splitRegex). splitfast.go has hand-written
// matchers for the two common patterns.

// Unicode White_Space, the set \s means in the engines HF uses.
const (
	wsClassBody   = `\t-\r\x{85}\p{Z}`
	wordClassBody = `\p{L}\p{M}\p{Nd}\p{Pc}`
)

// lookaheadAlt is the one lookahead form supported: a whitespace run not
// followed by a non-space.
const lookaheadAlt = `\s+(?!\S)`

// translateRegex rewrites \s \S \d \D \w \W to their Unicode meaning. It
// rejects lookaround (the caller handles lookaheadAlt first).
func translateRegex(p string) (string, error) {
	var b strings.Builder
	inClass := false
	for i := 0; i < len(p); i++ {
		c := p[i]
		switch {
		case c == '\\' && i+1 < len(p):
			e := p[i+1]
			i++
			switch e {
			case 's':
				if inClass {
					b.WriteString(wsClassBody)
				} else {
					b.WriteString("[" + wsClassBody + "]")
				}
			case 'S', 'W':
				if inClass {
					return "", fmt.Errorf(`\%c inside a character class is not supported`, e)
				}
				body := wsClassBody
				if e == 'W' {
					body = wordClassBody
				}
				b.WriteString("[^" + body + "]")
			case 'd':
				b.WriteString(`\p{Nd}`)
			case 'D':
				b.WriteString(`\P{Nd}`)
			case 'w':
				if inClass {
					b.WriteString(wordClassBody)
				} else {
					b.WriteString("[" + wordClassBody + "]")
				}
			default:
				b.WriteByte('\\')
				b.WriteByte(e)
			}
		case c == '[' && !inClass:
			inClass = true
			b.WriteByte(c)
			// A ']' right after '[' or '[^' is a literal.
			if i+1 < len(p) && p[i+1] == '^' {
				b.WriteByte('^')
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				b.WriteByte(']')
				i++
			}
		case c == ']' && inClass:
			inClass = false
			b.WriteByte(c)
		case c == '(' && !inClass && isLookaround(p[i:]):
			return "", fmt.Errorf("lookaround %q is not supported (only the alternative %s)", p[i:min(len(p), i+4)], lookaheadAlt)
		default:
			b.WriteByte(c)
		}
	}
	return b.String(), nil
}

func isLookaround(p string) bool {
	for _, pre := range []string{"(?=", "(?!", "(?<=", "(?<!"} {
		if strings.HasPrefix(p, pre) {
			return true
		}
	}
	return false
}

// splitAlternatives cuts a pattern at its top-level '|'.
func splitAlternatives(p string) []string {
	var alts []string
	depth, start := 0, 0
	inClass := false
	for i := 0; i < len(p); i++ {
		switch c := p[i]; {
		case c == '\\':
			i++
		case inClass:
			if c == ']' {
				inClass = false
			}
		case c == '[':
			inClass = true
			if i+1 < len(p) && p[i+1] == '^' {
				i++
			}
			if i+1 < len(p) && p[i+1] == ']' {
				i++
			}
		case c == '(':
			depth++
		case c == ')':
			depth--
		case c == '|' && depth == 0:
			alts = append(alts, p[start:i])
			start = i + 1
		}
	}
	return append(alts, p[start:])
}

// splitRegex finds the matches of a tokenizer pattern. Each top-level
// alternative \s+(?!\S) is compiled as a named group (\s+); when that group
// wins, the lookahead is applied by hand: a backtracking engine gives the
// whitespace run back one character at a time until the next character is
// not a non-space, which (the run being maximal) means the run minus its
// last character, or the whole run at the end of the text. If that leaves
// nothing, the alternatives after it are tried at the same position (rest).
type splitRegex struct {
	re   *regexp.Regexp
	la   map[int]*splitRegex // submatch index of a lookahead group -> the alternatives after it (nil: none)
	lsub []int               // submatch indexes of lookahead groups
}

// compileSplitRegex compiles a tokenizer pattern.
func compileSplitRegex(pattern string) (*splitRegex, error) {
	return compileAlts(splitAlternatives(pattern), false, new(int))
}

func compileAlts(alts []string, anchored bool, n *int) (*splitRegex, error) {
	var parts []string
	type laInfo struct {
		name string
		rest []string
	}
	var las []laInfo
	for i, a := range alts {
		if a == lookaheadAlt {
			*n++
			name := fmt.Sprintf("lensla%d", *n)
			parts = append(parts, "(?P<"+name+">["+wsClassBody+"]+)")
			las = append(las, laInfo{name, alts[i+1:]})
			continue
		}
		t, err := translateRegex(a)
		if err != nil {
			return nil, err
		}
		parts = append(parts, "(?:"+t+")")
	}
	src := strings.Join(parts, "|")
	if anchored {
		src = "^(?:" + src + ")"
	}
	re, err := regexp.Compile(src)
	if err != nil {
		return nil, err
	}
	sr := &splitRegex{re: re, la: map[int]*splitRegex{}}
	for _, l := range las {
		idx := re.SubexpIndex(l.name)
		var rest *splitRegex
		if len(l.rest) > 0 {
			if rest, err = compileAlts(l.rest, true, n); err != nil {
				return nil, err
			}
		}
		sr.la[idx] = rest
		sr.lsub = append(sr.lsub, idx)
	}
	return sr, nil
}

// next returns the first match in text at or after pos, or ok false.
func (r *splitRegex) next(text string, pos int) (start, end int, ok bool) {
	for pos <= len(text) {
		s, e, ok := r.matchAt(text, pos)
		if !ok {
			return 0, 0, false
		}
		if e >= 0 {
			return s, e, true
		}
		// The lookahead and everything after it failed at s: a backtracking
		// engine moves on to the next start position.
		_, size := utf8.DecodeRuneInString(text[s:])
		pos = s + max(size, 1)
	}
	return 0, 0, false
}

// matchAt runs the regexp from pos. It returns the match, or (s, -1, true)
// when the leftmost candidate at s was a lookahead alternative that fails
// there along with all alternatives after it, or ok false for no match.
func (r *splitRegex) matchAt(text string, pos int) (start, end int, ok bool) {
	m := r.re.FindStringSubmatchIndex(text[pos:])
	if m == nil {
		return 0, 0, false
	}
	s, e := pos+m[0], pos+m[1]
	for _, idx := range r.lsub {
		if m[2*idx] < 0 {
			continue
		}
		if e == len(text) {
			return s, e, true
		}
		_, size := utf8.DecodeLastRuneInString(text[s:e])
		if e-size > s {
			return s, e - size, true
		}
		rest := r.la[idx]
		if rest == nil {
			return s, -1, true
		}
		rs, re, ok := rest.matchAt(text, s)
		if !ok || re < 0 || rs != s {
			return s, -1, true
		}
		return rs, re, true
	}
	return s, e, true
}

// findAll returns the [start, end) of every match, left to right; an empty
// match advances one character, as in the regex engines HF uses.
func (r *splitRegex) findAll(text string) [][2]int {
	var out [][2]int
	pos := 0
	for pos <= len(text) {
		s, e, ok := r.next(text, pos)
		if !ok {
			break
		}
		out = append(out, [2]int{s, e})
		if e > s {
			pos = e
			continue
		}
		if s >= len(text) {
			break
		}
		_, size := utf8.DecodeRuneInString(text[s:])
		pos = s + size
	}
	return out
}
