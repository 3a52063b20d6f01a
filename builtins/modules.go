package builtins

import (
	"fmt"
	"path/filepath"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"
	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
)

type builtinFn = func(*starlark.Thread, *starlark.Builtin, starlark.Tuple, []starlark.Tuple) (starlark.Value, error)

// module returns the declared module name (see api.go), checking that fns
// names the same members.
func module(name string, fns map[string]builtinFn) *starlarkstruct.Module {
	m := map[string]*starlarkstruct.Module{"hf": hfDeclared, "wandb": wandbDeclared}[name]
	if m == nil {
		panic("builtins: module " + name + " is not declared")
	}
	for k := range fns {
		if _, ok := m.Members[k]; !ok {
			panic("builtins: " + name + "." + k + " is not declared")
		}
	}
	return m
}

func modelTiny(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if _, err := decl(fn).given(args, kwargs); err != nil {
		return nil, err
	}
	seed, rest, err := popInt(kwargs, "seed")
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	c := model.Tiny()
	if err := overlay(fn.Name(), &c, rest); err != nil {
		return nil, err
	}
	c, err = model.ConfigFrom(c, nil) // model.New's defaults and checks
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return drawn(c, uint64(seed)), nil
}

func modelNew(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var cfg *starlark.Dict
	seed := 0
	if err := unpack(fn, args, kwargs, &cfg, &seed); err != nil {
		return nil, err
	}
	var c model.Config
	if err := overlay(fn.Name(), &c, cfg.Items()); err != nil {
		return nil, err
	}
	var keys []string
	for _, kv := range cfg.Items() {
		if k, ok := starlark.AsString(kv[0]); ok {
			keys = append(keys, k)
		}
	}
	c, err := model.ConfigFrom(c, keys)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	// Drawn when first needed, packed if that is for lens.train with
	// base_quant (see Model).
	return drawn(c, uint64(seed)), nil
}

func modelLoad(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var dir, quantize string
	if err := unpack(fn, args, kwargs, &dir, &quantize); err != nil {
		return nil, err
	}
	if env, err := envOf(t); err == nil {
		if _, err := env.readable(dir); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	// With quantize, each weight is packed as it is read (the float32
	// model never exists); the hash is the float32 weights' either way, and
	// the run rebuilds the same base from dir.
	m, hash, err := model.LoadQuantized(dir, quantize)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	// Runs record the directory to rebuild their base (and tokenizer) later,
	// from wherever they are resumed.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	ref := runs.BaseRef{Dir: dir, Hash: hash}
	tok, err := runs.Spec{Base: ref}.Tokenizer()
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if tok.VocabSize() > m.Config.VocabSize {
		return nil, fmt.Errorf("%s: %s: the tokenizer has %d tokens but config.json vocab_size is %d", fn.Name(), dir, tok.VocabSize(), m.Config.VocabSize)
	}
	return &Model{m: m, ref: ref}, nil
}

// trainArgs are the keyword arguments shared by lens.train and
// model.pretrain, mapped onto train.Config by JSON name.
func splitKwargs(kwargs []starlark.Tuple, names ...string) (picked map[string]starlark.Value, rest []starlark.Tuple) {
	picked = map[string]starlark.Value{}
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		found := false
		for _, n := range names {
			if k == n {
				picked[k] = kv[1]
				found = true
			}
		}
		if !found {
			rest = append(rest, kv)
		}
	}
	return picked, rest
}

func popInt(kwargs []starlark.Tuple, name string) (int, []starlark.Tuple, error) {
	picked, rest := splitKwargs(kwargs, name)
	v, ok := picked[name]
	if !ok {
		return 0, rest, nil
	}
	i, err := starlark.AsInt32(v)
	if err != nil {
		return 0, nil, fmt.Errorf("for parameter %q: want int, got %s", name, v.Type())
	}
	return i, rest, nil
}

func modelPretrain(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	if _, err := decl(fn).given(args, kwargs); err != nil {
		return nil, err
	}
	picked, rest := splitKwargs(kwargs, "config", "data", "name")
	ps := runs.PretrainSpec{Config: model.Tiny(), Data: runs.DataRef{Source: "opticks"}, Name: "pretrain"}
	if v, ok := picked["config"]; ok && v != starlark.None {
		d, ok := v.(*starlark.Dict)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"config\": want dict, got %s", fn.Name(), v.Type())
		}
		if err := overlay(fn.Name()+" config", &ps.Config, d.Items()); err != nil {
			return nil, err
		}
	}
	if v, ok := picked["data"]; ok && v != starlark.None {
		d, ok := v.(*dataValue)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"data\": want data, got %s", fn.Name(), v.Type())
		}
		ps.Data = d.ref
	}
	if v, ok := picked["name"]; ok {
		s, ok := starlark.AsString(v)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter \"name\": want string, got %s", fn.Name(), v.Type())
		}
		ps.Name = s
	}
	tc, err := trainConfig(fn, rest)
	if err != nil {
		return nil, err
	}
	ps.Seed = tc.Seed
	ps.Train = tc
	m, ref, cached, err := runs.Pretrain(ctxOf(t), st, ps, runs.Options{Progress: env.Progress, Logger: env.Logger})
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if cached {
		env.printf("model.pretrain: reusing the cached base model %s\n", ref.Blob)
	}
	return &Model{m: m, ref: ref}, nil
}

func loraConfig(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var c lora.Config
	var targets, alpha, dropout starlark.Value
	if err := unpack(fn, args, kwargs, &c.Rank, &alpha, &dropout, &targets, &c.RSLoRA); err != nil {
		return nil, err
	}
	for _, p := range []struct {
		name string
		v    starlark.Value
		dst  *float64
	}{{"alpha", alpha, &c.Alpha}, {"dropout", dropout, &c.Dropout}} {
		if p.v == starlark.None {
			continue
		}
		f, ok := starlark.AsFloat(p.v)
		if !ok {
			return nil, fmt.Errorf("%s: for parameter %q: got %s, want float", fn.Name(), p.name, p.v.Type())
		}
		*p.dst = f
	}
	switch tv := targets.(type) {
	case starlark.NoneType:
	case starlark.String:
		c.Targets = []string{string(tv)}
	case *starlark.List, starlark.Tuple:
		c.Targets = nil
		it := starlark.Iterate(tv)
		defer it.Done()
		var x starlark.Value
		for it.Next(&x) {
			s, ok := starlark.AsString(x)
			if !ok {
				return nil, fmt.Errorf("%s: for parameter \"targets\": want strings, got %s", fn.Name(), x.Type())
			}
			c.Targets = append(c.Targets, s)
		}
	default:
		return nil, fmt.Errorf("%s: for parameter \"targets\": want list of strings, got %s", fn.Name(), targets.Type())
	}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &loraValue{c}, nil
}

func dataBuiltin(source string) builtinFn {
	return func(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
		var frac float64
		if err := unpack(fn, args, kwargs, &frac); err != nil {
			return nil, err
		}
		return checkData(fn, runs.DataRef{Source: source, EvalFrac: frac})
	}
}

func dataText(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var path string
	var frac float64
	if err := unpack(fn, args, kwargs, &path, &frac); err != nil {
		return nil, err
	}
	if env, err := envOf(t); err == nil {
		if _, err := env.readable(path); err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
	}
	return checkData(fn, runs.DataRef{Source: path, EvalFrac: frac})
}

// checkData loads the corpus once, so a missing or unusable source fails
// at the line that names it.
func checkData(fn *starlark.Builtin, ref runs.DataRef) (starlark.Value, error) {
	if _, _, err := runs.LoadData(ref); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &dataValue{ref}, nil
}

func reportTable(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var rows *starlark.List
	var header starlark.Value
	var title string
	if err := unpack(fn, args, kwargs, &rows, &header, &title); err != nil {
		return nil, err
	}
	var hdr []string
	var data [][]string
	for i := range rows.Len() {
		row := rows.Index(i)
		switch r := row.(type) {
		case *starlark.Dict:
			if hdr == nil {
				for _, k := range r.Keys() {
					hdr = append(hdr, cellText(k))
				}
			}
			var cells []string
			for _, h := range hdr {
				v, _, _ := r.Get(starlark.String(h))
				cells = append(cells, cellText(v))
			}
			data = append(data, cells)
		case starlark.Indexable:
			var cells []string
			for j := range r.Len() {
				cells = append(cells, cellText(r.Index(j)))
			}
			data = append(data, cells)
		default:
			return nil, fmt.Errorf("%s: row %d: want list, tuple or dict, got %s", fn.Name(), i, row.Type())
		}
	}
	if hl, ok := header.(starlark.Indexable); ok {
		hdr = nil
		for j := range hl.Len() {
			hdr = append(hdr, cellText(hl.Index(j)))
		}
	}
	var sb strings.Builder
	if title != "" {
		sb.WriteString(title + "\n")
	}
	tw := tablewriter.NewTable(&sb, tablewriter.WithHeaderAutoFormat(tw.Off))
	if hdr != nil {
		tw.Header(hdr)
	}
	if err := tw.Bulk(data); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if err := tw.Render(); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	if env, err := envOf(t); err == nil {
		env.printf("%s", sb.String())
	}
	return starlark.String(sb.String()), nil
}

func cellText(v starlark.Value) string {
	switch v := v.(type) {
	case nil:
		return ""
	case starlark.String:
		return string(v)
	case starlark.Float:
		f := float64(v)
		if !finite(f) {
			return fmt.Sprint(f)
		}
		return fmt.Sprintf("%.4f", f)
	}
	return v.String()
}

// trainConfig reads train.Config fields from keyword arguments (the
// engine checks their ranges). Zero means "default" inside train.Config,
// so a zero given explicitly for a field that must be positive is an
// error here, naming the argument.
func trainConfig(fn *starlark.Builtin, kwargs []starlark.Tuple) (train.Config, error) {
	var tc train.Config
	if err := overlay(fn.Name(), &tc, kwargs); err != nil {
		return tc, err
	}
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		switch k {
		case "steps", "batch_size", "seq_len", "grad_accum", "lr", "loraplus_ratio", "eps":
			if f, ok := starlark.AsFloat(kv[1]); ok && f <= 0 {
				return tc, fmt.Errorf("%s: train field %s = %v: must be positive", fn.Name(), k, kv[1])
			}
		}
	}
	return tc, nil
}
