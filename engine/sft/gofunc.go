package sft

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/printer"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"lens/engine/data"
)

// GoFuncTasks are the example datasets built from the exported functions
// of Go's standard library (GOROOT/src), so that an instruction-tuning
// experiment needs no download. Each names what the completion is:
//
//	type:      "func Abs(x float64) float64\ntype:" → " func(float64) float64"
//	signature: "// Abs returns the absolute value of x.\n" → "func Abs(x float64) float64"
//	name:      "// Abs returns the absolute value of x.\nname:" → " Abs"
var GoFuncTasks = []string{"type", "signature", "name"}

// GoFunc is one exported function of the standard library.
type GoFunc struct {
	Pkg, Name string
	Doc       string // the doc comment's first sentence
	Signature string // "func Abs(x float64) float64"
	Type      string // "func(float64) float64": the signature without names
}

// maxGoFuncBytes caps a signature and maxGoDocBytes a doc sentence, so an
// example of any task fits the tiny model's 128 byte positions.
const (
	maxGoFuncBytes = 56
	maxGoDocBytes  = 80
)

// GoFuncs lists the exported top-level functions (no methods) of the
// packages under root (GOROOT/src), skipping tests, internal, vendor,
// testdata and cmd, that have a doc comment whose first sentence is at
// most 80 bytes and a signature of at most 56, in path order.
func GoFuncs(root string) ([]GoFunc, error) {
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case "testdata", "vendor", "internal", "cmd":
				return filepath.SkipDir
			}
			return nil
		}
		if strings.HasSuffix(p, ".go") && !strings.HasSuffix(p, "_test.go") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("go functions under %s: %w", root, err)
	}
	sort.Strings(paths)
	var out []GoFunc
	seen := map[string]bool{}
	for _, p := range paths {
		src, err := os.ReadFile(p)
		if err != nil {
			return nil, err
		}
		fset := token.NewFileSet()
		f, err := parser.ParseFile(fset, p, src, parser.ParseComments|parser.SkipObjectResolution)
		if err != nil {
			continue // build-tagged files for other toolchains can fail; they add nothing essential
		}
		for _, decl := range f.Decls {
			fd, ok := decl.(*ast.FuncDecl)
			if !ok || fd.Recv != nil || !fd.Name.IsExported() || fd.Doc == nil || fd.Type.TypeParams != nil {
				continue
			}
			g := GoFunc{Pkg: f.Name.Name, Name: fd.Name.Name, Doc: firstSentence(fd.Doc.Text())}
			key := g.Pkg + "." + g.Name
			if seen[key] || !strings.HasPrefix(g.Doc, g.Name+" ") {
				continue
			}
			g.Signature = "func " + g.Name + strings.TrimPrefix(node(fset, fd.Type), "func")
			g.Type = "func" + strings.TrimPrefix(node(fset, unnamed(fd.Type)), "func")
			if len(g.Signature) > maxGoFuncBytes || len(g.Doc) > maxGoDocBytes || strings.Contains(g.Signature, "\n") {
				continue
			}
			seen[key] = true
			out = append(out, g)
		}
	}
	if len(out) == 0 {
		return nil, fmt.Errorf("go functions under %s: none found", root)
	}
	return out, nil
}

// Example is g as an example of task.
func (g GoFunc) Example(task string) (Example, error) {
	where := g.Pkg + "." + g.Name
	switch task {
	case "type":
		return Example{Prompt: g.Signature + "\ntype:", Completion: " " + g.Type, Where: where}, nil
	case "signature":
		return Example{Prompt: "// " + g.Doc + "\n", Completion: g.Signature, Where: where}, nil
	case "name":
		return Example{Prompt: "// " + g.Doc + "\nname:", Completion: " " + g.Name, Where: where}, nil
	}
	return Example{}, fmt.Errorf("go function task %q: want one of %s", task, strings.Join(GoFuncTasks, ", "))
}

// builtinDataset builds the named built-in dataset ("gofunc/<task>").
func builtinDataset(name string) (Dataset, error) {
	task, ok := strings.CutPrefix(name, "gofunc/")
	if !ok {
		return Dataset{}, fmt.Errorf("examples: unknown built-in dataset %q (want gofunc/<task>, task one of %s)", name, strings.Join(GoFuncTasks, ", "))
	}
	fns, err := GoFuncs(filepath.Join(data.GOROOT(), "src"))
	if err != nil {
		return Dataset{}, fmt.Errorf("examples %s: %w", name, err)
	}
	d := Dataset{Name: strings.ReplaceAll(name, "/", "-"), Shape: ShapeCompletion}
	for _, g := range fns {
		ex, err := g.Example(task)
		if err != nil {
			return Dataset{}, fmt.Errorf("examples %s: %w", name, err)
		}
		d.Examples = append(d.Examples, ex)
	}
	return d, nil
}

func firstSentence(doc string) string {
	doc = strings.Join(strings.Fields(doc), " ")
	if i := strings.Index(doc, ". "); i >= 0 {
		doc = doc[:i+1]
	}
	return doc
}

func node(fset *token.FileSet, n ast.Node) string {
	var b bytes.Buffer
	if err := printer.Fprint(&b, fset, n); err != nil {
		return ""
	}
	return b.String()
}

// unnamed is ft with its parameter and result names dropped: a field
// "a, b int" becomes two fields "int, int".
func unnamed(ft *ast.FuncType) *ast.FuncType {
	strip := func(fl *ast.FieldList) *ast.FieldList {
		if fl == nil {
			return nil
		}
		out := &ast.FieldList{}
		for _, f := range fl.List {
			for range max(1, len(f.Names)) {
				out.List = append(out.List, &ast.Field{Type: f.Type})
			}
		}
		return out
	}
	return &ast.FuncType{Params: strip(ft.Params), Results: strip(ft.Results)}
}
