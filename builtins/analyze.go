package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/analyzers"
	"lens/engine/report"
	"lens/engine/reports"
	"lens/kv"
)

// scriptAnalyzer is an analyzer written in Starlark: fn(run) returns a
// dict of values (and optionally "findings", a list of strings).
type scriptAnalyzer struct {
	name   string
	fn     starlark.Callable
	thread *starlark.Thread
}

func (a *scriptAnalyzer) Name() string { return a.name }
func (a *scriptAnalyzer) Analyze(st *kv.Store, ids ...string) (*analyzers.Result, error) {
	var args starlark.Tuple
	for _, id := range ids {
		m, err := st.GetRun(id)
		if err != nil {
			return nil, err
		}
		args = append(args, &Run{st: st, meta: m})
	}
	v, err := starlark.Call(a.thread, a.fn, args, nil)
	if err != nil {
		return nil, fmt.Errorf("analyzer %s: %w", a.name, err)
	}
	g, err := toGo(v)
	if err != nil {
		return nil, fmt.Errorf("analyzer %s: result: %w", a.name, err)
	}
	m, ok := g.(map[string]any)
	if !ok {
		return nil, fmt.Errorf("analyzer %s: must return a dict, got %s", a.name, v.Type())
	}
	r := &analyzers.Result{Analyzer: a.name, Values: map[string]any{}}
	for k, x := range m {
		if k == "findings" {
			if l, ok := x.([]any); ok {
				for _, f := range l {
					r.Findings = append(r.Findings, fmt.Sprint(f))
				}
				continue
			}
		}
		r.Values[k] = x
	}
	return r, nil
}

// lens.analyzer(name, fn): registers a Starlark analyzer for this script.
func lensAnalyzer(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, err := envOf(t)
	if err != nil {
		return nil, err
	}
	var name string
	var f starlark.Callable
	if err := unpack(fn, args, kwargs, &name, &f); err != nil {
		return nil, err
	}
	if _, ok := analyzers.Default.Get(name); ok {
		return nil, fmt.Errorf("%s: %q is a built-in analyzer", fn.Name(), name)
	}
	if env.analyzers == nil {
		env.analyzers = map[string]*scriptAnalyzer{}
	}
	env.analyzers[name] = &scriptAnalyzer{name: name, fn: f, thread: t}
	return starlark.None, nil
}

func resultValue(r *analyzers.Result) starlark.Value {
	d := fromGo(jsonish(map[string]any{"analyzer": r.Analyzer, "values": r.Values, "findings": anySlice(r.Findings)}))
	return d
}

// runIDs reads the ids of a sequence of runs (arguments or a list).
func runIDs(fn *starlark.Builtin, args starlark.Indexable) ([]string, error) {
	var ids []string
	for i := range args.Len() {
		a := args.Index(i)
		r, ok := a.(*Run)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter %d: want run, got %s", fn.Name(), i+1, a.Type())
		}
		ids = append(ids, r.meta.ID)
	}
	return ids, nil
}

// analyzeRun is analyze.run(name, *runs).
func analyzeRun(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	if len(kwargs) > 0 || len(args) < 2 {
		return nil, fmt.Errorf("%s: want analyze.run(name, run, ...)", fn.Name())
	}
	name, ok := starlark.AsString(args[0])
	if !ok {
		return nil, fmt.Errorf("%s: argument 1: want analyzer name, got %s", fn.Name(), args[0].Type())
	}
	ids, err := runIDs(fn, args[1:])
	if err != nil {
		return nil, err
	}
	var r *analyzers.Result
	if a, ok := env.analyzers[name]; ok {
		r, err = a.Analyze(st, ids...)
	} else {
		r, err = analyzers.Default.Run(name, st, ids...)
	}
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return resultValue(r), nil
}

// analyzeNames is analyze.names(): built-in and script analyzers.
func analyzeNames(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := unpack(fn, args, kwargs); err != nil {
		return nil, err
	}
	names := analyzers.Default.Names()
	if env, err := envOf(t); err == nil {
		for n := range env.analyzers {
			names = append(names, n)
		}
	}
	return fromGo(anySlice(names)), nil
}

// report.standard(run, kind="executive", html=None) -> text; with html, also
// writes the HTML report there. Script analyzers join the findings.
func reportStandard(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var run *Run
	var kind, html string
	if err := unpack(fn, args, kwargs, &run, &kind, &html); err != nil {
		return nil, err
	}
	var extra []analyzers.Analyzer
	for _, a := range env.analyzers {
		extra = append(extra, a)
	}
	doc, err := reports.Standard(st, run.meta.ID, kind, reports.Options{Extra: extra})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return emitDoc(env, fn, doc, html)
}

// report.compare(runs, html=None) -> text.
func reportCompare(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var list *starlark.List
	var html string
	if err := unpack(fn, args, kwargs, &list, &html); err != nil {
		return nil, err
	}
	ids, err := runIDs(fn, list)
	if err != nil {
		return nil, err
	}
	doc, err := reports.Compare(st, ids)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return emitDoc(env, fn, doc, html)
}

// analyze.subspace(run_a, run_b, module, step_a=-1, step_b=-1) -> {"phi": [[...]], "baseline": [[...]]}:
// φ(i, j) between lora_A of module in two runs (or two checkpoints of one
// run), i over run_a's rank; a negative step is the latest checkpoint.
func analyzeSubspace(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	_, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var a, b *Run
	var module string
	var stepA, stepB int
	if err := unpack(fn, args, kwargs, &a, &b, &module, &stepA, &stepB); err != nil {
		return nil, err
	}
	grid, base, err := analyzers.Subspace(st, a.meta.ID, b.meta.ID, module, stepA, stepB)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return fromGo(map[string]any{"phi": matrixAny(grid), "baseline": matrixAny(base)}), nil
}

func matrixAny(m [][]float64) []any {
	out := make([]any, len(m))
	for i, row := range m {
		r := make([]any, len(row))
		for j, v := range row {
			r[j] = v
		}
		out[i] = r
	}
	return out
}

// report.frontier(runs, target, source, html=None) -> text: learning vs
// forgetting, one point per evaluation of each run.
func reportFrontier(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var list *starlark.List
	var target, source string
	var html string
	if err := unpack(fn, args, kwargs, &list, &target, &source, &html); err != nil {
		return nil, err
	}
	ids, err := runIDs(fn, list)
	if err != nil {
		return nil, err
	}
	doc, _, err := reports.Frontier(st, ids, target, source)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return emitDoc(env, fn, doc, html)
}

// emitDoc writes a report's HTML (if asked), prints its text and returns it.
func emitDoc(env *Env, fn *starlark.Builtin, doc *report.Document, html string) (starlark.Value, error) {
	if html != "" {
		if err := doc.WriteFile(html); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	text := reports.Text(doc)
	env.printf("%s", text)
	return starlark.String(text), nil
}
