// Package builtins adapts the engine to Starlark: modules lens, model,
// lora, data and report, whose functions convert Starlark arguments to
// engine types, call the engine, and wrap the results as Starlark values.
// No math happens here.
package builtins

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"path/filepath"
	"strings"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/runs"
	"lens/engine/secret"
	"lens/kv"
)

// Env is what builtins need from their host, attached to every thread.
type Env struct {
	Store *kv.Store
	// OpenStore, when Store is nil, opens the store the first time a
	// builtin needs it, so a script that never touches the store never
	// opens it (lens run's startup does not grow with the store). lens run
	// opens it with kv.Options.WriteOnDemand: read-only until the first
	// write (lens.train), so a script that only reads writes nothing.
	OpenStore  func() (*kv.Store, error)
	storeMu    sync.Mutex
	storeErr   error
	Args       map[string]string
	Script     string // path of the main script, recorded with runs
	ScriptHash string
	Out        io.Writer
	Progress   func(runs.Progress)
	Logger     *slog.Logger
	// Workspace, when set, confines the files scripts read (data.text,
	// model.from_dir) to it and to the AllowRead folders.
	Workspace string
	AllowRead []string
	// Device is the default for lens.train(device=...) (lens run --device).
	Device string
	// SweepBackend is the default backend of sweeps (lens run --backend):
	// "inline" (also when empty), "local" or "slurm".
	SweepBackend string
	// Integrations' credentials and servers, read from the environment by
	// cmd/lens (HF_TOKEN, HF_ENDPOINT, WANDB_API_KEY, WANDB_BASE_URL), so
	// that scripts never hold them.
	HFToken      secret.Token
	HFEndpoint   string
	WandbKey     secret.Token
	WandbBaseURL string
	noted        bool // the device fallback note was printed

	analyzers map[string]*scriptAnalyzer // registered by lens.analyzer
}

const envKey = "lens.env"

// Attach makes env available to builtins running on t.
func (e *Env) Attach(t *starlark.Thread) { t.SetLocal(envKey, e) }

func envOf(t *starlark.Thread) (*Env, error) {
	e, _ := t.Local(envKey).(*Env)
	if e == nil {
		return nil, fmt.Errorf("lens builtins used outside a lens thread")
	}
	return e, nil
}

func (e *Env) store() (*kv.Store, error) {
	e.storeMu.Lock()
	defer e.storeMu.Unlock()
	if e.Store == nil && e.OpenStore != nil && e.storeErr == nil {
		e.Store, e.storeErr = e.OpenStore()
	}
	if e.storeErr != nil {
		return nil, e.storeErr
	}
	if e.Store == nil {
		return nil, fmt.Errorf("no store is open")
	}
	return e.Store, nil
}

// storeOf returns the thread's environment and its open store.
func storeOf(t *starlark.Thread) (*Env, *kv.Store, error) {
	env, err := envOf(t)
	if err != nil {
		return nil, nil, err
	}
	st, err := env.store()
	return env, st, err
}

func ctxOf(t *starlark.Thread) context.Context {
	if c, ok := t.Local("context").(context.Context); ok {
		return c
	}
	return context.Background()
}

func (e *Env) printf(format string, args ...any) {
	if e.Out != nil {
		fmt.Fprintf(e.Out, format, args...)
	}
}

// Modules returns the predeclared names every script sees; args become
// lens.args.
func Modules(args map[string]string) starlark.StringDict {
	lens := &starlarkstruct.Module{Name: "lens", Members: starlark.StringDict{}}
	for k, v := range lensModule.Members {
		lens.Members[k] = v
	}
	d := starlark.NewDict(len(args))
	for k, v := range args {
		d.SetKey(starlark.String(k), starlark.String(v))
	}
	d.Freeze()
	lens.Members["args"] = d
	return starlark.StringDict{
		"lens":     lens,
		"model":    modelModule,
		"lora":     loraModule,
		"data":     dataModule,
		"report":   reportModule,
		"collect":  collectModule(),
		"analyze":  analyzeModule,
		"evaluate": evaluateModule,
		"hf":       hfModule,
		"tb":       tbModule,
		"wandb":    wandbModule,
	}
}

// readable resolves a path a script asks to read and checks that it lies
// in the workspace or an allowed folder (symlinks resolved).
func (e *Env) readable(path string) (string, error) {
	abs, err := filepath.Abs(path)
	if err != nil {
		return "", err
	}
	if e.Workspace == "" {
		return abs, nil
	}
	real := abs
	if r, err := filepath.EvalSymlinks(abs); err == nil {
		real = r
	}
	for _, root := range append([]string{e.Workspace}, e.AllowRead...) {
		r, err := filepath.Abs(root)
		if err != nil {
			continue
		}
		if rr, err := filepath.EvalSymlinks(r); err == nil {
			r = rr
		}
		if rel, err := filepath.Rel(r, real); err == nil && rel != ".." && !strings.HasPrefix(rel, ".."+string(filepath.Separator)) {
			return abs, nil
		}
	}
	return "", fmt.Errorf("%s is outside the workspace %s (allow it with --allow-read)", path, e.Workspace)
}
