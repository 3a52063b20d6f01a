package runtime

import (
	"fmt"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
)

// Docs explains the builtins a host is given: help() and REPL completion
// ask it first and fall back to what Starlark itself knows (a function's
// parameters and docstring, a value's attributes).
type Docs struct {
	// Help is the text of help(v), false for a value it does not know.
	Help func(v starlark.Value) (string, bool)
	// Keywords lists the parameter names of the builtin named name.
	Keywords func(name string) []string
}

// predecl is the host's predeclared names plus help.
func (h *Host) predecl() starlark.StringDict {
	out := make(starlark.StringDict, len(h.Predecl)+1)
	for k, v := range h.Predecl {
		out[k] = v
	}
	if _, ok := out["help"]; !ok {
		out["help"] = starlark.NewBuiltin("help", h.help)
	}
	return out
}

// help prints what x is: a module's members, a builtin's signature,
// parameters and doc, a Starlark function's signature and docstring, a
// value's attributes; help() lists the modules.
func (h *Host) help(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var x starlark.Value
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "x?", &x); err != nil {
		return nil, err
	}
	t.Print(t, strings.TrimRight(h.HelpText(x), "\n"))
	return starlark.None, nil
}

// HelpText is what help(x) prints (x nil: the overview).
func (h *Host) HelpText(x starlark.Value) string {
	if x == nil {
		names := make([]string, 0, len(h.Predecl))
		for k := range h.Predecl {
			names = append(names, k)
		}
		sort.Strings(names)
		return "Modules: " + strings.Join(names, ", ") + ".\n" +
			"help(x) explains a module, function or value, e.g. help(lens.train), help(collect), help(run).\n" +
			"In the REPL, Tab completes names, attributes and keyword arguments; dir(x) lists attributes.\n"
	}
	if h.Docs != nil && h.Docs.Help != nil {
		if s, ok := h.Docs.Help(x); ok {
			return s
		}
	}
	switch v := x.(type) {
	case *starlark.Function:
		return FuncSignature(v) + "\n\n" + indent(v.Doc()) + "\n"
	case *starlark.Builtin:
		return fmt.Sprintf("%s: a built-in function (see the Starlark spec)\n", v.Name())
	case *starlarkstruct.Module:
		return fmt.Sprintf("module %s: %s\n", v.Name, strings.Join(attrNames(v), ", "))
	}
	out := fmt.Sprintf("a %s value: %s\n", x.Type(), x.String())
	if names := attrNames(x); len(names) > 0 {
		out += "attributes: " + strings.Join(names, ", ") + "\n"
	}
	return out
}

func attrNames(v starlark.Value) []string {
	ha, ok := v.(starlark.HasAttrs)
	if !ok {
		return nil
	}
	names := append([]string(nil), ha.AttrNames()...)
	sort.Strings(names)
	return names
}

// FuncSignature is a Starlark function's def line: name(a, b=1, *args, **kw).
func FuncSignature(f *starlark.Function) string {
	var parts []string
	n := f.NumParams()
	for i := range n {
		name, _ := f.Param(i)
		switch {
		case f.HasKwargs() && i == n-1:
			parts = append(parts, "**"+name)
		case f.HasVarargs() && i == n-1-kw(f):
			parts = append(parts, "*"+name)
		default:
			if d := f.ParamDefault(i); d != nil {
				parts = append(parts, name+"="+d.String())
			} else {
				parts = append(parts, name)
			}
		}
	}
	return f.Name() + "(" + strings.Join(parts, ", ") + ")"
}

// kw is 1 when f has **kwargs (its last parameter), else 0.
func kw(f *starlark.Function) int {
	if f.HasKwargs() {
		return 1
	}
	return 0
}

func indent(s string) string {
	if s == "" {
		return "    (no docstring)"
	}
	lines := strings.Split(strings.TrimSpace(s), "\n")
	for i, l := range lines {
		lines[i] = "    " + strings.TrimSpace(l)
	}
	return strings.Join(lines, "\n")
}

// keywords lists the parameter names of a callable.
func (h *Host) keywords(v starlark.Value) []string {
	switch f := v.(type) {
	case *starlark.Function:
		var out []string
		for i := range f.NumParams() {
			if (f.HasKwargs() && i == f.NumParams()-1) || (f.HasVarargs() && i == f.NumParams()-1-kw(f)) {
				continue
			}
			name, _ := f.Param(i)
			out = append(out, name)
		}
		return out
	case *starlark.Builtin:
		if h.Docs != nil && h.Docs.Keywords != nil {
			return h.Docs.Keywords(f.Name())
		}
	}
	return nil
}
