package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/runs"
)

// SinkValue is a Starlark value that mirrors a run somewhere while it
// trains (tb.writer, wandb.run); lens.train(log_to=[...]) takes them.
type SinkValue interface {
	starlark.Value
	Sink() (runs.Sink, error)
}

// sinksArg converts a log_to= argument: one sink or a list of them.
func sinksArg(fn *starlark.Builtin, v starlark.Value) ([]runs.Sink, error) {
	var items []starlark.Value
	switch x := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case *starlark.List:
		for i := range x.Len() {
			items = append(items, x.Index(i))
		}
	default:
		items = []starlark.Value{v}
	}
	var out []runs.Sink
	for i, it := range items {
		sv, ok := it.(SinkValue)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"log_to\": item %d is %s, want tb.writer(...) or wandb.run(...)", fn.Name(), i, it.Type())
		}
		s, err := sv.Sink()
		if err != nil {
			return nil, fmt.Errorf("%s: for parameter \"log_to\": %w", fn.Name(), err)
		}
		out = append(out, s)
	}
	return out, nil
}

// orNone is v, or None when v is nil (an argument not given).
func orNone(v starlark.Value) starlark.Value {
	if v == nil {
		return starlark.None
	}
	return v
}
