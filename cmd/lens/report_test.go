package main

import (
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/kv"
)

// TestScriptCollectorAnalyzerAndReport: a collector and an analyzer
// written in Starlark run beside the built-in ones; their output lands in
// the store and in the report, and the HTML report has every chart.
func TestScriptCollectorAnalyzerAndReport(t *testing.T) {
	script := tinyScript + `
def ratio(view):
    m = view["modules"]["model.layers.0.self_attn.q_proj"]
    return {"b_over_a": m["norm_b"] / m["norm_a"], "loss": view["loss"]}

def summary(run):
    pts = run.metrics("loss")
    return {"first": pts[0][1], "last": pts[-1][1], "findings": ["loss went from %f to %f" % (pts[0][1], pts[-1][1])]}

lens.analyzer("loss_summary", summary)
r = train(name = "rep", steps = 8, collect = [
    collect.adapter_weights(every = 2), collect.adapter_grads(every = 1),
    collect.lora_activations(every = 4), collect.activations(every = 4, hooks = ["blocks.*.hook_resid_post"]),
    lens.collector("ab_ratio", ratio, every = 2),
])
res = analyze.run("loss_summary", r)
print("ANALYZER", res["values"]["last"] < res["values"]["first"])
print("GRADIENT", analyze.run("gradient", r)["findings"][0])
report.standard(r, kind = "diagnostic", html = "report.html")
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	out, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "ANALYZER True")
	require.Contains(t, out, "GRADIENT ")
	require.Contains(t, out, "loss_summary (script)")
	require.Contains(t, out, "loss went from")
	html, err := os.ReadFile(filepath.Join(dir, "report.html"))
	require.NoError(t, err)
	for _, title := range []string{"Loss", "Gradient norm", "Effective rank of ΔW per layer", "Singular values of ΔW", "Activation norms", "LoRA contribution"} {
		require.Contains(t, string(html), `data-title="`+title, title)
	}
	require.NotContains(t, string(html), `class="series" d=""`)

	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	m, err := st.FindRun("rep")
	require.NoError(t, err)
	recs, err := collect.Read[map[string]float64](st, m.ID, "ab_ratio")
	require.NoError(t, err)
	require.Len(t, recs, 4)
	require.Greater(t, recs[3].Value["b_over_a"], 0.0)
	st.Close()

	// The CLI report of the same run, and a comparison.
	out, stderr, code = lens(t, dir, "report", "rep", "--kind", "technical", "--html", "cli.html")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "Findings")
	require.True(t, strings.Contains(out, "best checkpoint"), out)
	_, stderr, code = lens(t, dir, "report", "rep", "--kind", "bogus")
	require.Equal(t, 2, code)
	require.Contains(t, stderr, "report kind")
}
