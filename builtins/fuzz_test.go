package builtins

import (
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"
)

// FuzzTrainArgs feeds arbitrary Starlark dict literals through the
// conversions lens.train, lora.config and model.tiny apply to their
// keyword arguments. None may panic; an error must name the builtin; a
// converted train config that the engine refuses (runs.NewSpec validates)
// is refused naming the field. Seeds: testdata/fuzz.
func FuzzTrainArgs(f *testing.F) {
	for _, s := range []string{
		`{"steps": 10, "lr": 1e-3}`,
		`{"steps": -1}`,
		`{"lr": float("nan")}`,
		`{"schedule": "cosine", "warmup": 3, "nan_policy": "rollback", "lr_backoff": 0.5}`,
		`{"batch_size": 1 << 70}`,
		`{"seq_len": "long"}`,
		`{"r": 0, "alpha": 8.0, "targets": ["q_proj", 3]}`,
		`{"hidden_size": 33, "num_attention_heads": 4}`,
		`{"eval_every": None, "full": True}`,
		`{"steps": [1, 2], "clip_norm": {"a": 1}}`,
	} {
		f.Add(s)
	}
	lc := loraModule.Members["config"].(*starlark.Builtin)
	tiny := modelModule.Members["tiny"].(*starlark.Builtin)
	train := starlark.NewBuiltin("lens.train", nil)
	f.Fuzz(func(t *testing.T, src string) {
		th := &starlark.Thread{Name: "fuzz"}
		th.SetMaxExecutionSteps(10000)
		v, err := starlark.EvalOptions(&syntax.FileOptions{}, th, "fuzz", src, nil)
		if err != nil {
			return
		}
		d, ok := v.(*starlark.Dict)
		if !ok {
			return
		}
		var kwargs []starlark.Tuple
		for _, kv := range d.Items() {
			if _, ok := kv[0].(starlark.String); !ok {
				return
			}
			kwargs = append(kwargs, starlark.Tuple{kv[0], kv[1]})
		}
		tc, err := trainConfig(train, kwargs)
		if err != nil {
			if !strings.HasPrefix(err.Error(), "lens.train") && !strings.HasPrefix(err.Error(), "train field") {
				t.Fatalf("error does not name the builtin or field: %v", err)
			}
		} else if err := tc.WithDefaults().Validate(); err != nil && !strings.HasPrefix(err.Error(), "train field") {
			t.Fatalf("the engine refuses a config without naming the field: %v", err)
		}
		calls := []*starlark.Builtin{lc}
		if small(kwargs) {
			calls = append(calls, tiny) // a valid big config would really allocate it
		}
		for _, b := range calls {
			_, err := starlark.Call(th, b, nil, kwargs)
			if err != nil && !strings.Contains(err.Error(), b.Name()) {
				t.Fatalf("%s: error does not name the builtin: %v", b.Name(), err)
			}
		}
	})
}

// small says whether every integer argument is at most 256.
func small(kwargs []starlark.Tuple) bool {
	for _, kv := range kwargs {
		if i, ok := kv[1].(starlark.Int); ok {
			if n, ok := i.Int64(); !ok || n > 256 {
				return false
			}
		}
	}
	return true
}
