package builtins

import (
	"fmt"
	"slices"
	"sort"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"
	"go.starlark.net/syntax"
)

// Param declares one parameter of a builtin. The argument parsing, help(),
// REPL completion and docs/API.md all read it, so they cannot disagree.
type Param struct {
	Name string
	Type string // as shown: "int", "float", "string", "bool", "list of string", "run", ...
	// Default is the default as Starlark source ("" for a required
	// parameter). unpack converts it exactly as it converts an argument.
	Default string
	Doc     string
	// Shown marks a default the engine applies (a zero or absent argument
	// takes it): documented, but not passed by the builtin.
	Shown bool
}

// Func declares a builtin: a module member ("lens.train") or a method of a
// value ("run.metrics").
type Func struct {
	Name    string
	Params  []Param
	Varargs string // "*runs": positional arguments after Params, described in Doc
	Kwargs  string // "**config": keyword arguments beyond Params, described in Doc
	KwOnly  bool   // positional arguments are refused
	Doc     string
	Returns string
	Impl    builtinFn

	defaults []starlark.Value // Params' defaults, evaluated once (nil: none or None)
}

// Attr declares an attribute of a value type; a method's Func is declared
// as "TYPE.NAME".
type Attr struct{ Name, Type, Doc string }

// TypeDecl declares a value type scripts receive (run, model, ...).
type TypeDecl struct {
	Name  string
	Doc   string
	Attrs []Attr
}

// ModuleDecl declares a module: its functions and constants.
type ModuleDecl struct {
	Name   string
	Doc    string
	Funcs  []*Func
	Consts []Attr
}

var (
	funcs   = map[string]*Func{}
	types   = map[string]*TypeDecl{}
	modules = map[string]*ModuleDecl{}
)

// declare registers f and evaluates its defaults; a default that is not a
// Starlark literal is a programming error.
func declare(f *Func) *Func {
	if _, dup := funcs[f.Name]; dup {
		panic("builtins: " + f.Name + " declared twice")
	}
	f.defaults = make([]starlark.Value, len(f.Params))
	for i, p := range f.Params {
		if p.Default == "" || p.Default == "None" || p.Shown {
			continue
		}
		v, err := starlark.EvalOptions(&syntax.FileOptions{}, &starlark.Thread{Name: "default"}, f.Name, p.Default, nil)
		if err != nil {
			panic(fmt.Sprintf("builtins: %s: default of %s: %v", f.Name, p.Name, err))
		}
		v.Freeze()
		f.defaults[i] = v
	}
	funcs[f.Name] = f
	return f
}

// declareType registers a value type.
func declareType(t *TypeDecl) *TypeDecl {
	types[t.Name] = t
	return t
}

// newModule declares a module and builds it from its functions.
func newModule(d *ModuleDecl) *starlarkstruct.Module {
	modules[d.Name] = d
	m := &starlarkstruct.Module{Name: d.Name, Members: starlark.StringDict{}}
	for _, f := range d.Funcs {
		declare(f)
		m.Members[strings.TrimPrefix(f.Name, d.Name+".")] = starlark.NewBuiltin(f.Name, f.Impl)
	}
	return m
}

// method returns the builtin for a declared method bound by impl.
func method(name string, impl builtinFn) *starlark.Builtin {
	if _, ok := funcs[name]; !ok {
		panic("builtins: method " + name + " is not declared")
	}
	return starlark.NewBuiltin(name, impl)
}

// unpack parses arguments into ptrs, one per declared parameter in order,
// as starlark.UnpackArgs does; omitted parameters take their declared
// defaults (None defaults leave a Value as None and other types at zero;
// an explicit None means omitted there).
func (f *Func) unpack(args starlark.Tuple, kwargs []starlark.Tuple, ptrs ...any) error {
	if len(ptrs) != len(f.Params) {
		panic(fmt.Sprintf("builtins: %s: %d variables for %d parameters", f.Name, len(ptrs), len(f.Params)))
	}
	if f.KwOnly && len(args) > 0 {
		return f.errorf("takes keyword arguments only")
	}
	pairs := make([]any, 0, 2*len(ptrs))
	for i, p := range f.Params {
		name := p.Name
		switch {
		case p.Default == "None":
			name += "??"
			if v, ok := ptrs[i].(*starlark.Value); ok {
				*v = starlark.None
			}
		case p.Default != "":
			name += "?"
			if d := f.defaults[i]; d != nil {
				if err := starlark.UnpackArgs(f.Name, starlark.Tuple{d}, nil, p.Name, ptrs[i]); err != nil {
					panic(fmt.Sprintf("builtins: %s: default of %s: %v", f.Name, p.Name, err))
				}
			}
		}
		pairs = append(pairs, name, ptrs[i])
	}
	return starlark.UnpackArgs(f.Name, args, kwargs, pairs...)
}

// given checks the names of the arguments against
// the declaration and returns those given, for builtins whose engine
// applies the defaults itself. Positional arguments fill the parameters
// in order. Types are left to the conversion that reads each value.
func (f *Func) given(args starlark.Tuple, kwargs []starlark.Tuple) (map[string]starlark.Value, error) {
	out, err := f.collect(args, kwargs)
	if err != nil {
		return nil, err
	}
	if err := f.required(out); err != nil {
		return nil, err
	}
	return out, nil
}

// collect is given without the check for missing arguments, for a call
// whose required arguments depend on another (lens.train(resume=run)).
func (f *Func) collect(args starlark.Tuple, kwargs []starlark.Tuple) (map[string]starlark.Value, error) {
	if f.KwOnly && len(args) > 0 {
		return nil, f.errorf("takes keyword arguments only (%s=, ...)", f.Params[0].Name)
	}
	if len(args) > len(f.Params) {
		return nil, f.errorf("got %d arguments, want at most %d", len(args), len(f.Params))
	}
	out := map[string]starlark.Value{}
	for i, a := range args {
		out[f.Params[i].Name] = a
	}
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		p := f.param(k)
		if p == nil && f.Kwargs == "" {
			return nil, f.errorf("unexpected keyword argument %q", k)
		}
		out[k] = kv[1] // a later value wins, as **kwargs merging in scripts expects
	}
	return out, nil
}

// required checks that given names every parameter without a default.
func (f *Func) required(given map[string]starlark.Value) error {
	for _, p := range f.Params {
		if _, ok := given[p.Name]; !ok && p.Default == "" {
			return f.errorf("missing argument for %s", p.Name)
		}
	}
	return nil
}

func (f *Func) param(name string) *Param {
	for i := range f.Params {
		if f.Params[i].Name == name {
			return &f.Params[i]
		}
	}
	return nil
}

func (f *Func) errorf(format string, a ...any) error {
	return fmt.Errorf("%s: "+format, append([]any{f.Name}, a...)...)
}

// Signature is the call as help() shows it: name(p1, p2=default, ...).
func (f *Func) Signature() string {
	parts := make([]string, 0, len(f.Params)+2)
	for _, p := range f.Params {
		if p.Default == "" {
			parts = append(parts, p.Name)
		} else {
			parts = append(parts, p.Name+"="+p.Default)
		}
	}
	if f.Varargs != "" {
		parts = append(parts, f.Varargs)
	}
	if f.Kwargs != "" {
		parts = append(parts, f.Kwargs)
	}
	sig := f.Name + "(" + strings.Join(parts, ", ") + ")"
	if f.Returns != "" {
		sig += " -> " + f.Returns
	}
	return sig
}

// help is the text help() prints for a function.
func (f *Func) help() string {
	var b strings.Builder
	b.WriteString(f.Signature() + "\n\n" + wrap(f.Doc, "    ") + "\n")
	if len(f.Params) > 0 {
		b.WriteString("\n")
		w := 0
		for _, p := range f.Params {
			w = max(w, len(p.Name))
		}
		for _, p := range f.Params {
			fmt.Fprintf(&b, "    %-*s  %s: %s\n", w, p.Name, p.Type, p.Doc)
		}
	}
	return b.String()
}

// KeywordNames lists the parameter names of the builtin called name
// ("lens.train"), for completion; nil when it is not declared.
func KeywordNames(name string) []string {
	f, ok := funcs[name]
	if !ok {
		return nil
	}
	out := make([]string, len(f.Params))
	for i, p := range f.Params {
		out[i] = p.Name
	}
	return out
}

// Help is the text help(v) prints for a lens module, builtin or value,
// and false for anything else.
func Help(v starlark.Value) (string, bool) {
	switch v := v.(type) {
	case *starlark.Builtin:
		if f, ok := funcs[v.Name()]; ok {
			return f.help(), true
		}
	case *starlarkstruct.Module:
		if d, ok := modules[v.Name]; ok {
			return d.help(), true
		}
	case starlark.Value:
		if t, ok := types[v.Type()]; ok {
			return t.help(), true
		}
	}
	return "", false
}

// HelpTopic is the help text for a dotted name ("lens.train", "collect",
// "run", "run.metrics"), as `lens help NAME` prints it.
func HelpTopic(name string) (string, bool) {
	if f, ok := funcs[name]; ok {
		return f.help(), true
	}
	if d, ok := modules[name]; ok {
		return d.help(), true
	}
	if t, ok := types[name]; ok {
		return t.help(), true
	}
	return "", false
}

func (d *ModuleDecl) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "module %s\n\n%s\n\n", d.Name, wrap(d.Doc, "    "))
	for _, f := range d.Funcs {
		fmt.Fprintf(&b, "  %s\n      %s\n", f.Signature(), firstSentence(f.Doc))
	}
	for _, c := range d.Consts {
		fmt.Fprintf(&b, "  %s.%s: %s\n      %s\n", d.Name, c.Name, c.Type, c.Doc)
	}
	return b.String()
}

func (t *TypeDecl) help() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s\n\n%s\n\n", t.Name, wrap(t.Doc, "    "))
	for _, a := range t.Attrs {
		if f, ok := funcs[t.Name+"."+a.Name]; ok {
			fmt.Fprintf(&b, "  .%s\n      %s\n", strings.TrimPrefix(f.Signature(), t.Name+"."), firstSentence(f.Doc))
			continue
		}
		fmt.Fprintf(&b, "  .%s: %s\n      %s\n", a.Name, a.Type, a.Doc)
	}
	return b.String()
}

func firstSentence(s string) string {
	if i := strings.Index(s, ". "); i >= 0 {
		return s[:i+1]
	}
	return s
}

// wrap fills text to 80 columns after indent.
func wrap(text, indent string) string {
	var lines []string
	line := indent
	for _, w := range strings.Fields(text) {
		if len(line) > len(indent) && len(line)+1+len(w) > 80 {
			lines = append(lines, line)
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += w
	}
	return strings.Join(append(lines, line), "\n")
}

// Markdown is docs/API.md: every module, function and value type.
func Markdown() string {
	var b strings.Builder
	b.WriteString("# Script API reference\n\n<!-- Generated by `lens help --markdown` from the declarations in builtins/; do not edit. -->\n\n")
	b.WriteString("Every module is predeclared in scripts and the REPL; `help(x)` in either, or `lens help NAME` on the command line, prints the same text. A parameter without a default is required.\n\n")
	names := make([]string, 0, len(modules))
	for n := range modules {
		names = append(names, n)
	}
	sort.Strings(names)
	b.WriteString("Modules: " + strings.Join(mapStrings(names, func(n string) string { return "[`" + n + "`](#" + n + ")" }), ", ") + ". Values: ")
	tnames := make([]string, 0, len(types))
	for n := range types {
		tnames = append(tnames, n)
	}
	sort.Strings(tnames)
	b.WriteString(strings.Join(mapStrings(tnames, func(n string) string { return "[`" + n + "`](#" + anchor(n) + ")" }), ", ") + ".\n\n")
	for _, n := range names {
		d := modules[n]
		fmt.Fprintf(&b, "## %s\n\n%s\n\n", n, d.Doc)
		for _, f := range d.Funcs {
			f.markdown(&b)
		}
		for _, c := range d.Consts {
			fmt.Fprintf(&b, "### %s.%s\n\n`%s`: %s\n\n", n, c.Name, c.Type, c.Doc)
		}
	}
	b.WriteString("## Values\n\n")
	for _, n := range tnames {
		t := types[n]
		fmt.Fprintf(&b, "### %s\n\n%s\n\n| attribute | type | |\n|---|---|---|\n", t.Name, t.Doc)
		var methods []*Func
		for _, a := range t.Attrs {
			if f, ok := funcs[t.Name+"."+a.Name]; ok {
				fmt.Fprintf(&b, "| `%s` | method | %s |\n", a.Name, mdCell(firstSentence(f.Doc)))
				methods = append(methods, f)
				continue
			}
			fmt.Fprintf(&b, "| `%s` | %s | %s |\n", a.Name, mdCell(a.Type), mdCell(a.Doc))
		}
		b.WriteString("\n")
		for _, f := range methods {
			f.markdown(&b)
		}
	}
	return b.String()
}

func (f *Func) markdown(b *strings.Builder) {
	fmt.Fprintf(b, "#### %s\n\n```python\n%s\n```\n\n%s\n\n", f.Name, f.Signature(), f.Doc)
	if len(f.Params) > 0 {
		b.WriteString("| parameter | type | default | |\n|---|---|---|---|\n")
		for _, p := range f.Params {
			def := "required"
			if p.Default != "" {
				def = "`" + p.Default + "`"
			}
			fmt.Fprintf(b, "| `%s` | %s | %s | %s |\n", p.Name, mdCell(p.Type), mdCell(def), mdCell(p.Doc))
		}
		b.WriteString("\n")
	}
}

func mdCell(s string) string { return strings.ReplaceAll(s, "|", `\|`) }

func anchor(s string) string { return strings.ReplaceAll(strings.ToLower(s), ".", "") }

func mapStrings(in []string, f func(string) string) []string {
	out := make([]string, len(in))
	for i, s := range in {
		out[i] = f(s)
	}
	return out
}

// Undocumented lists declarations without a doc, a parameter without a
// description or type, and module members or value attributes that have
// no declaration; a test keeps it empty.
func Undocumented(predecl starlark.StringDict) []string {
	var out []string
	for name, f := range funcs {
		if f.Doc == "" {
			out = append(out, name+": no doc")
		}
		for _, p := range f.Params {
			if p.Doc == "" || p.Type == "" {
				out = append(out, name+": parameter "+p.Name+" has no description or type")
			}
		}
	}
	for name, t := range types {
		if t.Doc == "" {
			out = append(out, "type "+name+": no doc")
		}
		for _, a := range t.Attrs {
			if _, ok := funcs[name+"."+a.Name]; !ok && (a.Doc == "" || a.Type == "") {
				out = append(out, "type "+name+": attribute "+a.Name+" has no doc or type")
			}
		}
	}
	for mname, v := range predecl {
		m, ok := v.(*starlarkstruct.Module)
		if !ok {
			continue
		}
		d, ok := modules[mname]
		if !ok || d.Doc == "" {
			out = append(out, "module "+mname+": not declared")
			continue
		}
		for member := range m.Members {
			if _, ok := funcs[mname+"."+member]; ok {
				continue
			}
			if !slices.ContainsFunc(d.Consts, func(a Attr) bool { return a.Name == member }) {
				out = append(out, mname+"."+member+": not declared")
			}
		}
	}
	sort.Strings(out)
	return out
}
