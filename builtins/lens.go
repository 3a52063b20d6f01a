package builtins

import (
	"fmt"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/engine/collect"
	"lens/engine/device"
	"lens/engine/runs"
	"lens/kv"
)

func lensTrain(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	if len(args) > 0 {
		return nil, fmt.Errorf("%s: takes keyword arguments only (model=, data=, ...)", fn.Name())
	}
	picked, rest := splitKwargs(kwargs, "log_to")
	sinks, err := sinksArg(fn, orNone(picked["log_to"]))
	if err != nil {
		return nil, err
	}
	kwargs = rest
	if len(kwargs) == 1 && string(kwargs[0][0].(starlark.String)) == "resume" {
		if plannerOf(t) != nil {
			return nil, fmt.Errorf("%s: resume= cannot be a sweep trial (a trial resumes by itself)", fn.Name())
		}
		r, ok := kwargs[0][1].(*Run)
		if !ok {
			return nil, fmt.Errorf("%s: argument resume: want run, got %s", fn.Name(), kwargs[0][1].Type())
		}
		meta, err := runs.Resume(ctxOf(t), st, r.meta.ID, runs.Options{Progress: env.Progress, Logger: env.Logger, Sinks: sinks})
		if err != nil {
			return nil, fmt.Errorf("%s: resume %s: %w", fn.Name(), r.meta.ID, err)
		}
		if meta.Status == kv.StatusCancelled {
			return nil, fmt.Errorf("%s: run %s %s", fn.Name(), meta.ID, meta.Reason)
		}
		return &Run{st: st, meta: meta}, nil
	}
	if _, ok := kwargsHas(kwargs, "resume"); ok {
		return nil, fmt.Errorf("%s: resume= continues a stored run with its own settings and takes no other argument but log_to=", fn.Name())
	}
	picked, rest = splitKwargs(kwargs, "model", "data", "lora", "name", "tags", "eval_data", "checkpoint_every", "lora_seed", "collect", "probe_batch", "keep_last", "device", "init", "init_step")
	mv, ok := picked["model"].(*Model)
	if !ok {
		return nil, fmt.Errorf("%s: argument model: want model, got %s", fn.Name(), typeName(picked["model"]))
	}
	dv, ok := picked["data"].(*dataValue)
	if !ok {
		return nil, fmt.Errorf("%s: argument data: want data, got %s", fn.Name(), typeName(picked["data"]))
	}
	spec := runs.Spec{Data: dv.ref, Script: env.Script, ScriptHash: env.ScriptHash, Args: env.Args, CheckpointEvery: 0}
	if v, ok := picked["lora"]; ok && v != starlark.None {
		lv, ok := v.(*loraValue)
		if !ok {
			return nil, fmt.Errorf("%s: argument lora: want lora.config, got %s", fn.Name(), v.Type())
		}
		c := lv.c
		spec.LoRA = &c
	}
	if v, ok := picked["name"]; ok {
		if spec.Name, ok = starlark.AsString(v); !ok {
			return nil, fmt.Errorf("%s: argument name: want string, got %s", fn.Name(), v.Type())
		}
	}
	if v, ok := picked["tags"]; ok {
		tags, err := toGo(v)
		list, ok2 := tags.([]any)
		if err != nil || !ok2 {
			return nil, fmt.Errorf("%s: argument tags: want list of strings, got %s", fn.Name(), v.Type())
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return nil, fmt.Errorf("%s: argument tags: want list of strings", fn.Name())
			}
			spec.Tags = append(spec.Tags, s)
		}
	}
	if v, ok := picked["eval_data"]; ok {
		d, ok := v.(*starlark.Dict)
		if !ok {
			return nil, fmt.Errorf("%s: argument eval_data: want dict of name: data, got %s", fn.Name(), v.Type())
		}
		spec.Evals = map[string]runs.DataRef{}
		for _, kv := range d.Items() {
			k, ok1 := starlark.AsString(kv[0])
			dv, ok2 := kv[1].(*dataValue)
			if !ok1 || !ok2 {
				return nil, fmt.Errorf("%s: argument eval_data: want dict of name: data", fn.Name())
			}
			spec.Evals[k] = dv.ref
		}
	}
	var scripted []collect.Collector
	if v, ok := picked["collect"]; ok {
		l, ok := v.(*starlark.List)
		if !ok {
			return nil, fmt.Errorf("%s: argument collect: want a list of collectors, got %s", fn.Name(), v.Type())
		}
		for i := range l.Len() {
			c, ok := l.Index(i).(*collectSpec)
			if !ok {
				return nil, fmt.Errorf("%s: argument collect: item %d is %s, not a collector", fn.Name(), i, l.Index(i).Type())
			}
			if c.fn != nil {
				scripted = append(scripted, starlarkCollector(t, c))
			} else {
				spec.Collect = append(spec.Collect, c.spec)
			}
		}
	}
	if v, ok := picked["init"]; ok && v != starlark.None {
		switch v := v.(type) {
		case *Run:
			if plannerOf(t) != nil {
				return nil, fmt.Errorf("%s: argument init: a sweep trial runs in a store of its own and cannot read run %s; pass the directory hf.export_adapter writes instead", fn.Name(), v.meta.ID)
			}
			spec.Init = &runs.InitRef{Run: v.meta.ID}
			if sv, ok := picked["init_step"]; ok {
				step, err := starlark.AsInt32(sv)
				if err != nil || step <= 0 {
					return nil, fmt.Errorf("%s: argument init_step: want a positive checkpoint step of run %s, got %s", fn.Name(), v.meta.ID, sv.String())
				}
				spec.Init.Step = step
			}
		case starlark.String:
			dir, err := env.readable(string(v))
			if err != nil {
				return nil, fmt.Errorf("%s: argument init: %w", fn.Name(), err)
			}
			spec.Init = &runs.InitRef{Dir: dir}
		default:
			return nil, fmt.Errorf("%s: argument init: want a run or a PEFT adapter directory, got %s", fn.Name(), v.Type())
		}
	}
	if _, ok := picked["init_step"]; ok && (spec.Init == nil || spec.Init.Run == "") {
		return nil, fmt.Errorf("%s: argument init_step: picks a checkpoint of the run given as init=", fn.Name())
	}
	for _, k := range []string{"checkpoint_every", "lora_seed", "probe_batch", "keep_last"} {
		if v, ok := picked[k]; ok {
			i, err := starlark.AsInt32(v)
			if err != nil || i < 0 {
				return nil, fmt.Errorf("%s: argument %s: want a non-negative int, got %s", fn.Name(), k, v.String())
			}
			switch k {
			case "checkpoint_every":
				spec.CheckpointEvery = i
			case "probe_batch":
				spec.ProbeBatch = i
			case "keep_last":
				spec.KeepLast = i
			default:
				spec.LoRASeed = uint64(i)
			}
		}
	}
	dev := env.Device
	if v, ok := picked["device"]; ok {
		s, ok := v.(starlark.String)
		if !ok {
			return nil, fmt.Errorf("%s: argument device: want string, got %s", fn.Name(), v.Type())
		}
		dev = string(s)
	}
	got, note, err := device.Resolve(dev)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if note != "" && !env.noted {
		env.noted = true
		env.printf("%s\n", note)
	}
	spec.Device = got
	tc, err := trainConfig(fn, rest)
	if err != nil {
		return nil, err
	}
	if tc.Full && spec.LoRA != nil {
		return nil, fmt.Errorf("%s: give either lora= or full=True, not both", fn.Name())
	}
	if !tc.Full && spec.LoRA == nil {
		c := defaultLoRA()
		spec.LoRA = &c
	}
	spec.Train = tc
	if spec.Name == "" {
		spec.Name = defaultName(spec)
	}
	if mv.ref.Blob == "" && mv.ref.Dir == "" {
		ref, err := runs.StoreBase(st, mv.m)
		if err != nil {
			return nil, err
		}
		mv.ref = ref
	}
	spec.Base = mv.ref
	job, err := runs.Prepare(spec, mv.m)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if p := plannerOf(t); p != nil {
		// A sweep is planning its trials: record the spec, train nothing.
		return p.plan(fn, job, mv, scripted, sinks)
	}
	meta, err := job.Run(ctxOf(t), st, runs.Options{Progress: env.Progress, Logger: env.Logger, Collectors: scripted, Sinks: sinks})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if meta.Status == kv.StatusCancelled {
		return nil, fmt.Errorf("%s: run %s %s", fn.Name(), meta.ID, meta.Reason)
	}
	return &Run{st: st, meta: meta}, nil
}

func defaultName(s runs.Spec) string {
	if s.LoRA == nil {
		return "full-" + s.Data.Source
	}
	return fmt.Sprintf("lora-r%d-%s", s.LoRA.Rank, s.Data.Source)
}

func typeName(v starlark.Value) string {
	if v == nil {
		return "nothing"
	}
	return v.Type()
}

func lensRun(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	_, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var id string
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "id_or_name", &id); err != nil {
		return nil, err
	}
	m, err := st.FindRun(id)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &Run{st: st, meta: m}, nil
}

func lensRuns(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	_, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var name, tag, orderBy string
	var where starlark.Callable
	limit := 0
	if err := starlark.UnpackArgs(fn.Name(), args, kwargs, "name?", &name, "tag?", &tag, "where?", &where, "order_by?", &orderBy, "limit?", &limit); err != nil {
		return nil, err
	}
	var metas []kv.RunMeta
	switch {
	case name != "":
		metas, err = st.RunsByName(name)
	case tag != "":
		metas, err = st.RunsByTag(tag)
	default:
		metas, err = st.ListRuns()
	}
	if err != nil {
		return nil, err
	}
	var out []*Run
	for _, m := range metas {
		if tag != "" && name != "" && !contains(m.Tags, tag) {
			continue
		}
		r := &Run{st: st, meta: m}
		if where != nil {
			ok, err := starlark.Call(t, where, starlark.Tuple{r}, nil)
			if err != nil {
				return nil, fmt.Errorf("%s: where: %w", fn.Name(), err)
			}
			if !ok.Truth() {
				continue
			}
		}
		out = append(out, r)
	}
	if orderBy != "" {
		keys := make([]starlark.Value, len(out))
		for i, r := range out {
			v, err := r.Attr(orderBy)
			if err != nil || v == nil {
				return nil, fmt.Errorf("%s: order_by: run has no attribute %q", fn.Name(), orderBy)
			}
			keys[i] = v
		}
		idx := make([]int, len(out))
		for i := range idx {
			idx[i] = i
		}
		var cmpErr error
		sort.SliceStable(idx, func(a, b int) bool {
			ka, kb := keys[idx[a]], keys[idx[b]]
			if ka == starlark.None || kb == starlark.None {
				return kb == starlark.None && ka != starlark.None
			}
			lt, err := starlark.Compare(syntax.LT, ka, kb)
			if err != nil && cmpErr == nil {
				cmpErr = err
			}
			return lt
		})
		if cmpErr != nil {
			return nil, fmt.Errorf("%s: order_by %s: %w", fn.Name(), orderBy, cmpErr)
		}
		sorted := make([]*Run, len(out))
		for i, j := range idx {
			sorted[i] = out[j]
		}
		out = sorted
	}
	if limit > 0 && len(out) > limit {
		out = out[:limit]
	}
	vals := make([]starlark.Value, len(out))
	for i, r := range out {
		vals[i] = r
	}
	return starlark.NewList(vals), nil
}

func contains(s []string, x string) bool {
	for _, v := range s {
		if v == x {
			return true
		}
	}
	return false
}

func kwargsHas(kwargs []starlark.Tuple, name string) (starlark.Value, bool) {
	for _, kv := range kwargs {
		if string(kv[0].(starlark.String)) == name {
			return kv[1], true
		}
	}
	return nil, false
}
