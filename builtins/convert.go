package builtins

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"reflect"
	"sort"
	"strings"

	"go.starlark.net/starlark"
)

// toGo converts a Starlark value to plain Go data for JSON.
func toGo(v starlark.Value) (any, error) {
	switch v := v.(type) {
	case starlark.NoneType:
		return nil, nil
	case starlark.Bool:
		return bool(v), nil
	case starlark.Int:
		i, ok := v.Int64()
		if !ok {
			return nil, fmt.Errorf("integer %v is too large", v)
		}
		return i, nil
	case starlark.Float:
		return float64(v), nil
	case starlark.String:
		return string(v), nil
	case *starlark.List:
		out := make([]any, v.Len())
		for i := range v.Len() {
			x, err := toGo(v.Index(i))
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case starlark.Tuple:
		out := make([]any, len(v))
		for i, e := range v {
			x, err := toGo(e)
			if err != nil {
				return nil, err
			}
			out[i] = x
		}
		return out, nil
	case *starlark.Dict:
		out := map[string]any{}
		for _, kv := range v.Items() {
			k, ok := kv[0].(starlark.String)
			if !ok {
				return nil, fmt.Errorf("dict key %v is not a string", kv[0])
			}
			x, err := toGo(kv[1])
			if err != nil {
				return nil, err
			}
			out[string(k)] = x
		}
		return out, nil
	}
	return nil, fmt.Errorf("cannot convert %s to data", v.Type())
}

// fromGo converts JSON-shaped Go data to a Starlark value.
func fromGo(v any) starlark.Value {
	switch v := v.(type) {
	case nil:
		return starlark.None
	case bool:
		return starlark.Bool(v)
	case float64:
		if v == math.Trunc(v) && math.Abs(v) < 1<<53 {
			return starlark.MakeInt64(int64(v))
		}
		return starlark.Float(v)
	case json.Number:
		if i, err := v.Int64(); err == nil {
			return starlark.MakeInt64(i)
		}
		f, _ := v.Float64()
		return starlark.Float(f)
	case string:
		return starlark.String(v)
	case []any:
		l := make([]starlark.Value, len(v))
		for i, e := range v {
			l[i] = fromGo(e)
		}
		return starlark.NewList(l)
	case map[string]any:
		d := starlark.NewDict(len(v))
		keys := make([]string, 0, len(v))
		for k := range v {
			keys = append(keys, k)
		}
		sort.Strings(keys)
		for _, k := range keys {
			d.SetKey(starlark.String(k), fromGo(v[k]))
		}
		return d
	}
	return starlark.String(fmt.Sprint(v))
}

// jsonToStarlark decodes JSON into Starlark values, keeping integers whole.
func jsonToStarlark(b []byte) (starlark.Value, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var v any
	if err := dec.Decode(&v); err != nil {
		return nil, err
	}
	return fromGo(numbers(v)), nil
}

func numbers(v any) any {
	switch v := v.(type) {
	case []any:
		for i := range v {
			v[i] = numbers(v[i])
		}
	case map[string]any:
		for k := range v {
			v[k] = numbers(v[k])
		}
	}
	return v
}

// overlay decodes kwargs onto dst (a JSON-tagged struct), rejecting names
// dst does not have: the error names the argument.
func overlay(fn string, dst any, kwargs []starlark.Tuple) error {
	m := map[string]any{}
	for _, kv := range kwargs {
		k := string(kv[0].(starlark.String))
		v, err := toGo(kv[1])
		if err != nil {
			return fmt.Errorf("%s: for parameter %q: %w", fn, k, err)
		}
		m[k] = v
	}
	known := jsonFields(reflect.TypeOf(dst).Elem())
	for k, v := range m {
		if !known[k] {
			return fmt.Errorf("%s: unexpected keyword argument %q", fn, k)
		}
		if f, ok := v.(float64); ok && (math.IsNaN(f) || math.IsInf(f, 0)) {
			return fmt.Errorf("%s: for parameter %q = %v: must be a finite number", fn, k, f)
		}
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("%s: %w", fn, err)
	}
	if err := json.Unmarshal(b, dst); err != nil {
		var te *json.UnmarshalTypeError
		if ok := asType(err, &te); ok {
			return fmt.Errorf("%s: for parameter %q: got %s, want %s", fn, te.Field, te.Value, te.Type)
		}
		return fmt.Errorf("%s: %w", fn, err)
	}
	return nil
}

// jsonFields lists the JSON names of a struct's fields (omitempty ones
// included, which a marshalled zero value would hide).
func jsonFields(t reflect.Type) map[string]bool {
	out := map[string]bool{}
	for i := range t.NumField() {
		f := t.Field(i)
		if !f.IsExported() {
			continue
		}
		name, _, _ := strings.Cut(f.Tag.Get("json"), ",")
		switch name {
		case "-":
			continue
		case "":
			name = f.Name
		}
		out[name] = true
	}
	return out
}

func asType(err error, te **json.UnmarshalTypeError) bool {
	t, ok := err.(*json.UnmarshalTypeError)
	if ok {
		*te = t
	}
	return ok
}
