package runtime

import (
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/stdlib"
)

// loader resolves and caches load() targets: "@stdlib//name.star" from the
// embedded library, other names relative to the loading file and never
// outside the workspace. Each module executes once; a load cycle is an
// error naming the chain.
type loader struct {
	root     string // workspace, absolute and clean
	predecl  starlark.StringDict
	opts     *syntax.FileOptions
	cache    map[string]*entry
	setup    func(*starlark.Thread)
	inFlight []string
}

type entry struct {
	globals starlark.StringDict
	err     error
}

const stdlibPrefix = "@stdlib//"

// resolve turns a load name into a canonical key and reads its source.
func (l *loader) resolve(from, module string) (key string, src []byte, err error) {
	if name, ok := strings.CutPrefix(module, stdlibPrefix); ok {
		if !fs.ValidPath(name) {
			return "", nil, fmt.Errorf("load %q: invalid stdlib path", module)
		}
		b, err := fs.ReadFile(stdlib.FS, name)
		if err != nil {
			return "", nil, fmt.Errorf("load %q: no such file in the stdlib", module)
		}
		return module, b, nil
	}
	if strings.HasPrefix(module, "@") {
		return "", nil, fmt.Errorf("load %q: unknown repository (only @stdlib// is built in)", module)
	}
	base := l.root
	if from != "" && !strings.HasPrefix(from, stdlibPrefix) {
		base = filepath.Dir(from)
	}
	path := module
	if !filepath.IsAbs(path) {
		path = filepath.Join(base, module)
	}
	path, err = filepath.Abs(path)
	if err != nil {
		return "", nil, err
	}
	if err := l.inside(path); err != nil {
		return "", nil, fmt.Errorf("load %q: %w", module, err)
	}
	b, err := os.ReadFile(path)
	if err != nil {
		return "", nil, fmt.Errorf("load %q: %w", module, err)
	}
	return path, b, nil
}

// inside checks that path, with symlinks resolved, lies in the workspace.
func (l *loader) inside(path string) error {
	real, err := filepath.EvalSymlinks(path)
	if err != nil {
		real = path
	}
	rel, err := filepath.Rel(l.root, real)
	if err != nil || rel == ".." || strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
		return fmt.Errorf("%s is outside the workspace %s", path, l.root)
	}
	return nil
}

// load is the thread's Load function.
func (l *loader) load(thread *starlark.Thread, module string) (starlark.StringDict, error) {
	from := ""
	if c := thread.CallFrame(0); c.Pos.Filename() != "" {
		from = c.Pos.Filename()
	}
	key, src, err := l.resolve(from, module)
	if err != nil {
		return nil, err
	}
	if e, ok := l.cache[key]; ok {
		if e == nil {
			chain := append(append([]string{}, l.inFlight...), key)
			return nil, fmt.Errorf("load cycle: %s", strings.Join(chain, " -> "))
		}
		return e.globals, e.err
	}
	l.cache[key] = nil // in progress
	l.inFlight = append(l.inFlight, key)
	child := &starlark.Thread{Name: "load " + key, Load: thread.Load, Print: thread.Print}
	if l.setup != nil {
		l.setup(child)
	}
	globals, err := starlark.ExecFileOptions(l.opts, child, key, src, l.predecl)
	l.inFlight = l.inFlight[:len(l.inFlight)-1]
	l.cache[key] = &entry{globals, err}
	return globals, err
}
