package main

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

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

// TestStandardReportInChromium opens a diagnostic report in headless
// Chromium and checks that every chart rendered with non-empty series.
func TestStandardReportInChromium(t *testing.T) {
	bin := ""
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			bin = p
			break
		}
	}
	if bin == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("chromium missing in CI (apt-get install chromium)")
		}
		t.Skip("chromium not installed (apt-get install -y --no-install-recommends chromium)")
	}
	script := tinyScript + `
r = train(name = "shot", steps = 12, collect = [collect.adapter_weights(every = 3), collect.adapter_grads(every = 1),
    collect.lora_activations(every = 3), collect.activations(every = 3, hooks = ["blocks.*.hook_resid_post"])])
report.standard(r, kind = "diagnostic", html = "report.html")
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	_, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	args := []string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
		"--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir=" + t.TempDir(), "--dump-dom", "file://" + filepath.Join(dir, "report.html")}
	dom, err := exec.CommandContext(ctx, bin, args...).Output()
	require.NoError(t, err)
	charts := regexp.MustCompile(`<svg[^>]*class="chart"[^>]*data-title="([^"]*)"`).FindAllStringSubmatch(string(dom), -1)
	require.GreaterOrEqual(t, len(charts), 7, "loss, grad norm, lr, effective rank, spectra, activations, LoRA ratio")
	// Every chart's SVG holds at least one series path with data.
	parts := strings.Split(string(dom), `class="chart"`)[1:]
	for i, p := range parts {
		end := strings.Index(p, "</svg>")
		require.Positive(t, end)
		require.Regexp(t, `class="series"[^>]* d="M[^"]+"|d="M[^"]+"[^>]*class="series"`, p[:end], "chart %q has no drawn series", charts[i][1])
	}
}
