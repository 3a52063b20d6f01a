package main

import (
	"go/ast"
	"go/parser"
	"go/token"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"unicode"
)

// The repository root, seen from this package's directory (go test runs
// a package's tests in its own directory).
const docsRoot = "../.."

const archDoc = "docs/ARCHITECTURE.md"

// pathRoots are the top-level directories whose paths the architecture
// document names; a code span starting with one of them is a path.
var pathRoots = []string{"engine", "cmd", "kv", "builtins", "runtime", "stdlib", "testdata", "scripts", "docs"}

// codeSpans returns the text of every fenced code block and inline code
// span of a Markdown document, with the line each starts on.
func codeSpans(doc string) []span {
	var out []span
	lines := strings.Split(doc, "\n")
	prose := make([]string, len(lines)) // the document with fenced blocks blanked
	fenced := false
	for i, line := range lines {
		switch {
		case strings.HasPrefix(strings.TrimSpace(line), "```"):
			fenced = !fenced
		case fenced:
			out = append(out, span{line: i + 1, text: line})
		default:
			prose[i] = line
		}
	}
	// Inline spans may wrap onto the next line.
	text := strings.Join(prose, "\n")
	for _, m := range regexp.MustCompile("`([^`]+)`").FindAllStringSubmatchIndex(text, -1) {
		out = append(out, span{line: strings.Count(text[:m[0]], "\n") + 1, text: text[m[2]:m[3]]})
	}
	return out
}

type span struct {
	line int
	text string
}

// words splits code into candidate names: paths and dotted identifiers.
func words(code string) []string {
	return strings.FieldsFunc(code, func(r rune) bool {
		return unicode.IsSpace(r) || strings.ContainsRune(",;()[]{}\"'=|<>:→─►▼▲│├└", r)
	})
}

// pathOf returns the repository path a word names, or "" if it names none:
// "./engine/runs" and "engine/runs/" give "engine/runs", "./engine/..."
// gives "engine", a bare root such as "kv" gives itself.
func pathOf(w string) string {
	w = strings.TrimPrefix(w, "./")
	w = strings.TrimSuffix(w, "/...")
	w = strings.TrimRight(w, "/.")
	for _, r := range pathRoots {
		if w == r || strings.HasPrefix(w, r+"/") {
			return w
		}
	}
	return ""
}

// goPackages maps the name of every library package in the repository
// (directories holding non-test .go files, outside testdata, not main) to
// its directory relative to the root.
func goPackages(t *testing.T) map[string][]string {
	t.Helper()
	pkgs := map[string][]string{}
	err := filepath.WalkDir(docsRoot, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() {
			switch d.Name() {
			case ".git", "testdata", "node_modules":
				return filepath.SkipDir
			}
			return nil
		}
		if !strings.HasSuffix(p, ".go") || strings.HasSuffix(p, "_test.go") {
			return nil
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.PackageClauseOnly)
		if err != nil {
			return err
		}
		if f.Name.Name == "main" {
			return nil
		}
		rel, err := filepath.Rel(docsRoot, filepath.Dir(p))
		if err != nil {
			return err
		}
		rel = filepath.ToSlash(rel)
		dirs := pkgs[f.Name.Name]
		if len(dirs) == 0 || dirs[len(dirs)-1] != rel {
			pkgs[f.Name.Name] = append(dirs, rel)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return pkgs
}

// decls returns the top-level names of a package directory's non-test
// files, and for each type its methods and struct fields.
func decls(t *testing.T, dir string) (top map[string]bool, members map[string]map[string]bool) {
	t.Helper()
	top, members = map[string]bool{}, map[string]map[string]bool{}
	add := func(typ, name string) {
		if members[typ] == nil {
			members[typ] = map[string]bool{}
		}
		members[typ][name] = true
	}
	files, err := filepath.Glob(filepath.Join(docsRoot, dir, "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range files {
		if strings.HasSuffix(p, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.SkipObjectResolution)
		if err != nil {
			t.Fatalf("parse %s: %v", p, err)
		}
		for _, d := range f.Decls {
			switch d := d.(type) {
			case *ast.FuncDecl:
				if d.Recv == nil {
					top[d.Name.Name] = true
					continue
				}
				add(recvType(d.Recv.List[0].Type), d.Name.Name)
			case *ast.GenDecl:
				for _, s := range d.Specs {
					switch s := s.(type) {
					case *ast.TypeSpec:
						top[s.Name.Name] = true
						if st, ok := s.Type.(*ast.StructType); ok {
							for _, fl := range st.Fields.List {
								for _, n := range fl.Names {
									add(s.Name.Name, n.Name)
								}
							}
						}
						if it, ok := s.Type.(*ast.InterfaceType); ok {
							for _, m := range it.Methods.List {
								for _, n := range m.Names {
									add(s.Name.Name, n.Name)
								}
							}
						}
					case *ast.ValueSpec:
						for _, n := range s.Names {
							top[n.Name] = true
						}
					}
				}
			}
		}
	}
	return top, members
}

// recvType is the type name of a method receiver: T, *T, T[P] or *T[P].
func recvType(e ast.Expr) string {
	for {
		switch x := e.(type) {
		case *ast.StarExpr:
			e = x.X
		case *ast.IndexExpr:
			e = x.X
		case *ast.IndexListExpr:
			e = x.X
		case *ast.Ident:
			return x.Name
		default:
			return ""
		}
	}
}

// TestArchitectureDoc keeps docs/ARCHITECTURE.md true to the tree: every
// path, .go file and pkg.Name it writes in code must exist, every package
// under engine/ must be named, and every key family of kv/keys.go must
// appear.
func TestArchitectureDoc(t *testing.T) {
	b, err := os.ReadFile(filepath.Join(docsRoot, archDoc))
	if err != nil {
		t.Fatalf("read %s: %v", archDoc, err)
	}
	doc := string(b)
	pkgs := goPackages(t)
	type declSet struct {
		top     map[string]bool
		members map[string]map[string]bool
	}
	cache := map[string]declSet{}
	lookup := func(dir string) declSet {
		if d, ok := cache[dir]; ok {
			return d
		}
		top, members := decls(t, dir)
		d := declSet{top: top, members: members}
		cache[dir] = d
		return d
	}
	var goFiles []string // every .go file, for bare names such as "main.go"
	filepath.WalkDir(docsRoot, func(p string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() && strings.HasSuffix(p, ".go") {
			goFiles = append(goFiles, filepath.Base(p))
		}
		return nil
	})
	sort.Strings(goFiles)
	ident := regexp.MustCompile(`^\(?\*?([a-z][a-z0-9]*)\.([A-Z][A-Za-z0-9]*)\)?(?:\.([A-Z][A-Za-z0-9]*))?`)
	mentioned := map[string]bool{}
	for _, s := range codeSpans(doc) {
		for _, w := range words(s.text) {
			where := archDoc + ":" + strconv.Itoa(s.line)
			if p := pathOf(w); p != "" {
				mentioned[p] = true
				if strings.ContainsAny(p, "*?") {
					if m, _ := filepath.Glob(filepath.Join(docsRoot, p)); len(m) == 0 {
						t.Errorf("%s: %q matches no file", where, p)
					}
				} else if _, err := os.Stat(filepath.Join(docsRoot, p)); err != nil {
					t.Errorf("%s: %q does not exist", where, p)
				}
				continue
			}
			if strings.HasSuffix(w, ".go") && !strings.HasPrefix(w, ".") && !strings.Contains(w, "/") {
				if i := sort.SearchStrings(goFiles, w); i == len(goFiles) || goFiles[i] != w {
					t.Errorf("%s: no file %q in the repository", where, w)
				}
				continue
			}
			m := ident.FindStringSubmatch(w)
			if m == nil {
				continue
			}
			dirs, ours := pkgs[m[1]]
			if !ours {
				continue // another module's package (gorgonia.Grad), or not Go
			}
			found := false
			for _, dir := range dirs {
				d := lookup(dir)
				if !d.top[m[2]] {
					continue
				}
				if m[3] == "" || d.members[m[2]][m[3]] {
					found = true
				}
			}
			if !found {
				t.Errorf("%s: %s is not declared in package %s (%s)", where, strings.Trim(m[0], "()*"), m[1], strings.Join(dirs, ", "))
			}
		}
	}
	for _, dirs := range pkgs {
		for _, dir := range dirs {
			if strings.HasPrefix(dir, "engine/") && !mentioned[dir] {
				t.Errorf("%s does not name package %s; add a line for it under Packages", archDoc, dir)
			}
		}
	}
	keys, err := os.ReadFile(filepath.Join(docsRoot, "kv/keys.go"))
	if err != nil {
		t.Fatal(err)
	}
	// A family is the first column of the layout comment: it may hold a
	// single space ("<tensor name>"), and two or more end it.
	families := regexp.MustCompile(`(?m)^//\t([a-z]+/\S+(?: \S+)*)\s\s`).FindAllStringSubmatch(string(keys), -1)
	if len(families) < 5 {
		t.Fatalf("found only %d key families in kv/keys.go's layout comment; has its format changed?", len(families))
	}
	for _, f := range families {
		if !strings.Contains(doc, "`"+f[1]+"`") {
			t.Errorf("%s does not list the store key %s (kv/keys.go)", archDoc, f[1])
		}
	}
}

// TestArchitectureImportRules checks the import rule the architecture
// document states: nothing under engine/ or kv imports Starlark.
func TestArchitectureImportRules(t *testing.T) {
	for _, root := range []string{"engine", "kv"} {
		err := filepath.WalkDir(filepath.Join(docsRoot, root), func(p string, d fs.DirEntry, err error) error {
			if err != nil || d.IsDir() || !strings.HasSuffix(p, ".go") {
				return err
			}
			f, err := parser.ParseFile(token.NewFileSet(), p, nil, parser.ImportsOnly)
			if err != nil {
				return err
			}
			for _, im := range f.Imports {
				if path, _ := strconv.Unquote(im.Path.Value); strings.HasPrefix(path, "go.starlark.net") {
					rel, _ := filepath.Rel(docsRoot, p)
					t.Errorf("%s imports %s: engine and kv must not depend on Starlark (%s)", rel, path, archDoc)
				}
			}
			return nil
		})
		if err != nil {
			t.Fatal(err)
		}
	}
}
