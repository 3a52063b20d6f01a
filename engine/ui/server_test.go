package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"io"
	"io/fs"
	"math"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"lens/engine/analyze"
	"lens/kv"
)

// storeHash is a digest of every file under dir (names and contents).
func storeHash(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		if d.Type()&fs.ModeSocket != 0 {
			out[p] = "socket"
			return nil
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return err
		}
		h := sha256.Sum256(b)
		out[p] = hex.EncodeToString(h[:])
		return nil
	}))
	return out
}

func get(t *testing.T, c *http.Client, method, url string, hdr ...string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	require.NoError(t, err)
	for i := 0; i+1 < len(hdr); i += 2 {
		if hdr[i] == "Host" {
			req.Host = hdr[i+1]
		} else {
			req.Header.Set(hdr[i], hdr[i+1])
		}
	}
	resp, err := c.Do(req)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b), resp.Header
}

func noRedirect() *http.Client {
	return &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
}

func TestCheckAddr(t *testing.T) {
	for _, c := range []struct {
		addr, token string
		ok          bool
	}{
		{"127.0.0.1:7070", "", true},
		{"[::1]:7070", "", true},
		{"localhost:0", "", true},
		{"0.0.0.0:7070", "", false},
		{":7070", "", false},
		{"192.168.1.5:80", "", false},
		{"[::]:7070", "", false},
		{"0.0.0.0:7070", "s3cret", true},
		{"no-port", "", false},
	} {
		err := CheckAddr(c.addr, c.token)
		if c.ok {
			assert.NoError(t, err, c.addr)
		} else if assert.Error(t, err, c.addr) && strings.Contains(c.addr, ":") && c.addr != "no-port" {
			assert.Contains(t, err.Error(), "token", c.addr)
		}
	}
}

// TestSecurity: every request needs the token; traversal and malformed
// queries get 400 or 404; nothing changes the store.
func TestSecurity(t *testing.T) {
	dir, ids := finishedRuns(t)
	before := storeHash(t, dir)
	const token = "0123456789abcdef"
	srv := New(Options{Store: dir, Token: token})
	ts := httptest.NewServer(srv)
	defer ts.Close()
	c := noRedirect()
	id := ids[0]

	paths := []string{"/", "/assets/app.js", "/api/runs", "/api/run/" + id, "/api/run/" + id + "/metric?name=loss",
		"/api/run/" + id + "/collect", "/api/run/" + id + "/findings", "/api/compare?ids=" + ids[0] + "," + ids[1], "/api/sweeps"}
	for _, p := range paths {
		code, _, _ := get(t, c, "GET", ts.URL+p)
		assert.Equal(t, http.StatusUnauthorized, code, "no token: %s", p)
		code, _, _ = get(t, c, "GET", ts.URL+p, "Authorization", "Bearer wrong")
		assert.Equal(t, http.StatusUnauthorized, code, "wrong token: %s", p)
		code, _, _ = get(t, c, "GET", ts.URL+p, "Authorization", "Bearer "+token)
		assert.Equal(t, http.StatusOK, code, "bearer token: %s", p)
		code, _, _ = get(t, c, "GET", ts.URL+p, "Cookie", cookieName+"="+token)
		assert.Equal(t, http.StatusOK, code, "cookie: %s", p)
	}
	code, _, h := get(t, c, "GET", ts.URL+"/?token="+token)
	assert.Equal(t, http.StatusSeeOther, code)
	assert.Equal(t, "/", h.Get("Location"), "the token leaves the address bar")
	assert.Contains(t, h.Get("Set-Cookie"), cookieName+"="+token)
	assert.Contains(t, h.Get("Set-Cookie"), "HttpOnly")

	auth := []string{"Authorization", "Bearer " + token}
	for _, b := range []struct {
		method, path string
		want         int
	}{
		{"GET", "/assets/..%2f..%2fserver.go", 400},
		{"GET", "/assets/../server.go", 400},
		{"GET", "/assets/%2e%2e/server.go", 400},
		{"GET", "/assets/.hidden", 400},
		{"GET", "/assets//app.js", 400},
		{"GET", "/assets/server.go", 404},
		{"GET", "/assets/nope.js", 404},
		{"GET", "/assets/", 400},
		{"GET", "/server.go", 404},
		{"GET", "/../../etc/passwd", 400},
		{"GET", "/api/run/..%2f..%2fetc/metric?name=loss", 400},
		{"GET", "/api/run/a%00b", 400},
		{"GET", "/api/run/no-such-run", 404},
		{"GET", "/api/run/" + id + "/metric", 400},
		{"GET", "/api/run/" + id + "/metric?name=nosuch", 404},
		{"GET", "/api/run/" + id + "/metric?name=loss&width=abc", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&width=0", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&width=99999", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&from=5&to=1", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&from=NaN", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&bogus=1", 400},
		{"GET", "/api/run/" + id + "/metric?name=loss&name=lr", 400},
		{"GET", "/api/run/" + id + "/metric?name=%zz", 400},
		{"GET", "/api/runs?where=final_loss%20%3C", 400},
		{"GET", "/api/runs?where=nosuchfield%20%3D%3D%201", 400},
		{"GET", "/api/runs?where=status%20%3C%201", 400},
		{"GET", "/api/compare?ids=" + id, 400},
		{"GET", "/api/compare?ids=" + id + ",..%2Fx", 400},
		{"GET", "/api/compare?ids=" + id + ",no-such-run", 404},
		{"GET", "/api/sweeps?x=1", 400},
		{"POST", "/api/runs", 405},
		{"PUT", "/api/run/" + id, 405},
		{"DELETE", "/api/run/" + id, 405},
	} {
		code, body, _ := get(t, c, b.method, ts.URL+b.path, auth...)
		assert.Equal(t, b.want, code, "%s %s: %s", b.method, b.path, body)
	}

	// Without a token the server answers loopback host names only (a page
	// on another site reaching 127.0.0.1 through DNS rebinding would not).
	open := httptest.NewServer(New(Options{Store: dir}))
	defer open.Close()
	code, _, _ = get(t, c, "GET", open.URL+"/api/runs")
	assert.Equal(t, http.StatusOK, code)
	code, _, _ = get(t, c, "GET", open.URL+"/api/runs", "Host", "evil.example:80")
	assert.Equal(t, http.StatusForbidden, code)

	open.Close()
	ts.Close()
	srv.Close()
	assert.Equal(t, before, storeHash(t, dir), "the store changed")
}

// TestAPIAgainstStore: the JSON endpoints say what kv says.
func TestAPIAgainstStore(t *testing.T) {
	dir, ids := finishedRuns(t)
	srv := New(Options{Store: dir})
	ts := httptest.NewServer(srv)
	defer func() { ts.Close(); srv.Close() }()
	st, err := kv.Open(dir, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	want, err := st.ReadMetric(ids[1], "loss")
	require.NoError(t, err)
	m0, err := st.GetRun(ids[0])
	require.NoError(t, err)
	cks, err := st.Checkpoints(ids[0])
	require.NoError(t, err)
	require.NoError(t, st.Close())

	var s Series
	getJSON(t, ts.URL+"/api/run/"+ids[1]+"/metric?name=loss", &s)
	require.Len(t, s.Steps, len(want))
	for i, p := range want {
		assert.Equal(t, p.Step, s.Steps[i])
		assert.Equal(t, p.Value, float64(s.Values[i]))
	}
	assert.True(t, s.Exact)

	var page RunsPage
	getJSON(t, ts.URL+"/api/runs?where="+queryEscape(`config.r == 8 and "ui-test" in tags`), &page)
	require.Len(t, page.Runs, 1)
	assert.Equal(t, ids[1], page.Runs[0].ID)
	assert.Equal(t, 2, page.Total)
	assert.Contains(t, page.ConfigKeys, "lr")

	var rp struct {
		RunPage
		FinalLoss *float64 `json:"final_loss"`
	}
	getJSON(t, ts.URL+"/api/run/"+ids[0], &rp)
	assert.Equal(t, *m0.FinalLoss, *rp.FinalLoss)
	require.Len(t, rp.Checkpoints, len(cks))
	best := 0
	for _, c := range rp.Checkpoints {
		if c.Best {
			best++
		}
	}
	assert.Equal(t, 1, best, "one best checkpoint")
	assert.ElementsMatch(t, []string{"activations", "adapter_grads", "adapter_weights", "lora_activations"}, rp.Collectors)

	var panels []Panel
	getJSON(t, ts.URL+"/api/run/"+ids[0]+"/collect", &panels)
	require.Len(t, panels, 4)
	for _, p := range panels {
		assert.NotEmpty(t, append(p.Lines, make([]Lines, len(p.Heatmaps))...), p.Collector)
	}

	var cmp Compare
	getJSON(t, ts.URL+"/api/compare?ids="+ids[0]+","+ids[1], &cmp)
	fields := map[string]bool{}
	for _, d := range cmp.Diff {
		fields[d.Field] = true
	}
	assert.True(t, fields["r"] && fields["seed"] && fields["lora_alpha"], "diff %v", fields)
	assert.False(t, fields["lr"])
	require.NotNil(t, cmp.Phi, cmp.PhiNote)
	assert.Len(t, cmp.Phi.Grid, 4)
	assert.Len(t, cmp.Phi.Grid[0], 8)
	assert.Equal(t, analyze.RandomBaseline(4, 8, 32), cmp.Phi.Baseline[3][7]) // in = hidden size 32
}

func queryEscape(s string) string {
	return strings.NewReplacer(" ", "%20", `"`, "%22", "=", "%3D", "<", "%3C").Replace(s)
}

func getJSON(t *testing.T, url string, v any) {
	t.Helper()
	resp, err := http.Get(url)
	require.NoError(t, err)
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	require.Equal(t, http.StatusOK, resp.StatusCode, string(b))
	require.NoError(t, json.Unmarshal(b, v), string(b))
}

func TestDownsample(t *testing.T) {
	mk := func(n int, f func(i int) float64) []kv.Point {
		p := make([]kv.Point, n)
		for i := range p {
			p[i] = kv.Point{Step: i + 1, Value: f(i)}
		}
		return p
	}
	inf := math.Inf(1)
	t.Run("few points come back as they are", func(t *testing.T) {
		pts := mk(100, func(i int) float64 { return float64(i) })
		assert.Equal(t, pts, Downsample(pts, -inf, inf, 50))
	})
	t.Run("range adds one neighbour on each side", func(t *testing.T) {
		pts := mk(100, func(i int) float64 { return float64(i) })
		got := Downsample(pts, 10, 20, 50)
		assert.Equal(t, pts[8:21], got)
	})
	for _, c := range []struct {
		name    string
		n, w    int
		f       func(i int) float64
		spikeAt int
	}{
		{"sine", 100000, 500, func(i int) float64 { return math.Sin(float64(i) / 300) }, -1},
		{"spike survives", 100000, 300, func(i int) float64 {
			if i == 54321 {
				return 50
			}
			return 1 + float64(i%7)/100
		}, 54321},
		{"NaN kept as a gap", 20000, 100, func(i int) float64 {
			if i == 777 {
				return math.NaN()
			}
			return float64(i % 13)
		}, 777},
	} {
		t.Run(c.name, func(t *testing.T) {
			pts := mk(c.n, c.f)
			got := Downsample(pts, -inf, inf, c.w)
			assert.LessOrEqual(t, len(got), 2*c.w+3)
			assert.Equal(t, pts[0], got[0])
			assert.Equal(t, pts[len(pts)-1], got[len(got)-1])
			// In step order, every point a stored one.
			for i := 1; i < len(got); i++ {
				require.Greater(t, got[i].Step, got[i-1].Step)
				if v := pts[got[i].Step-1].Value; !math.IsNaN(v) {
					require.Equal(t, v, got[i].Value)
				}
			}
			// Each bucket's extremes are in the output (checked by brute force).
			width := float64(pts[len(pts)-1].Step-pts[0].Step) / float64(c.w)
			in := map[int]bool{}
			for _, p := range got {
				in[p.Step] = true
			}
			for b := 0; b < c.w; b++ {
				lo, hi := float64(pts[0].Step)+width*float64(b), float64(pts[0].Step)+width*float64(b+1)
				minS, maxS := -1, -1
				for _, p := range pts[1 : len(pts)-1] {
					s := float64(p.Step)
					if s < lo || (s >= hi && b < c.w-1) || math.IsNaN(p.Value) {
						continue
					}
					if minS < 0 || p.Value < pts[minS-1].Value {
						minS = p.Step
					}
					if maxS < 0 || p.Value > pts[maxS-1].Value {
						maxS = p.Step
					}
				}
				if minS > 0 {
					require.True(t, in[minS] || pts[minS-1].Value == minValueAt(got, lo, hi), "bucket %d min", b)
					require.True(t, in[maxS] || pts[maxS-1].Value == maxValueAt(got, lo, hi), "bucket %d max", b)
				}
			}
			if c.spikeAt >= 0 {
				assert.True(t, in[c.spikeAt+1], "point %d kept", c.spikeAt+1)
			}
		})
	}
}

// minValueAt and maxValueAt: the extremes of got within [lo, hi), for
// buckets whose extreme value occurs at several steps (any one may be kept).
func minValueAt(got []kv.Point, lo, hi float64) float64 {
	m := math.Inf(1)
	for _, p := range got {
		if s := float64(p.Step); s >= lo && s < hi && p.Value < m {
			m = p.Value
		}
	}
	return m
}

func maxValueAt(got []kv.Point, lo, hi float64) float64 {
	m := math.Inf(-1)
	for _, p := range got {
		if s := float64(p.Step); s >= lo && s < hi && p.Value > m {
			m = p.Value
		}
	}
	return m
}

// TestIdleStorePolling: a page polling a store nobody writes does not open
// it again (so it does not hold the lock a `lens run` needs), and sees a run
// added by a writer in between.
func TestIdleStorePolling(t *testing.T) {
	dir, ids := finishedRuns(t)
	srv := New(Options{Store: dir})
	ts := httptest.NewServer(srv)
	defer func() { ts.Close(); srv.Close() }()
	var page RunsPage
	getJSON(t, ts.URL+"/api/runs", &page)
	require.Len(t, page.Runs, 2)
	time.Sleep(2 * linger) // the view closes
	opens := srv.src.opens
	for range 20 {
		getJSON(t, ts.URL+"/api/runs", &page)
	}
	assert.Equal(t, opens, srv.src.opens, "polling an idle store reopened it")

	// The lock is free between polls: a writer opens the store and adds a run.
	st, err := kv.Open(dir, kv.Options{})
	require.NoError(t, err)
	require.NoError(t, st.CreateRun(kv.RunMeta{ID: "added-later", Name: "added", Status: kv.StatusDone}))
	// While it holds the store the UI reads a snapshot from it.
	getJSON(t, ts.URL+"/api/runs", &page)
	assert.Len(t, page.Runs, 3)
	require.NoError(t, st.Close())
	getJSON(t, ts.URL+"/api/runs", &page)
	assert.Len(t, page.Runs, 3)
	_ = ids
}

func TestThin(t *testing.T) {
	steps := make([]int, 1000)
	for i := range steps {
		steps[i] = 10 * (i + 1)
	}
	for _, n := range []int{2, 7, 400, 999} {
		got := thin(steps, n)
		require.Len(t, got, n)
		assert.Equal(t, steps[0], got[0])
		assert.Equal(t, steps[len(steps)-1], got[n-1])
		for i := 1; i < n; i++ {
			assert.Greater(t, got[i], got[i-1])
		}
	}
	assert.Equal(t, steps[:5], thin(steps[:5], 400))
}

// TestCollectThinned: a collector with more collected steps than a heatmap
// has columns is read at maxCols evenly spaced steps, first and last kept.
func TestCollectThinned(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "store")
	st, err := kv.Open(dir, kv.Options{})
	require.NoError(t, err)
	require.NoError(t, st.CreateRun(kv.RunMeta{ID: "long-collect", Status: kv.StatusDone}))
	const n = 1000
	for step := 1; step <= n; step++ {
		require.NoError(t, st.PutCollectedJSON("long-collect", "mine", step, "m", map[string]any{"x": float64(step)}))
	}
	recs, err := readThinned(st, "long-collect", "mine")
	require.NoError(t, err)
	require.Len(t, recs, maxCols)
	assert.Equal(t, 1, recs[0].Step)
	assert.Equal(t, n, recs[len(recs)-1].Step)
	panels, err := collectPanels(st, "long-collect")
	require.NoError(t, err)
	require.Len(t, panels, 1)
	require.Len(t, panels[0].Lines, 1)
	l := panels[0].Lines[0]
	assert.Equal(t, "mine: x", l.Title)
	require.Len(t, l.Steps, maxCols)
	for i, s := range l.Steps {
		assert.Equal(t, float64(s), float64(l.Values[0][i]), "a Starlark collector's field at step %d", s)
	}
	require.NoError(t, st.Close())
}
