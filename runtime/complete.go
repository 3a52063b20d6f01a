package runtime

import (
	"sort"
	"strings"

	"go.starlark.net/starlark"
)

// completer is the REPL's Tab completion: names in scope, attributes of a
// dotted name (module members, a run's metrics, ...), and keyword
// arguments of the call the cursor is in. It reads values, never calls
// them.
type completer struct {
	h       *Host
	globals starlark.StringDict
	predecl starlark.StringDict
}

// Do implements readline.AutoCompleter: the suffixes that complete the
// word before pos, and that word's length.
func (c *completer) Do(line []rune, pos int) ([][]rune, int) {
	cands, word := c.complete(string(line[:pos]))
	out := make([][]rune, len(cands))
	for i, s := range cands {
		out[i] = []rune(s[len(word):])
	}
	return out, len([]rune(word))
}

// complete returns the completions of the text before the cursor and the
// partial word they replace.
func (c *completer) complete(text string) (cands []string, word string) {
	start := len(text)
	for start > 0 && isNameByte(text[start-1]) || start > 0 && text[start-1] == '.' {
		start--
	}
	expr := text[start:]
	if i := strings.LastIndexByte(expr, '.'); i >= 0 {
		word = expr[i+1:]
		v := c.resolve(expr[:i])
		if v == nil {
			return nil, word
		}
		ha, ok := v.(starlark.HasAttrs)
		if !ok {
			return nil, word
		}
		names := append([]string(nil), ha.AttrNames()...)
		sort.Strings(names)
		for _, n := range names {
			if strings.HasPrefix(n, word) {
				a, _ := ha.Attr(n)
				cands = append(cands, n+callSuffix(a))
			}
		}
		return cands, word
	}
	word = expr
	if callee := c.callee(text[:start]); callee != nil {
		for _, k := range c.h.keywords(callee) {
			if strings.HasPrefix(k, word) {
				cands = append(cands, k+"=")
			}
		}
	}
	seen := map[string]bool{}
	var names []string
	for _, d := range []starlark.StringDict{c.globals, c.predecl, starlark.Universe} {
		for k := range d {
			if !seen[k] && strings.HasPrefix(k, word) && !strings.HasPrefix(k, "_") {
				seen[k] = true
				names = append(names, k)
			}
		}
	}
	sort.Strings(names)
	for _, n := range names {
		cands = append(cands, n+callSuffix(c.lookup(n)))
	}
	return cands, word
}

// callee is the callable whose argument list the text ends in, if the
// cursor is at the start of an argument (after "(" or ",").
func (c *completer) callee(before string) starlark.Value {
	s := strings.TrimRight(before, " \t")
	if s == "" || (s[len(s)-1] != '(' && s[len(s)-1] != ',') {
		return nil
	}
	depth := 0
	for i := len(s) - 1; i >= 0; i-- {
		switch s[i] {
		case ')', ']', '}':
			depth++
		case '[', '{':
			depth--
		case '(':
			if depth > 0 {
				depth--
				continue
			}
			j := i
			for j > 0 && (isNameByte(s[j-1]) || s[j-1] == '.') {
				j--
			}
			if j == i {
				return nil
			}
			return c.resolve(s[j:i])
		}
		if depth < 0 {
			return nil
		}
	}
	return nil
}

// resolve looks up a dotted name (a.b.c) by attribute access only.
func (c *completer) resolve(dotted string) starlark.Value {
	parts := strings.Split(dotted, ".")
	v := c.lookup(parts[0])
	for _, p := range parts[1:] {
		ha, ok := v.(starlark.HasAttrs)
		if !ok {
			return nil
		}
		next, err := ha.Attr(p)
		if err != nil || next == nil {
			return nil
		}
		v = next
	}
	return v
}

func (c *completer) lookup(name string) starlark.Value {
	for _, d := range []starlark.StringDict{c.globals, c.predecl, starlark.Universe} {
		if v, ok := d[name]; ok {
			return v
		}
	}
	return nil
}

// callSuffix is "(" for a callable, so that "model.ti" completes to
// "model.tiny(".
func callSuffix(v starlark.Value) string {
	if _, ok := v.(starlark.Callable); ok {
		return "("
	}
	return ""
}

func isNameByte(b byte) bool {
	return b == '_' || b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || b >= '0' && b <= '9'
}
