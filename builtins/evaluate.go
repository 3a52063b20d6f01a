package builtins

import (
	"context"
	"encoding/json"
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/sft"
)

// dataGoFunc is data.gofunc: the built-in instruction dataset.
func dataGoFunc(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var task string
	var a exampleArgs
	if err := unpack(fn, args, kwargs, &task, &a.evalFrac, &a.trainOn, &a.maxLen, &a.truncation, &a.epochs, &a.packing); err != nil {
		return nil, err
	}
	s := a.spec()
	s.Builtin = "gofunc/" + task
	return checkExamples(fn, s.DisplayName(), s)
}

// evaluateGenerate is evaluate.generate.
func evaluateGenerate(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var subject, scorer starlark.Value
	var dv *dataValue
	var maxNew, limit int
	var stop *starlark.List
	if err := unpack(fn, args, kwargs, &subject, &dv, &scorer, &maxNew, &limit, &stop); err != nil {
		return nil, err
	}
	if dv.ref.Examples == nil {
		return nil, fmt.Errorf("%s: for parameter \"data\": want examples (data.jsonl, data.parquet, data.examples, data.gofunc), got the corpus %s", fn.Name(), dv.ref.Source)
	}
	_, held, err := dv.ref.Examples.Load()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	// The set is named as the run's eval/<set> metric of the same data.
	o := runs.GenEval{Set: dv.ref.Examples.DisplayName(), MaxNewTokens: maxNew, Limit: limit}
	if stop != nil {
		for i := range stop.Len() {
			s, ok := starlark.AsString(stop.Index(i))
			if !ok {
				return nil, fmt.Errorf("%s: for parameter \"stop\": want strings, got %s", fn.Name(), stop.Index(i).Type())
			}
			o.Stop = append(o.Stop, s)
		}
	}
	switch s := scorer.(type) {
	case starlark.String:
		o.ScorerName = string(s)
		if o.Scorer = runs.GenScorers[o.ScorerName]; o.Scorer == nil {
			return nil, fmt.Errorf("%s: for parameter \"scorer\": unknown scorer %q (want \"exact\", \"contains\" or a function)", fn.Name(), o.ScorerName)
		}
	case starlark.Callable:
		o.ScorerName, o.Scorer = s.Name(), starlarkScorer(t, s)
	default:
		return nil, fmt.Errorf("%s: for parameter \"scorer\": want a name or a function, got %s", fn.Name(), scorer.Type())
	}
	ctx := context.Background()
	var res runs.GenResult
	switch s := subject.(type) {
	case *Run:
		res, err = runs.GenerateEvalRun(ctx, s.st, s.meta.ID, held, o)
	case *Model:
		var base *model.Model
		if base, err = s.model(); err == nil {
			res, err = runs.GenerateEval(ctx, base, nil, s.ref, held, o)
		}
	default:
		return nil, fmt.Errorf("%s: for parameter \"subject\": want run or model, got %s", fn.Name(), subject.Type())
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	b, err := json.Marshal(res)
	if err != nil {
		return nil, err
	}
	var out any
	if err := json.Unmarshal(b, &out); err != nil {
		return nil, err
	}
	return fromGo(out), nil
}

// starlarkScorer calls fn(prediction, example) where example is a dict of
// the example's fields and "expected"; fn returns a number or a bool.
func starlarkScorer(t *starlark.Thread, fn starlark.Callable) runs.GenScorer {
	return func(pred string, ex sft.Example) (float64, error) {
		b, err := json.Marshal(ex)
		if err != nil {
			return 0, err
		}
		var m map[string]any
		if err := json.Unmarshal(b, &m); err != nil {
			return 0, err
		}
		m["expected"] = runs.Expected(ex)
		v, err := starlark.Call(t, fn, starlark.Tuple{starlark.String(pred), fromGo(m)}, nil)
		if err != nil {
			return 0, err
		}
		switch v := v.(type) {
		case starlark.Bool:
			if v {
				return 1, nil
			}
			return 0, nil
		case starlark.Int, starlark.Float:
			f, _ := starlark.AsFloat(v)
			return f, nil
		}
		return 0, fmt.Errorf("want a number or a bool, got %s", v.Type())
	}
}
