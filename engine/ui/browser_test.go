package ui

import (
	"context"
	"flag"
	"fmt"
	"math"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/chromedp/chromedp"
	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"lens/kv"
)

var screenshots = flag.String("screenshots", "", "directory to write a PNG of each view into (the README's images: -screenshots ../../docs)")

// chromium returns the path of a Chromium binary. Without one the test is
// skipped, unless the environment variable CI is set, where that is a failure.
func chromium(t testing.TB) string {
	t.Helper()
	for _, name := range []string{"chromium", "chromium-browser"} {
		if p, err := exec.LookPath(name); err == nil {
			return p
		}
	}
	const hint = "chromium not found in PATH (on Debian: apt-get install -y --no-install-recommends chromium)"
	if os.Getenv("CI") != "" {
		t.Fatal(hint + "; CI is set, so the browser check is required")
	}
	t.Skip(hint + "; skipping the browser test (set CI=1 to make this a failure)")
	return ""
}

// browser starts a headless Chromium with a throwaway profile and no
// network chatter, and returns a context for chromedp actions.
func browser(t testing.TB, width, height int) context.Context {
	t.Helper()
	bin := chromium(t)
	opts := []chromedp.ExecAllocatorOption{
		chromedp.ExecPath(bin), chromedp.Headless, chromedp.NoSandbox, chromedp.DisableGPU, chromedp.NoFirstRun,
		chromedp.Flag("disable-quic", true), chromedp.Flag("disable-background-networking", true),
		chromedp.Flag("disable-component-update", true), chromedp.Flag("disable-sync", true),
		chromedp.UserDataDir(t.TempDir()), chromedp.WindowSize(width, height),
	}
	actx, cancel := chromedp.NewExecAllocator(context.Background(), opts...)
	t.Cleanup(cancel)
	ctx, cancel2 := chromedp.NewContext(actx)
	t.Cleanup(cancel2)
	require.NoError(t, chromedp.Do(ctx)) // start the browser now, without a timeout on this first call
	return ctx
}

// waitJS polls a JavaScript expression until it is true.
func waitJS(t testing.TB, ctx context.Context, expr string, within time.Duration) {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		ok, err := chromedp.Run(ctx, chromedp.Evaluate[bool](expr))
		if err == nil && ok {
			return
		}
		if time.Now().After(deadline) {
			errText, _ := chromedp.Run(ctx, chromedp.Evaluate[string](`String(window.lens && window.lens.error || "")`))
			t.Fatalf("%s not true within %v (err %v, page error %q)", expr, within, err, errText)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func js[T any](t testing.TB, ctx context.Context, expr string) T {
	t.Helper()
	v, err := chromedp.Run(ctx, chromedp.Evaluate[T](expr))
	require.NoError(t, err, expr)
	return v
}

func shot(t *testing.T, ctx context.Context, name string, full bool) {
	if *screenshots == "" {
		return
	}
	require.NoError(t, chromedp.Do(ctx, chromedp.Sleep(300*time.Millisecond)))
	capture := chromedp.CaptureScreenshot()
	if full {
		capture = chromedp.FullScreenshot(100) // the whole page, as PNG
	}
	png, err := chromedp.Run(ctx, capture)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(*screenshots, name), png, 0o644))
}

// navigate goes to a view and waits until it has drawn.
func navigate(t *testing.T, ctx context.Context, url string) {
	t.Helper()
	require.NoError(t, chromedp.Do(ctx, chromedp.Navigate(url)))
	waitJS(t, ctx, `window.lens && window.lens.ready === true`, 30*time.Second)
}

// TestBrowser drives a real Chromium against the UI over a store with two
// finished runs and one run training in another process.
func TestBrowser(t *testing.T) {
	ctx := browser(t, 1400, 1000)
	dir, ids := finishedRuns(t)
	makeSweep(t, dir, ids)
	live := startTrainer(t, dir)
	srv := New(Options{Store: dir})
	ts := httptest.NewServer(srv)
	defer func() { ts.Close(); srv.Close() }()

	// What the store says (a snapshot from the training process).
	st, err := kv.Open(dir, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	require.True(t, st.Snapshot(), "the trainer holds the store")
	metas := map[string]kv.RunMeta{}
	for _, id := range append(ids, live) {
		m, err := st.GetRun(id)
		require.NoError(t, err)
		metas[id] = m
	}
	losses := map[string][]kv.Point{}
	for _, id := range ids {
		losses[id], err = st.ReadMetric(id, "loss")
		require.NoError(t, err)
	}
	require.NoError(t, st.Close())

	t.Run("runs table", func(t *testing.T) {
		navigate(t, ctx, ts.URL+"/#/")
		assert.ElementsMatch(t, []string{ids[0], ids[1], live}, js[[]string](t, ctx, `lens.shown`))
		status := js[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-id="%s"] td.status-running').textContent`, live))
		assert.Equal(t, "running", status)

		// A config field as a column, and two runs selected for compare.
		js[bool](t, ctx, `(s => (s.value = "r", s.dispatchEvent(new Event("change"))))(document.getElementById("addcol"))`)
		waitJS(t, ctx, `document.querySelectorAll('th[data-key="config.r"]').length === 1`, 15*time.Second)
		assert.Equal(t, "8", js[string](t, ctx, fmt.Sprintf(`document.querySelector('tr[data-id="%s"] td:last-child').textContent`, ids[1])))
		for _, id := range ids {
			require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(fmt.Sprintf(`input[data-sel="%s"]`, id)))))
		}
		assert.False(t, js[bool](t, ctx, `document.getElementById("compare-btn").disabled`))
		shot(t, ctx, "ui-runs.png", false)
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th span[data-remove="r"]`))))
		waitJS(t, ctx, `document.querySelectorAll('th[data-key="config.r"]').length === 0`, 15*time.Second)

		// Text filter.
		require.NoError(t, chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#q"), "ui-r8")))
		waitJS(t, ctx, `lens.shown.length === 1`, 2*time.Second)
		assert.Equal(t, []string{ids[1]}, js[[]string](t, ctx, `lens.shown`))
		js[bool](t, ctx, `(q => (q.value = "", q.dispatchEvent(new Event("input"))))(document.getElementById("q"))`)
		waitJS(t, ctx, `lens.shown.length === 3`, 2*time.Second)

		// Sort by final loss, ascending then descending; the running run
		// has none and stays last.
		lo, hi := ids[0], ids[1]
		if *metas[hi].FinalLoss < *metas[lo].FinalLoss {
			lo, hi = hi, lo
		}
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th[data-key="final_loss"]`))))
		assert.Equal(t, []string{lo, hi, live}, js[[]string](t, ctx, `lens.shown`))
		require.NoError(t, chromedp.Do(ctx, chromedp.Click(chromedp.CSS(`th[data-key="final_loss"]`))))
		assert.Equal(t, []string{hi, lo, live}, js[[]string](t, ctx, `lens.shown`))

		// An expression, evaluated by the server.
		require.NoError(t, chromedp.Do(ctx, chromedp.SendKeys(chromedp.CSS("#where"), `config.r == 4 and status == "done"`+"\r")))
		waitJS(t, ctx, `lens.shown.length === 1`, 15*time.Second)
		assert.Equal(t, []string{ids[0]}, js[[]string](t, ctx, `lens.shown`))
		js[bool](t, ctx, `(w => (w.value = "final_loss <", w.dispatchEvent(new KeyboardEvent("keydown", {key: "Enter"}))))(document.getElementById("where"))`)
		waitJS(t, ctx, `document.getElementById("where-err").textContent.includes("filter")`, 15*time.Second)
	})

	t.Run("run page", func(t *testing.T) {
		navigate(t, ctx, ts.URL+"/#/run/"+ids[0])
		waitJS(t, ctx, `lens.series.loss !== undefined && document.querySelector('[data-metric="loss"] canvas') !== null`, 5*time.Second)
		steps := js[[]int](t, ctx, `lens.series.loss.steps`)
		values := js[[]float64](t, ctx, `lens.series.loss.values`)
		want := losses[ids[0]]
		require.Len(t, steps, len(want))
		for i, p := range want {
			assert.Equal(t, p.Step, steps[i])
			assert.Equal(t, p.Value, values[i], "step %d", p.Step)
		}
		assert.Equal(t, 1, js[int](t, ctx, `document.querySelectorAll("#ckpt-table tr.best").length`))

		// Wheel over the loss chart zooms in around the cursor and refetches
		// that range; double-click zooms back out.
		js[bool](t, ctx, `(o => o.dispatchEvent(new WheelEvent("wheel", {deltaY: -100, clientX: o.getBoundingClientRect().left + o.clientWidth / 2,
			clientY: o.getBoundingClientRect().top + 10, bubbles: true, cancelable: true})))(document.querySelector('[data-metric="loss"] .u-over'))`)
		waitJS(t, ctx, `lens.charts.loss.fetchedRange != null`, 10*time.Second)
		zr := js[[]float64](t, ctx, `lens.charts.loss.fetchedRange`)
		assert.Greater(t, zr[0], 1.0)
		assert.Less(t, zr[1], 30.0)
		zs := js[[]int](t, ctx, `lens.charts.loss.spec.series[0].steps`)
		assert.Less(t, len(zs), len(want))
		for i, s := range zs[1 : len(zs)-1] { // the ends are the neighbours outside the range
			assert.True(t, float64(s) >= zr[0]-1 && float64(s) <= zr[1]+1, "step %d (%d) outside %v", s, i, zr)
		}
		js[bool](t, ctx, `document.querySelector('[data-metric="loss"] .u-over').dispatchEvent(new MouseEvent("dblclick", {bubbles: true}))`)
		waitJS(t, ctx, `lens.charts.loss.zoomed === null && lens.charts.loss.spec.series[0].steps.length === `+fmt.Sprint(len(want)), 10*time.Second)
		waitJS(t, ctx, `document.querySelectorAll("#collect canvas").length > 4 && lens.data.findings !== undefined`, 30*time.Second)
		shot(t, ctx, "ui-run.png", true)
	})

	t.Run("compare", func(t *testing.T) {
		navigate(t, ctx, ts.URL+"/#/compare/"+ids[0]+","+ids[1])
		// uPlot's legend: the x series and one per run.
		assert.Equal(t, 3, js[int](t, ctx, `document.querySelectorAll("#cmp-chart .u-legend .u-series").length`))
		for i, id := range ids {
			values := js[[]float64](t, ctx, fmt.Sprintf(`lens.data.compare.series[%d].values`, i))
			require.Len(t, values, len(losses[id]))
			for j, p := range losses[id] {
				assert.Equal(t, p.Value, values[j])
			}
		}
		diff := js[[]string](t, ctx, `lens.data.compare.diff.map(d => d.field)`)
		assert.Contains(t, diff, "r")
		assert.Contains(t, diff, "seed")
		assert.Equal(t, 2, js[int](t, ctx, `document.querySelectorAll("#phi canvas").length`))
		shot(t, ctx, "ui-compare.png", false)
	})

	t.Run("sweeps", func(t *testing.T) {
		navigate(t, ctx, ts.URL+"/#/sweeps")
		assert.Equal(t, 3, js[int](t, ctx, `document.querySelectorAll('section[data-sweep="grid"] tr td.num').length / 3`))
		assert.Equal(t, 1, js[int](t, ctx, `document.querySelectorAll('section[data-sweep="grid"] tr.best').length`))
		assert.Contains(t, js[string](t, ctx, `document.querySelector('section[data-sweep="grid"] tr.best').textContent`), "grid/r=4")
		shot(t, ctx, "ui-sweeps.png", false)
	})

	t.Run("token", func(t *testing.T) {
		const token = "b1f0c2d3e4a5968778695a4b3c2d1e0f"
		tsrv := New(Options{Store: dir, Token: token})
		tts := httptest.NewServer(tsrv)
		defer func() { tts.Close(); tsrv.Close() }()
		// The printed URL: the page loads, keeps the token in a cookie for
		// its own requests, and the address bar no longer shows it.
		navigate(t, ctx, tts.URL+"/?token="+token+"#/")
		assert.Len(t, js[[]string](t, ctx, `lens.shown`), 3)
		assert.Equal(t, "", js[string](t, ctx, `location.search`))
		assert.Equal(t, "#/", js[string](t, ctx, `location.hash`))
		assert.Equal(t, "", js[string](t, ctx, `document.cookie`), "the cookie is HttpOnly")
	})

	t.Run("live run", func(t *testing.T) {
		navigate(t, ctx, ts.URL+"/#/run/"+live)
		waitJS(t, ctx, `lens.series.loss !== undefined`, 5*time.Second)
		last := js[int](t, ctx, `lens.series.loss.last`)
		start := time.Now()
		waitJS(t, ctx, fmt.Sprintf(`lens.series.loss.last > %d`, last), 2*time.Second)
		t.Logf("new steps after %v without a reload (step %d -> %d)", time.Since(start), last, js[int](t, ctx, `lens.series.loss.last`))
		// The page's new points are the store's.
		steps := js[[]int](t, ctx, `lens.series.loss.steps`)
		values := js[[]float64](t, ctx, `lens.series.loss.values`)
		st, err := kv.Open(dir, kv.Options{ReadOnly: true})
		require.NoError(t, err)
		pts, err := st.ReadMetric(live, "loss")
		require.NoError(t, st.Close())
		require.NoError(t, err)
		require.GreaterOrEqual(t, len(pts), len(steps))
		for i := range steps {
			require.Equal(t, pts[i].Step, steps[i])
			if !math.IsNaN(pts[i].Value) {
				require.Equal(t, pts[i].Value, values[i])
			}
		}
		shot(t, ctx, "ui-live.png", false)
	})
}
