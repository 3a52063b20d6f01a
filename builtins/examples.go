package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/runs"
	"lens/engine/sft"
)

// Example datasets for supervised fine-tuning:
//
//	data.jsonl(path, prompt=None, completion=None, messages=None, text=None, format=None,
//	           eval_frac=0.05, eval=None, train_on="completion", max_len=0, truncation="error", epochs=0,
//	           packing=False) -> data
//	data.parquet(path, ...)  the same for a Parquet file
//	data.examples(rows, ..., name="examples")  rows: a list of dicts built in the script
//
// prompt=/completion=/messages=/text= name the columns of each shape;
// format=fn(row) reshapes each row (a dict) into one of the shapes. Rows
// built in the script or reshaped by fn are stored with the run in their
// normalized form, so a resume needs neither the script nor fn. eval= is
// a file (or, for data.examples, a list of dicts) of held-out examples;
// without it eval_frac of the examples are held out.

func dataJSONL(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return dataExampleFile(t, fn, args, kwargs, "jsonl")
}

func dataParquet(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	return dataExampleFile(t, fn, args, kwargs, "parquet")
}

// exampleArgs are the arguments every example builtin shares.
type exampleArgs struct {
	prompt, completion, messages, text string
	format                             starlark.Value
	evalFrac                           float64
	eval                               starlark.Value
	trainOn, truncation                string
	maxLen                             int
	epochs                             float64
	packing                            bool
}

// ptrs are the variables of exampleParams, in order.
func (a *exampleArgs) ptrs() []any {
	return []any{&a.prompt, &a.completion, &a.messages, &a.text, &a.format, &a.evalFrac, &a.eval, &a.trainOn,
		&a.maxLen, &a.truncation, &a.epochs, &a.packing}
}

func (a *exampleArgs) spec() sft.Spec {
	return sft.Spec{Fields: sft.Fields{Text: a.text, Prompt: a.prompt, Completion: a.completion, Messages: a.messages},
		EvalFrac: a.evalFrac, TrainOn: a.trainOn, MaxLen: a.maxLen, Truncation: a.truncation, Epochs: a.epochs, Packing: a.packing}
}

// reshape returns format's callable, or nil when there is none.
func (a *exampleArgs) reshape(fn *starlark.Builtin) (starlark.Callable, error) {
	if a.format == starlark.None {
		return nil, nil
	}
	c, ok := a.format.(starlark.Callable)
	if !ok {
		return nil, fmt.Errorf("%s: for parameter \"format\": want a function of a row, got %s", fn.Name(), a.format.Type())
	}
	return c, nil
}

func dataExampleFile(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, format string) (starlark.Value, error) {
	var path string
	var a exampleArgs
	if err := unpack(fn, args, kwargs, append([]any{&path}, a.ptrs()...)...); err != nil {
		return nil, err
	}
	env, envErr := envOf(t)
	readable := func(p string) (string, error) {
		if envErr != nil {
			return p, nil
		}
		return env.readable(p)
	}
	if _, err := readable(path); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	s := a.spec()
	s.Path, s.Format = path, format
	var evalPath string
	switch e := a.eval.(type) {
	case starlark.NoneType:
	case starlark.String:
		evalPath = string(e)
		if _, err := readable(evalPath); err != nil {
			return nil, fmt.Errorf("%s: for parameter \"eval\": %w", fn.Name(), err)
		}
	default:
		return nil, fmt.Errorf("%s: for parameter \"eval\": want a file path, got %s", fn.Name(), a.eval.Type())
	}
	s.EvalPath = evalPath
	reshape, err := a.reshape(fn)
	if err != nil {
		return nil, err
	}
	if reshape != nil {
		// fn's results are what the run trains on: keep them inline.
		d, err := reshapeFile(t, reshape, path, format, s.Fields)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		s.Path, s.Format, s.Name, s.Shape, s.Inline = "", "", d.Name, d.Shape, d.Examples
		if evalPath != "" {
			ev, err := reshapeFile(t, reshape, evalPath, format, s.Fields)
			if err != nil {
				return nil, fmt.Errorf("%s: for parameter \"eval\": %w", fn.Name(), err)
			}
			s.EvalPath, s.EvalShape, s.EvalInline = "", ev.Shape, ev.Examples
		}
	}
	return checkExamples(fn, path, s)
}

// reshapeFile calls fn on every row of a file and normalizes the results.
func reshapeFile(t *starlark.Thread, fn starlark.Callable, path, format string, f sft.Fields) (sft.Dataset, error) {
	var rows []map[string]any
	var where []string
	err := sft.EachRow(path, format, func(row map[string]any, at string) error {
		out, err := callFormat(t, fn, row, at)
		if err != nil {
			return err
		}
		rows, where = append(rows, out), append(where, at)
		return nil
	})
	if err != nil {
		return sft.Dataset{}, err
	}
	return sft.Normalize(baseName(path), rows, where, f)
}

func callFormat(t *starlark.Thread, fn starlark.Callable, row map[string]any, at string) (map[string]any, error) {
	v, err := starlark.Call(t, fn, starlark.Tuple{fromGo(plainRow(row))}, nil)
	if err != nil {
		return nil, fmt.Errorf("%s: format: %w", at, err)
	}
	out, err := toGo(v)
	m, ok := out.(map[string]any)
	if err != nil || !ok {
		return nil, fmt.Errorf("%s: format: want a dict, got %s", at, v.Type())
	}
	return m, nil
}

// plainRow turns Parquet's Go values into the JSON kinds fromGo knows.
func plainRow(v any) any {
	switch v := v.(type) {
	case map[string]any:
		out := make(map[string]any, len(v))
		for k, x := range v {
			out[k] = plainRow(x)
		}
		return out
	case []any:
		out := make([]any, len(v))
		for i, x := range v {
			out[i] = plainRow(x)
		}
		return out
	case []byte:
		return string(v)
	case int64:
		return float64(v)
	case int32:
		return float64(v)
	case float32:
		return float64(v)
	}
	return v
}

func dataExamples(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var list *starlark.List
	var name string
	var a exampleArgs
	if err := unpack(fn, args, kwargs, append([]any{&list, &name}, a.ptrs()...)...); err != nil {
		return nil, err
	}
	reshape, err := a.reshape(fn)
	if err != nil {
		return nil, err
	}
	s := a.spec()
	d, err := scriptRows(t, reshape, list, name, s.Fields)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	s.Name, s.Shape, s.Inline = name, d.Shape, d.Examples
	switch e := a.eval.(type) {
	case starlark.NoneType:
	case *starlark.List:
		ev, err := scriptRows(t, reshape, e, name+" eval", s.Fields)
		if err != nil {
			return nil, fmt.Errorf("%s: for parameter \"eval\": %w", fn.Name(), err)
		}
		s.EvalShape, s.EvalInline = ev.Shape, ev.Examples
	default:
		return nil, fmt.Errorf("%s: for parameter \"eval\": want a list of dicts, got %s", fn.Name(), a.eval.Type())
	}
	return checkExamples(fn, name, s)
}

// scriptRows converts a Starlark list of dicts (through fn when given).
func scriptRows(t *starlark.Thread, fn starlark.Callable, list *starlark.List, name string, f sft.Fields) (sft.Dataset, error) {
	var rows []map[string]any
	var where []string
	for i := range list.Len() {
		at := fmt.Sprintf("%s example %d", name, i)
		v, err := toGo(list.Index(i))
		m, ok := v.(map[string]any)
		if err != nil || !ok {
			return sft.Dataset{}, fmt.Errorf("%s: want a dict, got %s", at, list.Index(i).Type())
		}
		if fn != nil {
			if m, err = callFormat(t, fn, m, at); err != nil {
				return sft.Dataset{}, err
			}
		}
		rows, where = append(rows, m), append(where, at)
	}
	return sft.Normalize(name, rows, where, f)
}

// checkExamples reads the examples once, so bad data fails at the line
// that names it.
func checkExamples(fn *starlark.Builtin, source string, s sft.Spec) (starlark.Value, error) {
	if _, _, err := s.Load(); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &dataValue{runs.DataRef{Source: source, EvalFrac: s.EvalFrac, Examples: &s}}, nil
}

func baseName(path string) string {
	for i := len(path) - 1; i >= 0; i-- {
		if path[i] == '/' {
			return path[i+1:]
		}
	}
	return path
}
