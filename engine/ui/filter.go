package ui

import (
	"fmt"
	"math"
	"strconv"
	"strings"
	"unicode"
)

// Filter is a parsed run filter: the body of `lens.runs(where=lambda run:
// EXPR)` for a small subset of Starlark, evaluated in Go (engine/ imports
// no Starlark). EXPR sees the run's fields by name, or as `run.NAME`: id,
// name, status, reason, steps, final_loss, tags (a list), created (RFC 3339
// text) and config (the flat dict `run.config` gives scripts). It has
// literals (numbers, "strings", True, False, None, [lists]), `x.f` and
// `x["f"]` on dicts, unary minus, comparisons (== != < <= > >= in, not in),
// not, and, or, and parentheses. As in Starlark, 16 == 16.0, `"a" in
// "cat"` tests a substring and `"k" in config` a key; one difference: an
// ordered comparison with None (a running run's final_loss) is False
// instead of an error, so one running run does not break the filter.
type Filter struct {
	src  string
	root node
}

// ParseFilter parses expr; errors name the column where parsing stopped.
func ParseFilter(expr string) (*Filter, error) {
	toks, err := lex(expr)
	if err != nil {
		return nil, err
	}
	p := &parser{toks: toks, src: expr}
	n, err := p.or()
	if err != nil {
		return nil, err
	}
	if t := p.peek(); t.kind != tEOF {
		return nil, fmt.Errorf("filter: unexpected %q at column %d", t.text, t.pos+1)
	}
	return &Filter{src: expr, root: n}, nil
}

// String is the expression as written.
func (f *Filter) String() string { return f.src }

// Match evaluates the filter over a run's fields (as JSON-like Go values:
// float64, string, bool, nil, []any, map[string]any).
func (f *Filter) Match(fields map[string]any) (bool, error) {
	v, err := f.root.eval(fields)
	if err != nil {
		return false, err
	}
	return truth(v), nil
}

type tokKind int

const (
	tEOF tokKind = iota
	tNum
	tStr
	tIdent
	tOp
)

type token struct {
	kind tokKind
	text string
	num  float64
	pos  int
}

func lex(s string) ([]token, error) {
	var out []token
	for i := 0; i < len(s); {
		c := rune(s[i])
		switch {
		case c == ' ' || c == '\t' || c == '\n' || c == '\r':
			i++
		case c == '"' || c == '\'':
			j := i + 1
			for j < len(s) && rune(s[j]) != c {
				if s[j] == '\\' {
					j++
				}
				j++
			}
			if j >= len(s) {
				return nil, fmt.Errorf("filter: unterminated string at column %d", i+1)
			}
			raw := s[i : j+1]
			if c == '\'' {
				raw = `"` + strings.ReplaceAll(s[i+1:j], `"`, `\"`) + `"`
			}
			v, err := strconv.Unquote(raw)
			if err != nil {
				return nil, fmt.Errorf("filter: bad string at column %d: %v", i+1, err)
			}
			out = append(out, token{kind: tStr, text: v, pos: i})
			i = j + 1
		case unicode.IsDigit(c) || (c == '.' && i+1 < len(s) && unicode.IsDigit(rune(s[i+1]))):
			j := i
			for j < len(s) && (unicode.IsDigit(rune(s[j])) || s[j] == '.' || s[j] == 'e' || s[j] == 'E' ||
				((s[j] == '-' || s[j] == '+') && (s[j-1] == 'e' || s[j-1] == 'E'))) {
				j++
			}
			f, err := strconv.ParseFloat(s[i:j], 64)
			if err != nil {
				return nil, fmt.Errorf("filter: bad number %q at column %d", s[i:j], i+1)
			}
			out = append(out, token{kind: tNum, num: f, text: s[i:j], pos: i})
			i = j
		case unicode.IsLetter(c) || c == '_':
			j := i
			for j < len(s) && (unicode.IsLetter(rune(s[j])) || unicode.IsDigit(rune(s[j])) || s[j] == '_') {
				j++
			}
			out = append(out, token{kind: tIdent, text: s[i:j], pos: i})
			i = j
		default:
			op := ""
			for _, o := range []string{"==", "!=", "<=", ">=", "<", ">", "(", ")", "[", "]", ",", ".", "-"} {
				if strings.HasPrefix(s[i:], o) {
					op = o
					break
				}
			}
			if op == "" {
				return nil, fmt.Errorf("filter: unexpected %q at column %d", string(c), i+1)
			}
			out = append(out, token{kind: tOp, text: op, pos: i})
			i += len(op)
		}
	}
	return append(out, token{kind: tEOF, text: "end of expression", pos: len(s)}), nil
}

type parser struct {
	toks []token
	i    int
	src  string
}

func (p *parser) peek() token { return p.toks[p.i] }
func (p *parser) next() token { t := p.toks[p.i]; p.i++; return t }
func (p *parser) is(kind tokKind, text string) bool {
	t := p.peek()
	return t.kind == kind && t.text == text
}

func (p *parser) expect(text string) error {
	if !p.is(tOp, text) {
		t := p.peek()
		return fmt.Errorf("filter: want %q at column %d, found %q", text, t.pos+1, t.text)
	}
	p.i++
	return nil
}

func (p *parser) or() (node, error) {
	l, err := p.and()
	for err == nil && p.is(tIdent, "or") {
		p.i++
		var r node
		if r, err = p.and(); err == nil {
			l = logic{or: true, l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) and() (node, error) {
	l, err := p.not()
	for err == nil && p.is(tIdent, "and") {
		p.i++
		var r node
		if r, err = p.not(); err == nil {
			l = logic{l: l, r: r}
		}
	}
	return l, err
}

func (p *parser) not() (node, error) {
	if p.is(tIdent, "not") {
		p.i++
		x, err := p.not()
		return notNode{x}, err
	}
	return p.cmp()
}

func (p *parser) cmp() (node, error) {
	l, err := p.unary()
	if err != nil {
		return nil, err
	}
	t := p.peek()
	op := ""
	switch {
	case t.kind == tOp && strings.Contains("== != < <= > >=", t.text) && t.text != "-":
		op = t.text
	case t.kind == tIdent && t.text == "in":
		op = "in"
	case t.kind == tIdent && t.text == "not" && p.toks[p.i+1].kind == tIdent && p.toks[p.i+1].text == "in":
		op = "not in"
		p.i++
	}
	if op == "" {
		return l, nil
	}
	p.i++
	r, err := p.unary()
	if err != nil {
		return nil, err
	}
	return compare{op: op, l: l, r: r, pos: t.pos}, nil
}

func (p *parser) unary() (node, error) {
	if p.is(tOp, "-") {
		t := p.next()
		x, err := p.unary()
		return neg{x: x, pos: t.pos}, err
	}
	return p.postfix()
}

func (p *parser) postfix() (node, error) {
	x, err := p.primary()
	for err == nil {
		switch {
		case p.is(tOp, "."):
			p.i++
			t := p.next()
			if t.kind != tIdent {
				return nil, fmt.Errorf("filter: want a field name after '.' at column %d", t.pos+1)
			}
			x = index{x: x, key: lit{t.text}, pos: t.pos}
		case p.is(tOp, "["):
			t := p.next()
			var k node
			if k, err = p.or(); err == nil {
				err = p.expect("]")
			}
			x = index{x: x, key: k, pos: t.pos}
		default:
			return x, nil
		}
	}
	return nil, err
}

func (p *parser) primary() (node, error) {
	t := p.next()
	switch t.kind {
	case tNum:
		return lit{t.num}, nil
	case tStr:
		return lit{t.text}, nil
	case tIdent:
		switch t.text {
		case "True":
			return lit{true}, nil
		case "False":
			return lit{false}, nil
		case "None":
			return lit{nil}, nil
		case "and", "or", "not", "in":
			return nil, fmt.Errorf("filter: unexpected %q at column %d", t.text, t.pos+1)
		}
		return ident{name: t.text, pos: t.pos}, nil
	case tOp:
		switch t.text {
		case "(":
			x, err := p.or()
			if err == nil {
				err = p.expect(")")
			}
			return x, err
		case "[":
			var l list
			for !p.is(tOp, "]") {
				x, err := p.or()
				if err != nil {
					return nil, err
				}
				l = append(l, x)
				if !p.is(tOp, ",") {
					break
				}
				p.i++
			}
			return l, p.expect("]")
		}
	}
	return nil, fmt.Errorf("filter: unexpected %q at column %d", t.text, t.pos+1)
}

type node interface {
	eval(env map[string]any) (any, error)
}

type lit struct{ v any }
type ident struct {
	name string
	pos  int
}
type index struct {
	x, key node
	pos    int
}
type neg struct {
	x   node
	pos int
}
type list []node
type notNode struct{ x node }
type logic struct {
	or   bool
	l, r node
}
type compare struct {
	op   string
	l, r node
	pos  int
}

func (n lit) eval(map[string]any) (any, error) { return n.v, nil }

func (n ident) eval(env map[string]any) (any, error) {
	if n.name == "run" {
		return env, nil
	}
	v, ok := env[n.name]
	if !ok {
		return nil, fmt.Errorf("filter: run has no field %q (column %d)", n.name, n.pos+1)
	}
	return v, nil
}

func (n index) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	k, err := n.key.eval(env)
	if err != nil {
		return nil, err
	}
	switch x := x.(type) {
	case map[string]any:
		ks, ok := k.(string)
		if !ok {
			return nil, fmt.Errorf("filter: dict key must be a string (column %d)", n.pos+1)
		}
		v, ok := x[ks]
		if !ok {
			return nil, fmt.Errorf("filter: no field %q (column %d)", ks, n.pos+1)
		}
		return v, nil
	case []any:
		f, ok := k.(float64)
		i := int(f)
		if !ok || float64(i) != f {
			return nil, fmt.Errorf("filter: list index must be an integer (column %d)", n.pos+1)
		}
		if i < 0 {
			i += len(x)
		}
		if i < 0 || i >= len(x) {
			return nil, fmt.Errorf("filter: index %v out of range (column %d)", f, n.pos+1)
		}
		return x[i], nil
	}
	return nil, fmt.Errorf("filter: cannot index %s (column %d)", typeName(x), n.pos+1)
}

func (n neg) eval(env map[string]any) (any, error) {
	x, err := n.x.eval(env)
	if err != nil {
		return nil, err
	}
	f, ok := x.(float64)
	if !ok {
		return nil, fmt.Errorf("filter: unary - on %s (column %d)", typeName(x), n.pos+1)
	}
	return -f, nil
}

func (n list) eval(env map[string]any) (any, error) {
	out := make([]any, len(n))
	for i, x := range n {
		v, err := x.eval(env)
		if err != nil {
			return nil, err
		}
		out[i] = v
	}
	return out, nil
}

func (n notNode) eval(env map[string]any) (any, error) {
	v, err := n.x.eval(env)
	return !truth(v), err
}

func (n logic) eval(env map[string]any) (any, error) {
	l, err := n.l.eval(env)
	if err != nil || truth(l) == n.or {
		return l, err
	}
	return n.r.eval(env)
}

func (n compare) eval(env map[string]any) (any, error) {
	l, err := n.l.eval(env)
	if err != nil {
		return nil, err
	}
	r, err := n.r.eval(env)
	if err != nil {
		return nil, err
	}
	switch n.op {
	case "==":
		return equal(l, r), nil
	case "!=":
		return !equal(l, r), nil
	case "in", "not in":
		in, err := contains(r, l)
		if err != nil {
			return nil, fmt.Errorf("%w (column %d)", err, n.pos+1)
		}
		return in == (n.op == "in"), nil
	}
	if l == nil || r == nil {
		return false, nil
	}
	var c int
	switch a := l.(type) {
	case float64:
		b, ok := r.(float64)
		if !ok {
			return nil, fmt.Errorf("filter: cannot compare number %s %s (column %d)", n.op, typeName(r), n.pos+1)
		}
		if math.IsNaN(a) || math.IsNaN(b) {
			return false, nil
		}
		c = cmpOrdered(a, b)
	case string:
		b, ok := r.(string)
		if !ok {
			return nil, fmt.Errorf("filter: cannot compare string %s %s (column %d)", n.op, typeName(r), n.pos+1)
		}
		c = strings.Compare(a, b)
	default:
		return nil, fmt.Errorf("filter: cannot order %s (column %d)", typeName(l), n.pos+1)
	}
	switch n.op {
	case "<":
		return c < 0, nil
	case "<=":
		return c <= 0, nil
	case ">":
		return c > 0, nil
	}
	return c >= 0, nil
}

func cmpOrdered(a, b float64) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func contains(coll, x any) (bool, error) {
	switch c := coll.(type) {
	case string:
		s, ok := x.(string)
		if !ok {
			return false, fmt.Errorf("filter: 'in <string>' needs a string on the left, not %s", typeName(x))
		}
		return strings.Contains(c, s), nil
	case []any:
		for _, e := range c {
			if equal(e, x) {
				return true, nil
			}
		}
		return false, nil
	case map[string]any:
		s, ok := x.(string)
		if !ok {
			return false, nil
		}
		_, in := c[s]
		return in, nil
	case nil:
		return false, nil
	}
	return false, fmt.Errorf("filter: 'in' needs a list, dict or string, not %s", typeName(coll))
}

func equal(a, b any) bool {
	switch a := a.(type) {
	case []any:
		b, ok := b.([]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for i := range a {
			if !equal(a[i], b[i]) {
				return false
			}
		}
		return true
	case map[string]any:
		b, ok := b.(map[string]any)
		if !ok || len(a) != len(b) {
			return false
		}
		for k, v := range a {
			if w, ok := b[k]; !ok || !equal(v, w) {
				return false
			}
		}
		return true
	}
	switch b.(type) {
	case []any, map[string]any:
		return false
	}
	return a == b
}

func truth(v any) bool {
	switch v := v.(type) {
	case nil:
		return false
	case bool:
		return v
	case float64:
		return v != 0
	case string:
		return v != ""
	case []any:
		return len(v) > 0
	case map[string]any:
		return len(v) > 0
	}
	return true
}

func typeName(v any) string {
	switch v.(type) {
	case nil:
		return "None"
	case bool:
		return "bool"
	case float64:
		return "number"
	case string:
		return "string"
	case []any:
		return "list"
	case map[string]any:
		return "dict"
	}
	return fmt.Sprintf("%T", v)
}
