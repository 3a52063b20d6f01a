// Package runtime hosts Starlark experiment scripts: it runs a file in a
// thread whose load() reads the embedded stdlib and workspace files, wires
// cancellation (Ctrl-C cancels the thread and, through the "context" thread
// local, whatever builtin is running), and offers an interactive REPL. It
// knows nothing of the builtins it is given.
package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// ContextKey is the thread-local name under which builtins find the
// context.Context that cancels them.
const ContextKey = "context"

// Host runs scripts with a fixed set of predeclared modules.
type Host struct {
	Root    string              // workspace: loads never leave it
	Predecl starlark.StringDict // modules the builtins provide
	Out     io.Writer           // print() goes here
	// Setup, if set, prepares every thread (script, loaded module, REPL),
	// e.g. to attach the builtins' environment as a thread local.
	Setup func(*starlark.Thread)
	// Docs, if set, explains Predecl's builtins to help() and completion;
	// help is predeclared either way.
	Docs *Docs
}

// FileOptions are the Starlark dialect lens scripts use.
var FileOptions = &syntax.FileOptions{Set: true, While: true, TopLevelControl: true, GlobalReassign: true, Recursion: true}

func (h *Host) newLoader() (*loader, error) {
	root, err := filepath.Abs(h.Root)
	if err != nil {
		return nil, err
	}
	if r, err := filepath.EvalSymlinks(root); err == nil {
		root = r
	}
	return &loader{root: root, predecl: h.predecl(), opts: FileOptions, cache: map[string]*entry{}}, nil
}

func (h *Host) thread(ctx context.Context, name string, l *loader) *starlark.Thread {
	out := h.Out
	if out == nil {
		out = os.Stdout
	}
	setup := func(t *starlark.Thread) {
		t.Print = func(_ *starlark.Thread, msg string) { fmt.Fprintln(out, msg) }
		t.SetLocal(ContextKey, ctx)
		if h.Setup != nil {
			h.Setup(t)
		}
	}
	l.setup = func(t *starlark.Thread) {
		setup(t)
		stopOnCancel(ctx, t)
	}
	t := &starlark.Thread{Name: name, Load: l.load}
	setup(t)
	return t
}

// stopOnCancel cancels the thread when ctx is done.
func stopOnCancel(ctx context.Context, t *starlark.Thread) {
	go func() {
		<-ctx.Done()
		t.Cancel("interrupted")
	}()
}

// Exec runs the script at path and returns its globals. Cancelling ctx
// interrupts it.
func (h *Host) Exec(ctx context.Context, path string) (starlark.StringDict, error) {
	l, err := h.newLoader()
	if err != nil {
		return nil, err
	}
	abs, err := filepath.Abs(path)
	if err != nil {
		return nil, err
	}
	if err := l.inside(abs); err != nil {
		return nil, fmt.Errorf("run %s: %w", path, err)
	}
	src, err := os.ReadFile(abs)
	if err != nil {
		return nil, fmt.Errorf("run: %w", err)
	}
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	t := h.thread(ctx, "main", l)
	stopOnCancel(ctx, t)
	l.cache[abs] = nil // a script that loads itself is a cycle
	l.inFlight = []string{abs}
	return starlark.ExecFileOptions(FileOptions, t, abs, src, h.predecl())
}

// FormatError renders an error from Exec for a person: a Starlark
// backtrace with file:line:col for evaluation errors, the position for
// syntax errors, the message otherwise.
func FormatError(err error) string {
	var ee *starlark.EvalError
	if errors.As(err, &ee) {
		return ee.Backtrace()
	}
	var se syntax.Error
	if errors.As(err, &se) {
		return fmt.Sprintf("%s: syntax error: %s", se.Pos, se.Msg)
	}
	return err.Error()
}
