package builtins

import (
	"fmt"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/hf"
	"lens/engine/lora"
)

// hf module:
//
//	hf.export_adapter(run, dir, step=None) -> dir: the run's adapter in PEFT format (step: a checkpoint, default the latest)
//	hf.load_adapter(dir, model=None) -> adapter: .config (lora.config), .tensors (dict name -> shape), .base, .dir;
//	    with model=, also checked against that model's modules and shapes
//	hf.push(run, repo, private=True, all_checkpoints=False, revision="main", strict=False) -> push or None:
//	    uploads the run's adapter and a model card to the Hub with the token in HF_TOKEN; without a token or
//	    when the Hub cannot be reached or refuses, it prints what was skipped and returns None (strict=True fails instead)
var hfModule = module("hf", map[string]builtinFn{"export_adapter": hfExportAdapter, "load_adapter": hfLoadAdapter, "push": hfPush})

func hfExportAdapter(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	_, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var run *Run
	var dir string
	var step starlark.Value = starlark.None
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "run", &run, "dir", &dir, "step?", &step); err != nil {
		return nil, err
	}
	s := -1
	if step != starlark.None {
		i, err := starlark.AsInt32(step)
		if err != nil || i < 0 {
			return nil, fmt.Errorf("%s: for parameter \"step\": want a checkpoint step, got %s", fn.Name(), step.String())
		}
		s = i
	}
	if _, err := hf.ExportAdapter(st, run.meta.ID, s, dir); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return starlark.String(dir), nil
}

func hfLoadAdapter(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var dir string
	var mv *Model
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "dir", &dir, "model?", &mv); err != nil {
		return nil, err
	}
	if env, err := envOf(t); err == nil {
		if _, err := env.readable(dir); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	info, err := hf.ReadAdapter(dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if mv != nil {
		base, err := mv.model()
		if err == nil {
			_, err = lora.Load(dir, base)
		}
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	tensors := starlark.NewDict(len(info.Tensors))
	for name, shape := range info.Tensors {
		dims := make(starlark.Tuple, len(shape))
		for i, d := range shape {
			dims[i] = starlark.MakeInt(d)
		}
		tensors.SetKey(starlark.String(name), dims)
	}
	tensors.Freeze()
	return starlarkstruct.FromStringDict(starlark.String("adapter"), starlark.StringDict{
		"config": &loraValue{info.Config}, "tensors": tensors,
		"base": starlark.String(info.BaseModel), "dir": starlark.String(dir),
	}), nil
}

func hfPush(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var run *Run
	var repo string
	private, all, strict := true, false, false
	revision := "main"
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "run", &run, "repo", &repo, "private?", &private,
		"all_checkpoints?", &all, "revision?", &revision, "strict?", &strict); err != nil {
		return nil, err
	}
	// The token comes from the environment only (via Env), so scripts never hold it.
	opts := hf.PushOptions{Repo: repo, Private: private, Revision: revision, AllCheckpoints: all,
		Token: env.HFToken, Endpoint: env.HFEndpoint, Logger: env.Logger}
	res, err := hf.Push(ctxOf(t), st, run.meta.ID, opts)
	if err != nil {
		if strict || !hf.IsRemote(err) {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		env.printf("%s: skipped: run %s was not pushed to %s: %v\n  The run stays in the store; push it later with: lens push %s --repo %s\n",
			fn.Name(), run.meta.ID, repo, err, run.meta.ID, repo)
		return starlark.None, nil
	}
	commits := make([]starlark.Value, len(res.Commits))
	for i, c := range res.Commits {
		commits[i] = starlarkstruct.FromStringDict(starlark.String("commit"), starlark.StringDict{
			"step": starlark.MakeInt(c.Step), "message": starlark.String(c.Message),
			"oid": starlark.String(c.OID), "url": starlark.String(c.URL)})
	}
	env.printf("%s: pushed run %s to %s (%d commit(s))\n", fn.Name(), run.meta.ID, res.URL, len(res.Commits))
	return starlarkstruct.FromStringDict(starlark.String("push"), starlark.StringDict{
		"repo": starlark.String(res.Repo), "url": starlark.String(res.URL), "commits": starlark.NewList(commits),
	}), nil
}
