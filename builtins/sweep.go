package builtins

import (
	"encoding/json"
	"fmt"
	"path/filepath"
	"runtime"
	"sort"
	"strings"

	"go.starlark.net/starlark"

	"lens/engine/collect"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/kv"
)

// trainer is where lens.train sends the job it prepared: the store (train
// it now) or a sweep's plan (record it as a trial). lens.sweep sets its
// planner on the thread, explicitly, only while it calls train for each
// point; every other lens.train trains.
type trainer interface {
	train(t *starlark.Thread, fn *starlark.Builtin, job *runs.Job, mv *Model, scripted []collect.Collector, sinks []runs.Sink) (starlark.Value, error)
	resume(t *starlark.Thread, fn *starlark.Builtin, r *Run, sinks []runs.Sink) (starlark.Value, error)
}

// trainerKey is the thread local holding a sweep's planner.
const trainerKey = "lens.trainer"

func trainerOf(t *starlark.Thread, env *Env, st *kv.Store) trainer {
	if tr, ok := t.Local(trainerKey).(trainer); ok {
		return tr
	}
	return storeTrainer{env: env, st: st}
}

// withTrainer calls f with tr as the thread's trainer.
func withTrainer(t *starlark.Thread, tr trainer, f func() error) error {
	prev := t.Local(trainerKey)
	t.SetLocal(trainerKey, tr)
	defer t.SetLocal(trainerKey, prev)
	return f()
}

// storeTrainer trains in the script's store.
type storeTrainer struct {
	env *Env
	st  *kv.Store
}

func (s storeTrainer) train(t *starlark.Thread, fn *starlark.Builtin, job *runs.Job, _ *Model, scripted []collect.Collector, sinks []runs.Sink) (starlark.Value, error) {
	meta, err := job.Run(ctxOf(t), s.st, runs.Options{Progress: s.env.Progress, Logger: s.env.Logger, Collectors: scripted, Sinks: sinks})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if meta.Status == kv.StatusCancelled {
		return nil, fmt.Errorf("%s: run %s %s", fn.Name(), meta.ID, meta.Reason)
	}
	return &Run{st: s.st, meta: meta}, nil
}

func (s storeTrainer) resume(t *starlark.Thread, fn *starlark.Builtin, r *Run, sinks []runs.Sink) (starlark.Value, error) {
	meta, err := runs.Resume(ctxOf(t), s.st, r.meta.ID, runs.Options{Progress: s.env.Progress, Logger: s.env.Logger, Sinks: sinks})
	if err != nil {
		return nil, fmt.Errorf("%s: resume %s: %w", fn.Name(), r.meta.ID, err)
	}
	if meta.Status == kv.StatusCancelled {
		return nil, fmt.Errorf("%s: run %s %s", fn.Name(), meta.ID, meta.Reason)
	}
	return &Run{st: s.st, meta: meta}, nil
}

// planner records what lens.train would run while a sweep plans its
// trials: the spec it built and validated, and the base model it uses.
type planner struct {
	specs []runs.Spec
	bases map[string]*model.Model
}

func (p *planner) resume(_ *starlark.Thread, fn *starlark.Builtin, _ *Run, _ []runs.Sink) (starlark.Value, error) {
	return nil, fmt.Errorf("%s: resume= cannot be a sweep trial (a trial resumes by itself)", fn.Name())
}

// train records the job lens.train prepared exactly as for a real run.
func (p *planner) train(_ *starlark.Thread, fn *starlark.Builtin, job *runs.Job, mv *Model, scripted []collect.Collector, sinks []runs.Sink) (starlark.Value, error) {
	job.Trainer.Close()
	if in := job.Spec.Init; in != nil && in.Run != "" {
		return nil, fmt.Errorf("%s: for parameter \"init\": a sweep trial runs in a store of its own and cannot read run %s; pass the directory hf.export_adapter writes instead", fn.Name(), in.Run)
	}
	if len(scripted) > 0 {
		return nil, fmt.Errorf("%s: collector %q is written in the script (lens.collector) and cannot run in a trial process: use backend=\"inline\" or built-in collectors",
			fn.Name(), scripted[0].Name())
	}
	if len(sinks) > 0 {
		return nil, fmt.Errorf("%s: log_to= (%s) cannot follow a trial process: use backend=\"inline\", or export the merged runs afterwards", fn.Name(), sinks[0].Name())
	}
	p.specs = append(p.specs, job.Spec)
	if h := job.Spec.Base.Blob; h != "" { // a pretrained base; a seeded one is drawn again in the trial
		base, err := mv.model()
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		p.bases[h] = base
	}
	return plannedRun{job.Spec.Name}, nil
}

// plannedRun is what lens.train returns while a sweep plans its trials.
type plannedRun struct{ name string }

func (r plannedRun) String() string        { return fmt.Sprintf("<planned run %q>", r.name) }
func (r plannedRun) Type() string          { return "planned_run" }
func (r plannedRun) Freeze()               {}
func (r plannedRun) Truth() starlark.Bool  { return true }
func (r plannedRun) Hash() (uint32, error) { return starlark.String(r.name).Hash() }
func (r plannedRun) AttrNames() []string   { return nil }
func (r plannedRun) Attr(name string) (starlark.Value, error) {
	return nil, fmt.Errorf("run %q has not trained yet: while a sweep with a process backend plans its trials, lens.train only records them, so the train function must return its run without reading it (.%s)", r.name, name)
}

// backendOf resolves backend= (None: the lens run --backend default).
func backendOf(env *Env, v starlark.Value) (string, error) {
	b := env.SweepBackend
	if v != nil && v != starlark.None {
		s, ok := starlark.AsString(v)
		if !ok {
			return "", fmt.Errorf("backend: want a string, got %s", v.Type())
		}
		b = s
	}
	switch b {
	case "", sweep.BackendInline:
		return sweep.BackendInline, nil
	case sweep.BackendLocal, sweep.BackendSlurm:
		return b, nil
	}
	return "", fmt.Errorf("backend %q: want inline, local or slurm", b)
}

// lens.sweep_backend(backend=None) -> the backend a sweep uses.
func lensSweepBackend(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, err := envOf(t)
	if err != nil {
		return nil, err
	}
	var v starlark.Value
	if err := unpack(fn, args, kwargs, &v); err != nil {
		return nil, err
	}
	b, err := backendOf(env, v)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return starlark.String(b), nil
}

// trialName is run_sweep's NAME/k=v,... (keys sorted, values as %s).
func trialName(sweepName string, point *starlark.Dict) (string, error) {
	var keys []string
	for _, k := range point.Keys() {
		s, ok := k.(starlark.String)
		if !ok {
			return "", fmt.Errorf("point key %s is not a string", k)
		}
		keys = append(keys, string(s))
	}
	sort.Strings(keys)
	parts := make([]string, len(keys))
	for i, k := range keys {
		v, _, _ := point.Get(starlark.String(k))
		s, ok := v.(starlark.String)
		if !ok {
			parts[i] = k + "=" + v.String()
			continue
		}
		parts[i] = k + "=" + string(s)
	}
	return sweepName + "/" + strings.Join(parts, ","), nil
}

// lens.sweep(name, points, train, common=None, backend=None, workers=None,
// retries=2, slurm=None, dir=None, halving=None): runs train(name=NAME/k=v,
// tags=[NAME], **common, **point) for every point as trial processes.
func lensSweep(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var (
		name                   string
		points                 starlark.Iterable
		train                  starlark.Callable
		common, slurm, halving *starlark.Dict
		backendV               starlark.Value = starlark.None
		workersV               starlark.Value = starlark.None
		retries                int
		dir                    string
	)
	// None means "the default" for every optional argument.
	var given []starlark.Tuple
	for _, kv := range kwargs {
		if kv[1] != starlark.None {
			given = append(given, kv)
		}
	}
	kwargs = given
	if err := unpack(fn, args, kwargs, &name, &points, &train, &common, &backendV, &workersV, &retries,
		&slurm, &dir, &halving); err != nil {
		return nil, err
	}
	fail := func(format string, a ...any) error {
		return fmt.Errorf("%s: "+format, append([]any{fn.Name()}, a...)...)
	}
	backend, err := backendOf(env, backendV)
	if err != nil {
		return nil, fail("%v", err)
	}
	if backend == sweep.BackendInline {
		return nil, fail(`backend "inline" runs in the script: use run_sweep or successive_halving from @stdlib//sweep.star`)
	}
	workers := 0
	if workersV != starlark.None {
		w, err := starlark.AsInt32(workersV)
		if err != nil {
			return nil, fail("workers: want an int, got %s", workersV.Type())
		}
		if w < 1 {
			return nil, fail("workers=%d: want at least 1 (trials running at once)", w)
		}
		workers = w
	}
	if retries < 0 {
		return nil, fail("retries=%d: want 0 or more", retries)
	}
	var hv *sweep.Halving
	if halving != nil {
		if hv, err = halvingOf(halving); err != nil {
			return nil, fail("halving: %v", err)
		}
	}
	var slurmOpts sweep.SlurmOptions
	if slurm != nil {
		if backend != sweep.BackendSlurm {
			return nil, fail("slurm= is for backend \"slurm\", not %q", backend)
		}
		if slurmOpts, err = slurmOptionsOf(slurm); err != nil {
			return nil, fail("slurm: %v", err)
		}
	}

	// Plan: call train for each point with lens.train in plan mode.
	p := &planner{bases: map[string]*model.Model{}}
	var planned []sweep.Planned
	it := points.Iterate()
	defer it.Done()
	var pt starlark.Value
	for i := 0; it.Next(&pt); i++ {
		d, ok := pt.(*starlark.Dict)
		if !ok {
			return nil, fail("points[%d] is %s, want a dict of lens.train arguments", i, pt.Type())
		}
		trial, err := trialName(name, d)
		if err != nil {
			return nil, fail("points[%d]: %v", i, err)
		}
		merged := starlark.NewDict(d.Len())
		if common != nil {
			for _, kv := range common.Items() {
				merged.SetKey(kv[0], kv[1])
			}
		}
		for _, kv := range d.Items() {
			merged.SetKey(kv[0], kv[1])
		}
		kw := []starlark.Tuple{{starlark.String("name"), starlark.String(trial)}, {starlark.String("tags"), starlark.NewList([]starlark.Value{starlark.String(name)})}}
		for _, kv := range merged.Items() {
			kw = append(kw, starlark.Tuple{kv[0], kv[1]})
		}
		before := len(p.specs)
		err = withTrainer(t, p, func() error {
			_, err := starlark.Call(t, train, nil, kw)
			return err
		})
		if err != nil {
			return nil, fail("planning trial %s: %w", trial, err)
		}
		if n := len(p.specs) - before; n != 1 {
			return nil, fail("planning trial %s: train called lens.train %d times; a trial is exactly one lens.train", trial, n)
		}
		pj, err := pointJSON(d)
		if err != nil {
			return nil, fail("points[%d]: %v", i, err)
		}
		planned = append(planned, sweep.Planned{Name: trial, Point: pj, Spec: p.specs[before]})
		if p.specs[before].Device == "cuda" && slurmOpts.Device == "" {
			slurmOpts.Device = "cuda"
		}
	}
	if len(planned) == 0 {
		return nil, fail("no points")
	}
	if dir == "" {
		dir = sweep.DefaultDir(st.Dir(), name)
	} else if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	sw, ids, err := sweep.Create(dir, name, backend, st.Dir(), planned, p.bases, hv)
	if err != nil {
		return nil, fail("%v", err)
	}
	var be sweep.Backend
	switch backend {
	case sweep.BackendLocal:
		if workers == 0 {
			workers = runtime.NumCPU()
		}
		be, err = sweep.NewLocal(sw.Dir(), workers)
	case sweep.BackendSlurm:
		slurmOpts.MaxRunning = workers
		be, err = sweep.NewSlurm(sw, slurmOpts)
	}
	if err != nil {
		return nil, fail("%v", err)
	}
	env.printf("sweep %s: %d trials, backend %s, in %s\n", name, len(ids), backend, sw.Dir())
	res, runErr := sweep.Run(ctxOf(t), sw, ids, sweep.Config{Store: st, Backend: be, Retries: retries, Say: func(format string, a ...any) {
		env.printf(format+"\n", a...)
	}, Logger: env.Logger})
	if runErr != nil {
		return nil, fail("%w", runErr)
	}
	runOf := func(id string) starlark.Value {
		if m, ok := res.Runs[id]; ok {
			return &Run{st: st, meta: m}
		}
		return starlark.None
	}
	if hv == nil {
		out := make([]starlark.Value, len(ids))
		for i, id := range ids {
			out[i] = runOf(id)
		}
		return starlark.NewList(out), nil
	}
	rungs := make([]starlark.Value, len(res.Rungs))
	for k, rung := range res.Rungs {
		l := make([]starlark.Value, len(rung))
		for i, id := range rung {
			l[i] = runOf(id)
		}
		rungs[k] = starlark.NewList(l)
	}
	d := starlark.NewDict(2)
	d.SetKey(starlark.String("rungs"), starlark.NewList(rungs))
	best := starlark.Value(starlark.None)
	if res.Best != "" {
		best = runOf(res.Best)
	}
	d.SetKey(starlark.String("best"), best)
	return d, nil
}

func pointJSON(d *starlark.Dict) (json.RawMessage, error) {
	v, err := toGo(d)
	if err != nil {
		return nil, err
	}
	return json.Marshal(v) // map keys come out sorted: a canonical form
}

func halvingOf(d *starlark.Dict) (*sweep.Halving, error) {
	steps, rungs, eta, metric := 0, 3, 2, "final_loss"
	for _, kv := range d.Items() {
		k, _ := starlark.AsString(kv[0])
		switch k {
		case "steps", "rungs", "eta":
			i, err := starlark.AsInt32(kv[1])
			if err != nil {
				return nil, fmt.Errorf("%s: want an int, got %s", k, kv[1].Type())
			}
			switch k {
			case "steps":
				steps = i
			case "rungs":
				rungs = i
			default:
				eta = i
			}
		case "metric":
			s, ok := starlark.AsString(kv[1])
			if !ok {
				return nil, fmt.Errorf("metric: want a string, got %s", kv[1].Type())
			}
			metric = s
		default:
			return nil, fmt.Errorf("unknown key %q (want steps, rungs, eta, metric)", k)
		}
	}
	return sweep.NewHalving(steps, rungs, eta, metric)
}

func slurmOptionsOf(d *starlark.Dict) (sweep.SlurmOptions, error) {
	var o sweep.SlurmOptions
	for _, kv := range d.Items() {
		k, _ := starlark.AsString(kv[0])
		v := kv[1]
		str := func(dst *string) error {
			s, ok := starlark.AsString(v)
			if !ok {
				return fmt.Errorf("%s: want a string, got %s", k, v.Type())
			}
			*dst = s
			return nil
		}
		num := func(dst *int) error {
			i, err := starlark.AsInt32(v)
			if err != nil || i < 0 {
				return fmt.Errorf("%s: want a non-negative int, got %s", k, v.String())
			}
			*dst = i
			return nil
		}
		var err error
		switch k {
		case "partition":
			err = str(&o.Partition)
		case "cpus_per_task":
			err = num(&o.CPUsPerTask)
		case "mem":
			err = str(&o.Mem)
		case "time":
			err = str(&o.Time)
		case "device":
			err = str(&o.Device)
		case "gpus":
			err = num(&o.GPUs)
		case "job_name":
			err = str(&o.JobName)
		case "lens":
			err = str(&o.Lens)
		case "extra":
			l, ok := v.(*starlark.List)
			if !ok {
				return o, fmt.Errorf("extra: want a list of sbatch options, got %s", v.Type())
			}
			for i := range l.Len() {
				s, ok := starlark.AsString(l.Index(i))
				if !ok {
					return o, fmt.Errorf("extra[%d]: want a string", i)
				}
				o.Extra = append(o.Extra, s)
			}
		default:
			return o, fmt.Errorf("unknown key %q (want partition, cpus_per_task, mem, time, device, gpus, job_name, extra, lens)", k)
		}
		if err != nil {
			return o, err
		}
	}
	return o, nil
}
