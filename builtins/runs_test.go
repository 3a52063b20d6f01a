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
