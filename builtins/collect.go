package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/collect"
)

// collectSpec is a collector chosen in a script: a built-in one (by spec)
// or one written in Starlark (lens.collector).
type collectSpec struct {
	spec collect.Spec
	fn   starlark.Callable // set for Starlark collectors
}

func (c *collectSpec) String() string {
	return fmt.Sprintf("<collector %s every=%d>", c.spec.Name, c.spec.Every)
}
func (c *collectSpec) Type() string          { return "collector" }
func (c *collectSpec) Freeze()               {}
func (c *collectSpec) Truth() starlark.Bool  { return true }
func (c *collectSpec) Hash() (uint32, error) { return starlark.String(c.spec.Name).Hash() }

func collectorCtor(name string) builtinFn {
	return func(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		if _, err := decl(fn).given(args, kwargs); err != nil {
			return nil, err
		}
		s := collect.Spec{Name: name, Every: 10, Options: map[string]any{}}
		for _, kv := range kwargs {
			k := string(kv[0].(starlark.String))
			if k == "every" {
				e, err := starlark.AsInt32(kv[1])
				if err != nil || e <= 0 {
					return nil, fmt.Errorf("%s: for parameter \"every\": want a positive int, got %s", fn.Name(), kv[1])
				}
				s.Every = e
				continue
			}
			v, err := toGo(kv[1])
			if err != nil {
				return nil, fmt.Errorf("%s: for parameter %q: %w", fn.Name(), k, err)
			}
			s.Options[k] = v
		}
		if _, err := collect.Default.Build(s); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		return &collectSpec{spec: s}, nil
	}
}

// lensCollector is lens.collector(name, fn, every=10): a collector written
// in Starlark. fn(view) gets a dict (step, loss, lr, grad_norm, modules:
// {module: {norm_a, norm_b, grad_norm_a, grad_norm_b}}) and returns a dict
// of values to store, or None.
func lensCollector(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	var f starlark.Callable
	var every int
	if err := unpack(fn, args, kwargs, &name, &f, &every); err != nil {
		return nil, err
	}
	if every <= 0 {
		return nil, fmt.Errorf("%s: for parameter \"every\": want a positive int, got %d", fn.Name(), every)
	}
	if _, builtin := collect.Default.Get(name); builtin {
		return nil, fmt.Errorf("%s: %q is a built-in collector", fn.Name(), name)
	}
	return &collectSpec{spec: collect.Spec{Name: name, Every: every}, fn: f}, nil
}

// starlarkCollector runs a Starlark collector function on the training
// thread (hooks run synchronously inside lens.train).
func starlarkCollector(t *starlark.Thread, c *collectSpec) collect.Collector {
	return &collect.FuncCollector{CName: c.spec.Name, Every: c.spec.Every, Fn: func(view map[string]any) (map[string]any, error) {
		v, err := starlark.Call(t, c.fn, starlark.Tuple{fromGo(jsonish(view))}, nil)
		if err != nil {
			return nil, fmt.Errorf("collector %s: %w", c.spec.Name, err)
		}
		if v == starlark.None {
			return nil, nil
		}
		g, err := toGo(v)
		if err != nil {
			return nil, fmt.Errorf("collector %s: result: %w", c.spec.Name, err)
		}
		m, ok := g.(map[string]any)
		if !ok {
			return nil, fmt.Errorf("collector %s: must return a dict or None, got %s", c.spec.Name, v.Type())
		}
		return m, nil
	}}
}

// jsonish turns ints and nested maps into the shapes fromGo expects.
func jsonish(v any) any {
	switch v := v.(type) {
	case int:
		return float64(v)
	case map[string]any:
		out := map[string]any{}
		for k, x := range v {
			out[k] = jsonish(x)
		}
		return out
	}
	return v
}
