package builtins

import (
	"fmt"
	"slices"
	"sort"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/engine/collect"
	"lens/engine/device"
	"lens/engine/runs"
	"lens/kv"
)

// lensTrain converts lens.train's arguments into runs.SpecOptions, lets
// the engine build the spec, and hands the prepared job to the thread's
// trainer: the store, or the plan of a sweep (see trainerOf).
func lensTrain(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	d := decl(fn)
	a, err := d.collect(args, kwargs) // resume= needs none of the required arguments
	if err != nil {
		return nil, err
	}
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	sinks, err := sinksArg(fn, orNone(a["log_to"]))
	if err != nil {
		return nil, err
	}
	tr := trainerOf(t, env, st)
	if v, ok := a["resume"]; ok && v != starlark.None {
		r, ok := v.(*Run)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"resume\": want run, got %s", fn.Name(), v.Type())
		}
		for k := range a {
			if k != "resume" && k != "log_to" {
				return nil, fmt.Errorf("%s: resume= continues a stored run with its own settings and takes no other argument but log_to=", fn.Name())
			}
		}
		return tr.resume(t, fn, r, sinks)
	}
	if err := d.required(a); err != nil {
		return nil, err
	}
	o, mv, scripted, err := specOptions(t, env, fn, a)
	if err != nil {
		return nil, err
	}
	spec, err := runs.NewSpec(st, o)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	job, err := runs.Prepare(spec, o.Model)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return tr.train(t, fn, job, mv, scripted, sinks)
}

// trainFields are lens.train's arguments that specOptions reads itself;
// the others are train.Config fields.
var trainFields = []string{"model", "data", "lora", "name", "tags", "eval_data", "checkpoint_every", "lora_seed",
	"collect", "probe_batch", "keep_last", "device", "init", "init_step", "log_to", "resume"}

// specOptions converts lens.train's arguments (a: those given).
func specOptions(t *starlark.Thread, env *Env, fn *starlark.Builtin, a map[string]starlark.Value) (runs.SpecOptions, *Model, []collect.Collector, error) {
	fail := func(format string, args ...any) (runs.SpecOptions, *Model, []collect.Collector, error) {
		return runs.SpecOptions{}, nil, nil, fmt.Errorf("%s: "+format, append([]any{fn.Name()}, args...)...)
	}
	mv, ok := a["model"].(*Model)
	if !ok {
		return fail("for parameter \"model\": want model, got %s", typeName(a["model"]))
	}
	dv, ok := a["data"].(*dataValue)
	if !ok {
		return fail("for parameter \"data\": want data, got %s", typeName(a["data"]))
	}
	o := runs.SpecOptions{Data: dv.ref, Script: env.Script, ScriptHash: env.ScriptHash, Args: env.Args}
	if v, ok := a["lora"]; ok && v != starlark.None {
		lv, ok := v.(*loraValue)
		if !ok {
			return fail("for parameter \"lora\": want lora.config, got %s", v.Type())
		}
		c := lv.c
		o.LoRA = &c
	}
	if v, ok := a["name"]; ok && v != starlark.None {
		if o.Name, ok = starlark.AsString(v); !ok {
			return fail("for parameter \"name\": want string, got %s", v.Type())
		}
	}
	if v, ok := a["tags"]; ok {
		tags, err := toGo(v)
		list, ok2 := tags.([]any)
		if err != nil || !ok2 {
			return fail("for parameter \"tags\": want list of strings, got %s", v.Type())
		}
		for _, x := range list {
			s, ok := x.(string)
			if !ok {
				return fail("for parameter \"tags\": want list of strings")
			}
			o.Tags = append(o.Tags, s)
		}
	}
	if v, ok := a["eval_data"]; ok && v != starlark.None {
		d, ok := v.(*starlark.Dict)
		if !ok {
			return fail("for parameter \"eval_data\": want dict of name: data, got %s", v.Type())
		}
		o.Evals = map[string]runs.DataRef{}
		for _, kv := range d.Items() {
			k, ok1 := starlark.AsString(kv[0])
			dv, ok2 := kv[1].(*dataValue)
			if !ok1 || !ok2 {
				return fail("for parameter \"eval_data\": want dict of name: data")
			}
			o.Evals[k] = dv.ref
		}
	}
	var scripted []collect.Collector
	if v, ok := a["collect"]; ok {
		l, ok := v.(*starlark.List)
		if !ok {
			return fail("for parameter \"collect\": want a list of collectors, got %s", v.Type())
		}
		for i := range l.Len() {
			c, ok := l.Index(i).(*collectSpec)
			if !ok {
				return fail("for parameter \"collect\": item %d is %s, not a collector", i, l.Index(i).Type())
			}
			if c.fn != nil {
				scripted = append(scripted, starlarkCollector(t, c))
			} else {
				o.Collect = append(o.Collect, c.spec)
			}
		}
	}
	if v, ok := a["init"]; ok && v != starlark.None {
		switch v := v.(type) {
		case *Run:
			o.Init = &runs.InitRef{Run: v.meta.ID}
			if sv, ok := a["init_step"]; ok && sv != starlark.None {
				step, err := starlark.AsInt32(sv)
				if err != nil || step <= 0 {
					return fail("for parameter \"init_step\": want a positive checkpoint step of run %s, got %s", v.meta.ID, sv.String())
				}
				o.Init.Step = step
			}
		case starlark.String:
			dir, err := env.readable(string(v))
			if err != nil {
				return fail("for parameter \"init\": %w", err)
			}
			o.Init = &runs.InitRef{Dir: dir}
		default:
			return fail("for parameter \"init\": want a run or a PEFT adapter directory, got %s", v.Type())
		}
	}
	if v, ok := a["init_step"]; ok && v != starlark.None && (o.Init == nil || o.Init.Run == "") {
		return fail("for parameter \"init_step\": picks a checkpoint of the run given as init=")
	}
	for _, k := range []string{"checkpoint_every", "lora_seed", "probe_batch", "keep_last"} {
		if v, ok := a[k]; ok {
			i, err := starlark.AsInt32(v)
			if err != nil || i < 0 {
				return fail("for parameter %q: want a non-negative int, got %s", k, v.String())
			}
			switch k {
			case "checkpoint_every":
				o.CheckpointEvery = i
			case "probe_batch":
				o.ProbeBatch = i
			case "keep_last":
				o.KeepLast = i
			default:
				o.LoRASeed = uint64(i)
			}
		}
	}
	dev := env.Device
	if v, ok := a["device"]; ok && v != starlark.None {
		s, ok := v.(starlark.String)
		if !ok {
			return fail("for parameter \"device\": want string, got %s", v.Type())
		}
		dev = string(s)
	}
	got, note, err := device.Resolve(dev)
	if err != nil {
		return fail("%w", err)
	}
	if note != "" && !env.noted {
		env.noted = true
		env.printf("%s\n", note)
	}
	o.Device = got
	var rest []starlark.Tuple
	for k, v := range a {
		if !slices.Contains(trainFields, k) {
			rest = append(rest, starlark.Tuple{starlark.String(k), v})
		}
	}
	sort.Slice(rest, func(i, j int) bool { return rest[i][0].(starlark.String) < rest[j][0].(starlark.String) })
	tc, err := trainConfig(fn, rest)
	if err != nil {
		return runs.SpecOptions{}, nil, nil, err
	}
	// A model loaded quantized trains with that base_quant, which the run
	// records (its base is rebuilt from the directory and quantized again).
	if mv.m != nil && mv.m.Quant != "" {
		if q := mv.m.Quant; tc.BaseQuant == "" {
			tc.BaseQuant = q
		} else if tc.BaseQuant != q {
			return runs.SpecOptions{}, nil, nil, fmt.Errorf("%s: base_quant = %q, but the model was loaded with quantize = %q", fn.Name(), tc.BaseQuant, q)
		}
	}
	o.Train = tc
	// A seeded model not drawn yet is drawn as the run holds it: packed
	// with base_quant, so the float32 model never exists.
	if o.Model, o.Base, err = mv.trainingBase(tc.BaseQuant); err != nil {
		return fail("for parameter \"model\": %w", err)
	}
	return o, mv, scripted, nil
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
	if err := unpack(fn, args, kwargs, &id); err != nil {
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
	var limit int
	if err := unpack(fn, args, kwargs, &name, &tag, &where, &orderBy, &limit); err != nil {
		return nil, err
	}
	// Summaries, not records: where= and order_by= on the common fields
	// read no config; a run's record is read when a script asks for it.
	var sums []kv.RunSummary
	switch {
	case name != "":
		sums, err = st.SummariesByName(name)
	case tag != "":
		sums, err = st.SummariesByTag(tag)
	default:
		sums, err = st.ListSummaries()
	}
	if err != nil {
		return nil, err
	}
	var out []*Run
	for _, m := range sums {
		if tag != "" && name != "" && !contains(m.Tags, tag) {
			continue
		}
		r := &Run{st: st, meta: m.Meta(), partial: true}
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
