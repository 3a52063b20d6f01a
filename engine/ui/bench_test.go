package ui

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

var benchStore = flag.String("benchstore", "", "store directory for BenchmarkUIScale, built there once and reused (default: a new temporary one)")

const (
	scaleRuns    = 1000
	scaleMetrics = 10
	scaleSteps   = 1000
	longSteps    = 100000
)

// scaleStore builds (or reuses) a store of 1,000 runs × 10 metrics × 1,000
// steps plus one run with a 10⁵-point series, and returns the long run's id.
func scaleStore(b *testing.B, dir string) string {
	b.Helper()
	marker := filepath.Join(dir, "ui-bench-complete")
	if id, err := os.ReadFile(marker); err == nil {
		return string(id)
	}
	st, err := kv.Open(dir, kv.Options{})
	require.NoError(b, err)
	start := time.Now()
	for i := range scaleRuns {
		r := []int{4, 8, 16, 32}[i%4]
		spec := runs.Spec{Name: fmt.Sprintf("scale-%04d", i), Tags: []string{"scale", fmt.Sprintf("r%d", r)},
			LoRA:  &lora.Config{Rank: r, Alpha: float64(2 * r), Targets: []string{"q_proj", "v_proj"}},
			Train: train.Config{Steps: scaleSteps, BatchSize: 8, SeqLen: 128, LR: 1e-3 * float64(1+i%5), Seed: uint64(i)},
			Data:  runs.DataRef{Source: "opticks"}}
		cfg, err := json.Marshal(spec)
		require.NoError(b, err)
		final := 2 + math.Sin(float64(i))
		m := kv.RunMeta{ID: fmt.Sprintf("scale-%04d", i), Name: spec.Name, Tags: spec.Tags, Config: cfg, Seed: uint64(i),
			Status: kv.StatusDone, Steps: scaleSteps, FinalLoss: &final, Created: start.Add(time.Duration(i) * time.Second)}
		require.NoError(b, st.CreateRun(m))
		for step := 1; step <= scaleSteps; step++ {
			vals := make(map[string]float64, scaleMetrics)
			for k := range scaleMetrics {
				vals[fmt.Sprintf("m%d", k)] = final + 3*math.Exp(-float64(step)/200) + 0.01*math.Sin(float64(step*(k+1)))
			}
			require.NoError(b, st.AddMetrics(m.ID, step, vals))
		}
	}
	long := kv.RunMeta{ID: "scale-long", Name: "scale-long", Status: kv.StatusDone, Steps: longSteps, Created: start.Add(-time.Hour)}
	require.NoError(b, st.CreateRun(long))
	for step := 1; step <= longSteps; step++ {
		require.NoError(b, st.AddMetric(long.ID, "loss", step, 2+math.Exp(-float64(step)/20000)+0.05*math.Sin(float64(step)/7)))
	}
	require.NoError(b, st.Close())
	b.Logf("built the scale store in %v", time.Since(start))
	require.NoError(b, os.WriteFile(marker, []byte(long.ID), 0o644))
	return long.ID
}

// BenchmarkUIScale measures in Chromium, with performance.now(), how long the
// runs table of a 1,000-run store takes to become interactive after
// navigation, and how long a 10⁵-point series takes from request to drawn
// chart. Run: go test ./engine/ui -run '^$' -bench UIScale -benchtime 3x
// (add -args -benchstore DIR to keep the 10⁷-point store between runs).
func BenchmarkUIScale(b *testing.B) {
	chromium(b) // skip before building the store when there is no browser
	dir := *benchStore
	if dir == "" {
		dir = filepath.Join(b.TempDir(), "store")
	}
	longID := scaleStore(b, dir)
	ctx := browser(b, 1400, 1000)

	var table, tableStart, tableFetch, tableRender, chart, fetch, draw float64
	var rows, drawn int
	b.ResetTimer()
	for range b.N {
		// A new server each time: nothing cached, the store opened afresh.
		srv := New(Options{Store: dir})
		ts := httptest.NewServer(srv)
		navigateB(b, ctx, ts.URL+"/#/")
		table += js[float64](b, ctx, `lens.timings.find(t => t.what === "runs").at`)
		tableStart += js[float64](b, ctx, `lens.timings.find(t => t.what === "runs").start`)
		tableFetch += js[float64](b, ctx, `lens.timings.find(t => t.what === "runs").fetchMs`)
		tableRender += js[float64](b, ctx, `lens.timings.find(t => t.what === "runs").renderMs`)
		rows = js[int](b, ctx, `document.querySelectorAll("#runs tbody tr").length`)

		navigateB(b, ctx, ts.URL+"/#/run/"+longID)
		waitJS(b, ctx, `lens.timings.some(t => t.what === "chart" && t.name === "loss")`, time.Minute)
		f := js[float64](b, ctx, `lens.timings.find(t => t.what === "chart" && t.name === "loss").fetchMs`)
		d := js[float64](b, ctx, `lens.timings.find(t => t.what === "chart" && t.name === "loss").drawMs`)
		fetch, draw, chart = fetch+f, draw+d, chart+f+d
		drawn = js[int](b, ctx, `lens.series.loss.steps.length`)
		require.Equal(b, longSteps, js[int](b, ctx, `lens.series.loss.total`))
		require.NoError(b, chromedp.Do(ctx, chromedp.Navigate("about:blank")))
		ts.Close()
		srv.Close()
	}
	b.StopTimer()
	n := float64(b.N)
	require.Equal(b, scaleRuns+1, rows)
	b.ReportMetric(table/n, "ms-table-interactive")
	b.ReportMetric(tableStart/n, "ms-page-loaded")
	b.ReportMetric(tableFetch/n, "ms-table-fetch")
	b.ReportMetric(tableRender/n, "ms-table-render")
	b.ReportMetric(chart/n, "ms-1e5-series")
	b.ReportMetric(fetch/n, "ms-series-fetch")
	b.ReportMetric(draw/n, "ms-series-draw")
	b.ReportMetric(float64(drawn), "points-drawn")
}

func navigateB(b *testing.B, ctx context.Context, url string) {
	b.Helper()
	// Through a blank page, so that each view is a full page load.
	require.NoError(b, chromedp.Do(ctx, chromedp.Navigate("about:blank"), chromedp.Navigate(url)))
	waitJS(b, ctx, `window.lens && window.lens.ready === true`, time.Minute)
}
