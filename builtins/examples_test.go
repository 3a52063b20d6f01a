package builtins

import (
	"bytes"
	"context"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"
	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/engine/runs"
	"lens/kv"
)

// runWithStore runs src with a store-backed Env, as lens run does.
func runWithStore(t *testing.T, st *kv.Store, src string, globals starlark.StringDict) (starlark.StringDict, error) {
	t.Helper()
	pre := Modules(nil)
	for k, v := range globals {
		pre[k] = v
	}
	th := &starlark.Thread{Name: "test"}
	(&Env{Store: st, Out: &bytes.Buffer{}}).Attach(th)
	return starlark.ExecFileOptions(&syntax.FileOptions{}, th, "examples_test.star", src, pre)
}

// revLines are n JSONL examples whose answer is the question's word reversed.
func revLines(n int) string {
	var b strings.Builder
	for i := range n {
		w := []byte(fmt.Sprintf("%c%c%c%c", 'a'+i%6, 'a'+(i/6)%6, 'a'+(i/3)%5, 'a'+i%4))
		r := []byte{w[3], w[2], w[1], w[0]}
		fmt.Fprintf(&b, `{"question": "reverse %s:", "answer": " %s."}`+"\n", w, r)
	}
	return b.String()
}

// TestExampleData trains through lens.train on a JSONL file and on
// examples built in the script and reshaped by format=, and resumes the
// latter from its record alone.
func TestExampleData(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	dir := t.TempDir()
	path := filepath.Join(dir, "rev.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(revLines(60)), 0o644))
	out, err := runWithStore(t, st, `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
d = data.jsonl(path, prompt = "question", completion = "answer", eval_frac = 0.1)
r = lens.train(model = base, data = d, full = True, steps = 40, batch_size = 4, seq_len = 32, lr = 1e-2, eval_every = 20)
before, after, names = r.eval_loss(step = 0), r.final_loss, r.metric_names

def fmt(row):
    return {"prompt": "Q: " + row["q"] + "\n", "completion": "A: " + row["a"]}
rows = [{"q": "colour of %d" % i, "a": ["red", "green", "blue"][i % 3]} for i in range(24)]
e = data.examples(rows, format = fmt, eval = rows[:4], max_len = 30, truncation = "left")
r2 = lens.train(model = base, data = e, lora = lora.config(r = 4, alpha = 8), steps = 8, batch_size = 2, seq_len = 32, lr = 1e-2, eval_every = 4, checkpoint_every = 4)
id2 = r2.id
`, starlark.StringDict{"path": starlark.String(path)})
	require.NoError(t, err)
	before, after := float64(out["before"].(starlark.Float)), float64(out["after"].(starlark.Float))
	t.Logf("held-out completion loss %.3f -> %.3f", before, after)
	require.Less(t, after, 0.75*before)
	require.Contains(t, out["names"].String(), `"eval/rev.jsonl"`)

	// The reshaped examples are in the record: a resume needs neither the
	// script nor its function. Drop the last checkpoint, resume, and the
	// run ends with the same metrics.
	id := string(out["id2"].(starlark.String))
	meta, err := st.GetRun(id)
	require.NoError(t, err)
	spec, err := runs.SpecOf(meta)
	require.NoError(t, err)
	require.Len(t, spec.Data.Examples.Inline, 24)
	require.Equal(t, "Q: colour of 5\n", spec.Data.Examples.Inline[5].Prompt)
	require.Len(t, spec.Data.Examples.EvalInline, 4)
	want := map[string][]kv.Point{}
	for _, name := range []string{"loss", "eval/examples"} {
		want[name], err = st.ReadMetric(id, name)
		require.NoError(t, err)
		require.NotEmpty(t, want[name], name)
	}
	require.NoError(t, st.DeleteCheckpoint(id, 8))
	_, err = runs.Resume(context.Background(), st, id, runs.Options{})
	require.NoError(t, err)
	for name, w := range want {
		got, err := st.ReadMetric(id, name)
		require.NoError(t, err)
		require.Equal(t, w, got, name)
	}
}

type chatRow struct {
	Conv []struct {
		Role    string `parquet:"role"`
		Content string `parquet:"content"`
	} `parquet:"conv,list"`
}

func TestExampleDataErrors(t *testing.T) {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	dir := t.TempDir()
	bad := filepath.Join(dir, "bad.jsonl")
	require.NoError(t, os.WriteFile(bad, []byte(`{"text": "a"}`+"\n"+`{"text": 1}`+"\n"), 0o644))
	good := filepath.Join(dir, "good.jsonl")
	require.NoError(t, os.WriteFile(good, []byte(revLines(10)), 0o644))
	var rows []chatRow
	for range 3 {
		var r chatRow
		r.Conv = append(r.Conv, struct {
			Role    string `parquet:"role"`
			Content string `parquet:"content"`
		}{"user", "hi"}, struct {
			Role    string `parquet:"role"`
			Content string `parquet:"content"`
		}{"assistant", "hello"})
		rows = append(rows, r)
	}
	var buf bytes.Buffer
	require.NoError(t, parquet.Write(&buf, rows))
	pq := filepath.Join(dir, "chat.parquet")
	require.NoError(t, os.WriteFile(pq, buf.Bytes(), 0o644))

	out, err := runWithStore(t, st, `p = data.parquet(path, messages = "conv")
src = p.source`, starlark.StringDict{"path": starlark.String(pq)})
	require.NoError(t, err)
	require.Equal(t, pq, string(out["src"].(starlark.String)))

	for _, tc := range []struct{ src, want string }{
		{`data.jsonl(bad)`, bad + ` line 2: field "text": want a string`},
		{`data.jsonl(good, prompt = "instruction")`, good + ` line 1: missing field "instruction"`},
		{`data.jsonl(good, train_on = "prompt")`, `train_on = "prompt"`},
		{`data.jsonl(good, truncation = "middle")`, `truncation = "middle"`},
		{`data.parquet(pq, prompt = "q")`, `no column "q"`},
		{`data.examples([{"text": "a"}, {"txt": "b"}])`, `examples example 1: missing field "text"`},
		{`data.examples([{"x": 1}], format = lambda r: [r])`, `examples example 0: format: want a dict, got list`},
		{`data.examples([])`, `no examples`},
		{`data.jsonl(good, eval = 3)`, `for parameter "eval": want a file path`},
		{`lens.train(model = model.tiny(), data = data.jsonl(good, prompt = "question", completion = "answer", max_len = 500), steps = 1)`, `max_len = 500`},
	} {
		_, err := runWithStore(t, st, tc.src, starlark.StringDict{"bad": starlark.String(bad), "good": starlark.String(good), "pq": starlark.String(pq)})
		require.ErrorContains(t, err, tc.want, tc.src)
	}
}
