package builtins

import (
	"os"
	"reflect"
	"slices"
	"sort"
	"strings"
	"testing"

	"go.starlark.net/starlark"

	"lens/engine/lora"
	"lens/engine/train"
)

// Every module member, builtin, parameter and value attribute has a
// declaration with a doc (a builtin added without one fails here).
func TestDeclarationsDocumented(t *testing.T) {
	if missing := Undocumented(Modules(nil)); len(missing) > 0 {
		t.Fatalf("undocumented:\n  %s", strings.Join(missing, "\n  "))
	}
}

// docs/API.md is what the declarations generate (regenerate it with
// `go generate ./builtins` or `lens help --markdown > docs/API.md`).
func TestAPIDocUpToDate(t *testing.T) {
	b, err := os.ReadFile("../docs/API.md")
	if err != nil {
		t.Fatal(err)
	}
	if got := Markdown(); string(b) != got {
		gl, wl := strings.Split(got, "\n"), strings.Split(string(b), "\n")
		for i := range min(len(gl), len(wl)) {
			if gl[i] != wl[i] {
				t.Fatalf("docs/API.md is stale (run go generate ./builtins); first difference at line %d:\n  file: %s\n  want: %s", i+1, wl[i], gl[i])
			}
		}
		t.Fatalf("docs/API.md is stale (run go generate ./builtins): %d lines, want %d", len(wl), len(gl))
	}
}

// lens.train and model.pretrain declare every train.Config field, with the
// default train.Defaults() applies.
func TestTrainParamsCoverConfig(t *testing.T) {
	d := reflect.ValueOf(train.Defaults())
	for _, fname := range []string{"lens.train", "model.pretrain"} {
		f := funcs[fname]
		for name := range jsonFields(reflect.TypeOf(train.Config{})) {
			p := f.param(name)
			if p == nil {
				t.Errorf("%s does not declare train.Config field %s", fname, name)
				continue
			}
			for i := range d.NumField() {
				tag, _, _ := strings.Cut(d.Type().Field(i).Tag.Get("json"), ",")
				if tag != name || name == "nan_policy" || name == "lr_backoff" || name == "max_bad_steps" {
					continue // not in Defaults(): the trainer applies them
				}
				if want := lit(d.Field(i).Interface()); p.Default != want {
					t.Errorf("%s: %s default %s, train.Defaults() has %s", fname, name, p.Default, want)
				}
			}
		}
	}
}

// A value's attributes are the declared ones, in both directions.
func TestTypeAttrsDeclared(t *testing.T) {
	for _, v := range []starlark.HasAttrs{&Run{}, &Model{}, &loraValue{}, &dataValue{}, &Tokenizer{}, &tbWriterValue{}, &wandbRunValue{}} {
		td, ok := types[v.Type()]
		if !ok {
			t.Errorf("type %s is not declared", v.Type())
			continue
		}
		var declared []string
		for _, a := range td.Attrs {
			declared = append(declared, a.Name)
		}
		have := append([]string(nil), v.AttrNames()...)
		sort.Strings(have)
		sort.Strings(declared)
		if !slices.Equal(have, declared) {
			t.Errorf("type %s: attributes %v, declared %v", v.Type(), have, declared)
		}
	}
}

// unpack fills omitted parameters from the declared defaults, converted
// as arguments are, and reports bad ones by name.
func TestUnpackDefaults(t *testing.T) {
	cases := []struct {
		src  string
		want string
	}{
		{`lora.config()`, `<lora r=8 alpha=8 targets=[q_proj v_proj] rslora=false>`},
		{`lora.config(r = 4)`, `<lora r=4 alpha=8 targets=[q_proj v_proj] rslora=false>`},
		{`lora.config(4, 16, 0.1, "o_proj", True)`, `<lora r=4 alpha=16 targets=[o_proj] rslora=true>`},
		{`data.opticks().eval_frac`, `0.05`},
		{`data.opticks(eval_frac = 0.25).eval_frac`, `0.25`},
		{`collect.activations()`, `<collector activations every=10>`},
		{`lens.sweep_backend()`, `"inline"`},
		{`lens.sweep_backend(None)`, `"inline"`},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			th := &starlark.Thread{Name: "test"}
			(&Env{}).Attach(th)
			v, err := starlark.Eval(th, "test", tc.src, Modules(nil))
			if err != nil {
				t.Fatal(err)
			}
			if v.String() != tc.want {
				t.Fatalf("%s = %s, want %s", tc.src, v, tc.want)
			}
		})
	}
	// The declared default of lora.config is lora.DefaultConfig().
	want := lora.DefaultConfig()
	th := &starlark.Thread{Name: "test"}
	v, err := starlark.Eval(th, "test", "lora.config()", Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	if got := v.(*loraValue).c; !reflect.DeepEqual(got, want) {
		t.Fatalf("lora.config() = %+v, lora.DefaultConfig() = %+v", got, want)
	}
}

// Wrong names, types and counts are errors naming the builtin and the
// argument, in starlark.UnpackArgs' words for declared and given() parsing.
func TestArgumentErrors(t *testing.T) {
	cases := []struct{ src, want string }{
		{`lora.config(rr = 4)`, `lora.config: unexpected keyword argument "rr"`},
		{`lens.train(bogus = 1)`, `lens.train: unexpected keyword argument "bogus"`},
		{`lens.train(model.tiny())`, `lens.train: takes keyword arguments only`},
		{`collect.adapter_weights(tensor = True)`, `collect.adapter_weights: unexpected keyword argument "tensor"`},
		{`collect.adapter_weights(every = 0)`, `for parameter "every": want a positive int`},
		{`data.opticks(eval_frac = "x")`, `data.opticks: for parameter "eval_frac": got string, want float`},
		{`report.table()`, `report.table: missing argument for rows`},
		{`model.new({}, seed = 1, bogus = 2)`, `model.new: unexpected keyword argument "bogus"`},
		// builtins' own messages quote a keyword's name as UnpackArgs does
		{`model.tiny(rr = 1)`, `model.tiny: unexpected keyword argument "rr"`},
		{`model.tiny(hidden_size = "x")`, `model.tiny: for parameter "hidden_size": got string, want int`},
		{`lora.config(targets = 3)`, `lora.config: for parameter "targets": want list of strings, got int`},
	}
	for _, tc := range cases {
		t.Run(tc.src, func(t *testing.T) {
			th := &starlark.Thread{Name: "test"}
			(&Env{}).Attach(th)
			_, err := starlark.Eval(th, "test", tc.src, Modules(nil))
			if err == nil || !strings.Contains(err.Error(), tc.want) {
				t.Fatalf("%s: error %v, want %q", tc.src, err, tc.want)
			}
		})
	}
}

// help text shows the signature with its defaults, each parameter's type
// and description, and a module's members.
func TestHelp(t *testing.T) {
	pre := Modules(nil)
	lens := pre["lens"].(starlark.HasAttrs)
	train, _ := lens.Attr("train")
	s, ok := Help(train)
	if !ok {
		t.Fatal("no help for lens.train")
	}
	for _, w := range []string{"lens.train(model, data, lora=None, steps=100, batch_size=8, seq_len=128", `schedule="cosine"`, "-> run", "steps", "int: optimizer steps"} {
		if !strings.Contains(s, w) {
			t.Errorf("help(lens.train) lacks %q:\n%s", w, s)
		}
	}
	s, ok = Help(pre["collect"])
	if !ok || !strings.Contains(s, "collect.activations(every=10, hooks=") {
		t.Errorf("help(collect):\n%s", s)
	}
	s, ok = Help(&Run{})
	if !ok || !strings.Contains(s, ".metrics(name) -> list of (int, float)") || !strings.Contains(s, ".final_loss: float or None") {
		t.Errorf("help(run):\n%s", s)
	}
	if _, ok := HelpTopic("run.records"); !ok {
		t.Error("no help topic run.records")
	}
	if _, ok := Help(starlark.String("x")); ok {
		t.Error("help of a string claimed")
	}
}
