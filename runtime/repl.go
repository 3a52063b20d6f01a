package runtime

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"os/signal"

	"github.com/chzyer/readline"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// REPL reads statements and expressions from in until EOF or exit(),
// printing each expression's value; a statement that opens a block (def,
// for, if) continues on "... " lines until an empty one. Lines go to
// historyFile (if set), so earlier sessions' input is recalled with the up
// arrow. Tab completes names, attributes and keyword arguments. Ctrl-C
// interrupts the running statement, not the session.
func (h *Host) REPL(ctx context.Context, in io.ReadCloser, out io.Writer, historyFile string) error {
	l, err := h.newLoader()
	if err != nil {
		return err
	}
	globals := starlark.StringDict{}
	predecl := h.predecl()
	rl, err := readline.NewEx(&readline.Config{
		Prompt: ">>> ", HistoryFile: historyFile, Stdin: in, Stdout: out, Stderr: out,
		InterruptPrompt: "^C", EOFPrompt: "",
		AutoComplete: &completer{h: h, globals: globals, predecl: predecl},
	})
	if err != nil {
		return fmt.Errorf("repl: %w", err)
	}
	defer rl.Close()
	h2 := *h
	h2.Out = out
	opts := *FileOptions
	opts.LoadBindsGlobally = true
	for {
		itemCtx, cancel := context.WithCancel(ctx)
		sigs := make(chan os.Signal, 1)
		signal.Notify(sigs, os.Interrupt)
		go func() {
			select {
			case <-sigs:
				cancel()
			case <-itemCtx.Done():
			}
		}()
		t := h2.thread(itemCtx, "repl", l)
		stopOnCancel(itemCtx, t)
		err := rep(&opts, rl, t, globals, predecl, out)
		signal.Stop(sigs)
		cancel()
		if errors.Is(err, readline.ErrInterrupt) {
			continue
		}
		if err != nil {
			if errors.Is(err, io.EOF) || errors.Is(err, errExit) {
				return nil
			}
			return err
		}
	}
}

var errExit = errors.New("exit")

func rep(opts *syntax.FileOptions, rl *readline.Instance, t *starlark.Thread, globals, predecl starlark.StringDict, out io.Writer) error {
	rl.SetPrompt(">>> ")
	// The parser reports a reader's error as a syntax error, so EOF and
	// exit() are remembered here.
	eof, exit := false, false
	read := func() ([]byte, error) {
		line, err := rl.Readline()
		rl.SetPrompt("... ")
		if err != nil {
			if err == io.EOF {
				eof = true
			}
			return nil, err
		}
		if line == "exit()" || line == "quit()" {
			exit = true
			return nil, errExit
		}
		return []byte(line + "\n"), nil
	}
	f, err := opts.ParseCompoundStmt("<stdin>", read)
	if err != nil {
		if eof {
			return io.EOF
		}
		if exit {
			return errExit
		}
		if errors.Is(err, errExit) || errors.Is(err, readline.ErrInterrupt) {
			return err
		}
		fmt.Fprintln(out, FormatError(err))
		return nil
	}
	// Builtin modules resolve as predeclared names; user names as globals.
	env := starlark.StringDict{}
	for k, v := range predecl {
		env[k] = v
	}
	if len(f.Stmts) == 1 {
		if es, ok := f.Stmts[0].(*syntax.ExprStmt); ok {
			for k, v := range globals {
				env[k] = v
			}
			v, err := starlark.EvalExprOptions(opts, t, es.X, env)
			if err != nil {
				fmt.Fprintln(out, FormatError(err))
				return nil
			}
			globals["_"] = v
			if v != starlark.None {
				fmt.Fprintln(out, v)
			}
			return nil
		}
	}
	if err := execChunk(f, t, globals, predecl); err != nil {
		fmt.Fprintln(out, FormatError(err))
	}
	return nil
}

// execChunk runs statements with the REPL's globals, predeclaring the
// builtin modules.
func execChunk(f *syntax.File, t *starlark.Thread, globals, predecl starlark.StringDict) error {
	merged := starlark.StringDict{}
	for k, v := range predecl {
		merged[k] = v
	}
	for k, v := range globals {
		merged[k] = v
	}
	if err := starlark.ExecREPLChunk(f, t, merged); err != nil {
		return err
	}
	for k, v := range merged {
		if _, isPre := predecl[k]; !isPre || v != predecl[k] {
			globals[k] = v
		}
	}
	return nil
}
