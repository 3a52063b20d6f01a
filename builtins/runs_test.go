package builtins

import (
	"bytes"
	"path/filepath"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/kv"
)

// lens.runs: oldest first by default (as the README says), order_by and
// where over the records read once, a running run's live progress.
func TestRunsOrderAndProgress(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), ".lens"), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	loss := []float64{0.9, 0.3, 0.6}
	for i, name := range []string{"a", "b", "c"} {
		m := kv.RunMeta{ID: st.NewRunID(), Name: name, Status: kv.StatusDone, FinalLoss: &loss[i], Steps: 10}
		if err := st.CreateRun(m); err != nil {
			t.Fatal(err)
		}
	}
	live := kv.RunMeta{ID: st.NewRunID(), Name: "live"}
	if err := st.CreateRun(live); err != nil {
		t.Fatal(err)
	}
	if err := st.SetProgress(live.ID, kv.Progress{Step: 300, Loss: 1.5}); err != nil {
		t.Fatal(err)
	}
	src := `
names = [r.name for r in lens.runs()]
best = [r.name for r in lens.runs(where = lambda r: r.final_loss != None and r.final_loss < 0.8, order_by = "final_loss", limit = 10)]
by_loss = [r.name for r in lens.runs(order_by = "final_loss")]
live = lens.run("live")
live_steps = live.steps
`
	th := &starlark.Thread{Name: "test"}
	(&Env{Store: st, Out: &bytes.Buffer{}}).Attach(th)
	g, err := starlark.ExecFileOptions(&syntax.FileOptions{}, th, "runs_test.star", src, Modules(nil))
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct{ global, want string }{
		{"names", `["a", "b", "c", "live"]`},
		{"best", `["b", "c"]`},
		{"by_loss", `["b", "c", "a", "live"]`},
		{"live_steps", "300"},
	} {
		if got := g[c.global].String(); got != c.want {
			t.Errorf("%s = %s, want %s", c.global, got, c.want)
		}
	}
	// A running run's value follows its progress.
	if err := st.SetProgress(live.ID, kv.Progress{Step: 301, Loss: 1.4}); err != nil {
		t.Fatal(err)
	}
	v, err := g["live"].(*Run).Attr("steps")
	if err != nil || v.String() != "301" {
		t.Errorf("live.steps after progress = %v, %v; want 301", v, err)
	}
}

// lens.runs builds runs from the summary index; a field the summary lacks
// (config) reads the run's record once, and equals what lens.run gives.
func TestRunsFromSummaries(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), ".lens"), kv.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer st.Close()
	for i, cfg := range []string{`{"lora":{"r":8,"alpha":16},"train":{"steps":100,"lr":0.001}}`, `{"lora":{"r":16,"alpha":32},"train":{"steps":200,"lr":0.0002}}`} {
		loss := 0.5 + float64(i)
		m := kv.RunMeta{ID: st.NewRunID(), Name: "s", Status: kv.StatusDone, FinalLoss: &loss, Tags: []string{"sweep"}, Config: []byte(cfg)}
		if err := st.CreateRun(m); err != nil {
			t.Fatal(err)
		}
	}
	th := &starlark.Thread{Name: "test"}
	(&Env{Store: st, Out: &bytes.Buffer{}}).Attach(th)
	exec := func(src string, predecl starlark.StringDict) starlark.StringDict {
		t.Helper()
		g, err := starlark.ExecFileOptions(&syntax.FileOptions{}, th, "runs_test.star", src, predecl)
		if err != nil {
			t.Fatal(err)
		}
		return g
	}
	partial := func(l starlark.Value) []bool {
		var out []bool
		for i := range l.(*starlark.List).Len() {
			out = append(out, l.(*starlark.List).Index(i).(*Run).partial)
		}
		return out
	}
	g := exec(`listed = lens.runs(tag = "sweep")
names = [(r.name, r.status, r.final_loss, r.tags) for r in listed]
`, Modules(nil))
	listed := g["listed"]
	if got := partial(listed); len(got) != 2 || !got[0] || !got[1] {
		t.Errorf("after reading summary fields, partial = %v; want [true true]", got)
	}
	if got := g["names"].String(); got != `[("s", "done", 0.5, ["sweep"]), ("s", "done", 1.5, ["sweep"])]` {
		t.Errorf("names = %s", got)
	}
	predecl := Modules(nil)
	predecl["listed"] = listed
	g = exec(`rs = [r.config["r"] for r in lens.runs(where = lambda r: r.config["lr"] < 0.01, order_by = "final_loss")]
same = [r.config == lens.run(r.id).config for r in listed]
`, predecl)
	if got := partial(listed); got[0] || got[1] {
		t.Errorf("after reading config, partial = %v; want [false false]", got)
	}
	for _, c := range []struct{ global, want string }{
		{"rs", `[8, 16]`},
		{"same", `[True, True]`},
	} {
		if got := g[c.global].String(); got != c.want {
			t.Errorf("%s = %s, want %s", c.global, got, c.want)
		}
	}
}
