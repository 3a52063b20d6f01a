package builtins

import (
	"fmt"
	"path/filepath"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/runs"
	"lens/engine/wandb"
)

// wandb module:
//
//	wandb.run(project, entity=None, mode="online"|"offline", dir=None) -> wandb.run: pass it to
//	    lens.train(..., log_to=[...]) to mirror the run to Weights & Biases as it trains (key in WANDB_API_KEY;
//	    without one it logs offline). dir is where offline folders go (default <store>/wandb).
//	wandb.sync(dir=None, project=None, entity=None, strict=False) -> list of wandb.upload: uploads offline folders,
//	    going on where an earlier sync stopped
//	wandb.upload(run, project, entity=None, strict=False) -> wandb.upload or None: uploads a stored run
//	    (trained with or without W&B), skipping what the server already has
//
// Failed uploads print what was skipped and how to finish later; strict=True
// makes them fail the script instead.
var wandbModule = module("wandb", map[string]builtinFn{"run": wandbRunFn, "sync": wandbSync, "upload": wandbUpload})

// wandbRunValue is a wandb.run(...): the settings of a W&B mirror, a new
// Sink for every run it is given to.
type wandbRunValue struct{ opts wandb.Options }

var _ SinkValue = (*wandbRunValue)(nil)

func (w *wandbRunValue) String() string {
	return fmt.Sprintf("<wandb.run project=%q mode=%s dir=%q>", w.opts.Project, w.opts.Mode, w.opts.Dir)
}
func (w *wandbRunValue) Type() string          { return "wandb.run" }
func (w *wandbRunValue) Freeze()               {}
func (w *wandbRunValue) Truth() starlark.Bool  { return true }
func (w *wandbRunValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: wandb.run") }
func (w *wandbRunValue) AttrNames() []string   { return []string{"project", "entity", "mode", "dir"} }
func (w *wandbRunValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "project":
		return starlark.String(w.opts.Project), nil
	case "entity":
		return starlark.String(w.opts.Entity), nil
	case "mode":
		return starlark.String(w.opts.Mode), nil
	case "dir":
		return starlark.String(w.opts.Dir), nil
	}
	return nil, nil
}

// Sink returns a new W&B sink for the next run.
func (w *wandbRunValue) Sink() (runs.Sink, error) { return wandb.NewSink(w.opts) }

// wandbOptions are the options every wandb builtin shares: the key and
// server from the environment (so scripts never hold the key), the logger.
func wandbOptions(env *Env) wandb.Options {
	return wandb.Options{Logger: env.Logger, APIKey: env.WandbKey, BaseURL: env.WandbBaseURL}
}

func wandbDir(env *Env, dir string) (string, error) {
	if dir != "" {
		return filepath.Abs(dir)
	}
	st, err := env.store()
	if err != nil {
		return "", fmt.Errorf("%v, so give dir", err)
	}
	return filepath.Join(st.Dir(), "wandb"), nil
}

func wandbRunFn(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, err := envOf(t)
	if err != nil {
		return nil, err
	}
	var project, entity, dir string
	mode := wandb.ModeOnline
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "project", &project, "entity?", &entity, "mode?", &mode, "dir?", &dir); err != nil {
		return nil, err
	}
	if mode != wandb.ModeOnline && mode != wandb.ModeOffline {
		return nil, fmt.Errorf("%s: for parameter \"mode\": want %q or %q, got %q", fn.Name(), wandb.ModeOnline, wandb.ModeOffline, mode)
	}
	if project == "" {
		return nil, fmt.Errorf("%s: for parameter \"project\": must not be empty", fn.Name())
	}
	if dir, err = wandbDir(env, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	o := wandbOptions(env)
	o.Project, o.Entity, o.Mode, o.Dir = project, entity, mode, dir
	return &wandbRunValue{opts: o}, nil
}

func uploadValue(r wandb.Result) starlark.Value {
	return starlarkstruct.FromStringDict(starlark.String("wandb.upload"), starlark.StringDict{
		"run": starlark.String(r.RunID), "wandb_id": starlark.String(r.WandbID), "url": starlark.String(r.URL),
		"sent": starlark.MakeInt(r.Sent), "skipped": starlark.MakeInt(r.Skipped), "complete": starlark.Bool(r.Complete),
	})
}

func wandbSync(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, err := envOf(t)
	if err != nil {
		return nil, err
	}
	var dir, project, entity string
	strict := false
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "dir?", &dir, "project?", &project, "entity?", &entity, "strict?", &strict); err != nil {
		return nil, err
	}
	if dir, err = wandbDir(env, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	o := wandbOptions(env)
	o.Project, o.Entity = project, entity
	o.Store, _ = env.store() // nil when no store opens, as before when none was open
	res, err := wandb.Sync(ctxOf(t), dir, o)
	out := make([]starlark.Value, 0, len(res))
	for _, r := range res {
		env.printf("%s: %s\n", fn.Name(), r)
		out = append(out, uploadValue(r))
	}
	if err != nil {
		if strict {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		env.printf("%s: not everything was uploaded: %v\n  Run it again (or `lens wandb sync %s`) to go on.\n", fn.Name(), err, dir)
	}
	return starlark.NewList(out), nil
}

func wandbUpload(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var run *Run
	var project, entity string
	strict := false
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "run", &run, "project", &project, "entity?", &entity, "strict?", &strict); err != nil {
		return nil, err
	}
	o := wandbOptions(env)
	o.Project, o.Entity = project, entity
	res, err := wandb.SyncRun(ctxOf(t), st, run.meta.ID, o)
	if err != nil {
		if strict {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		env.printf("%s: skipped: run %s was not (fully) uploaded: %v\n  The run stays in the store; upload it later with: lens wandb upload %s --project %s\n",
			fn.Name(), run.meta.ID, err, run.meta.ID, project)
		return starlark.None, nil
	}
	env.printf("%s: %s\n", fn.Name(), res)
	return uploadValue(res), nil
}
