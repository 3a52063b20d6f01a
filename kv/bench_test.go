package kv_test

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io/fs"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strings"
	"testing"
	"time"

	"lens/kv"
)

// BenchmarkStore is issue 23's measurement: runs × 10 metrics × steps
// ingested the way engine/runs records a training run (CreateRun, then per
// step AddMetrics of 10 values and SetProgress, then the final UpdateRun),
// then startup, listing, lens.runs(where=, order_by=, limit=) through the
// Starlark builtins, one metric of every run and a 10⁵-point series; and
// the same data and queries on SQLite (kv/testdata/sqlitebench, its own
// module) in the same run. It prints a markdown table. Run it once:
//
//	go test ./kv -run '^$' -bench BenchmarkStore -benchtime 1x -store-runs 1000
var (
	benchRuns   = flag.Int("store-runs", 100, "BenchmarkStore: runs to ingest")
	benchSteps  = flag.Int("store-steps", 1000, "BenchmarkStore: steps per run")
	benchSeries = flag.Int("store-series", 100_000, "BenchmarkStore: points of the one long series")
	benchSQLite = flag.Bool("store-sqlite", true, "BenchmarkStore: measure SQLite beside (builds kv/testdata/sqlitebench)")
	benchCLI    = flag.Bool("store-cli", true, "BenchmarkStore: time `lens run` of an empty script and `lens runs --json | head` (builds cmd/lens)")
)

const benchMetrics = 10

// The generator, shared with kv/testdata/sqlitebench.
func benchValue(run, metric, step int) float64 {
	return math.Sin(float64(run*31+metric*7+step)) + float64(metric)
}
func benchFinalLoss(run int) float64 { return float64((run*7919)%1000) / 1000 }
func benchRunID(i int) string        { return fmt.Sprintf("20261205-%06d-%04x", i/65536, i%65536) }

var benchNames = [...]string{"loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", "memory_bytes", "eval/loss", "eval/gocode", "act/mean", "act/std"}

// benchConfig is a run's config as engine/runs stores it (a runs.Spec),
// about 1 KB.
const benchConfig = `{"name":"sweep-r16","script":"sweep.star","model":{"vocab_size":32000,"hidden_size":576,"intermediate_size":1536,"num_hidden_layers":30,"num_attention_heads":9,"num_key_value_heads":3,"max_position_embeddings":2048,"rms_norm_eps":1e-05,"rope_theta":100000,"tie_word_embeddings":true},"lora":{"r":16,"alpha":32,"dropout":0.05,"targets":["q_proj","k_proj","v_proj","o_proj","gate_proj","up_proj","down_proj"],"rslora":false,"lr_ratio":1},"lora_seed":7,"train":{"steps":1000,"batch_size":8,"seq_len":256,"lr":0.0002,"warmup":50,"schedule":"cosine","weight_decay":0.01,"clip":1,"grad_accum":1,"eval_every":100,"eval_batches":8,"seed":1},"data":{"source":"corpus/go.txt","eval_frac":0.05},"eval_data":[{"name":"gocode","source":"corpus/held.txt"}],"checkpoint_every":100,"keep_last":3,"collect":[{"name":"lora_norms","every":10},{"name":"activations","every":50}],"tags":["sweep","r16"]}`

func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
			var kb int64
			fmt.Sscan(f[1], &kb)
			return kb * 1024
		}
	}
	return 0
}

// sampleRSS samples the resident set every 50 ms until the returned
// function is called, which returns the peaks of its anonymous part and of
// its pages of mapped files (Badger maps its tables and value log).
func sampleRSS() func() (anon, file int64) {
	stop, done := make(chan struct{}), make(chan struct{})
	var anon, file int64
	go func() {
		defer close(done)
		t := time.NewTicker(50 * time.Millisecond)
		defer t.Stop()
		for {
			a, f := rssParts()
			anon, file = max(anon, a), max(file, f)
			select {
			case <-stop:
				return
			case <-t.C:
			}
		}
	}()
	return func() (int64, int64) {
		close(stop)
		<-done
		return anon, file
	}
}

// rssParts reads RssAnon and RssFile from /proc/self/status, in bytes.
func rssParts() (anon, file int64) {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0, 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 {
			var kb int64
			fmt.Sscan(f[1], &kb)
			switch f[0] {
			case "RssAnon:":
				anon = kb << 10
			case "RssFile:":
				file = kb << 10
			}
		}
	}
	return anon, file
}

// rssNow is the current resident set split as the kernel reports it:
// anonymous memory, and pages of mapped files (Badger maps its tables).
func rssNow() string {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return "?"
	}
	var out []string
	for _, l := range strings.Split(string(b), "\n") {
		if f := strings.Fields(l); len(f) == 3 && (f[0] == "RssAnon:" || f[0] == "RssFile:") {
			var kb int64
			fmt.Sscan(f[1], &kb)
			out = append(out, fmt.Sprintf("%s %d MB", strings.TrimSuffix(f[0], ":"), kb>>10))
		}
	}
	return strings.Join(out, ", ")
}

func dirBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err == nil && !d.IsDir() {
			if fi, err := d.Info(); err == nil {
				n += fi.Size()
			}
		}
		return nil
	})
	return n
}

// bestOf returns the fastest of n timings of f, and the first.
func bestOf(b *testing.B, n int, f func() error) (best, first time.Duration) {
	best = time.Duration(math.MaxInt64)
	for i := range n {
		t := time.Now()
		if err := f(); err != nil {
			b.Fatal(err)
		}
		d := time.Since(t)
		if i == 0 {
			first = d
		}
		best = min(best, d)
	}
	return best, first
}

func ingestRun(st *kv.Store, i, steps, metrics int, created time.Time) error {
	id := benchRunID(i)
	if err := st.CreateRun(kv.RunMeta{ID: id, Name: "sweep-r16", Config: json.RawMessage(benchConfig), Created: created.Add(time.Duration(i) * time.Second), Tags: []string{"sweep"}}); err != nil {
		return err
	}
	for s := 1; s <= steps; s++ {
		vals := make(map[string]float64, metrics)
		for j := range metrics {
			vals[benchNames[j]] = benchValue(i, j, s)
		}
		if err := st.AddMetrics(id, s, vals); err != nil {
			return err
		}
		if err := st.SetProgress(id, kv.Progress{Step: s, Steps: steps, Loss: vals["loss"], TokensPerSec: 1000}); err != nil {
			return err
		}
	}
	return st.UpdateRun(id, func(m *kv.RunMeta) error {
		loss := benchFinalLoss(i)
		m.Status, m.Steps, m.FinalLoss = kv.StatusDone, steps, &loss
		return nil
	})
}

type sqliteResult struct {
	IngestS      float64 `json:"ingest_s"`
	Points       int     `json:"points"`
	DiskBytes    int64   `json:"disk_bytes"`
	ListMS       float64 `json:"list_ms"`
	QueryMS      float64 `json:"query_ms"`
	MetricAllMS  float64 `json:"metric_all_ms"`
	SeriesMS     float64 `json:"series_ms"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

func BenchmarkStore(b *testing.B) {
	for range b.N {
		benchStore(b)
	}
}

func benchStore(b *testing.B) {
	runs, steps, series := *benchRuns, *benchSteps, *benchSeries
	points := runs * steps * benchMetrics
	work := b.TempDir()
	dir := filepath.Join(work, ".lens")
	created := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	var rows [][3]string
	row := func(op, lens, sqlite string) { rows = append(rows, [3]string{op, lens, sqlite}) }

	// Ingest.
	st, err := kv.Open(dir, kv.Options{})
	if err != nil {
		b.Fatal(err)
	}
	stopRSS := sampleRSS()
	cpu0 := cpuTime()
	start := time.Now()
	for i := range runs {
		if err := ingestRun(st, i, steps, benchMetrics, created); err != nil {
			b.Fatal(err)
		}
	}
	if err := st.Sync(); err != nil {
		b.Fatal(err)
	}
	ingest := time.Since(start)
	rss := peakRSS()
	anon, file := stopRSS()
	cpu := cpuTime() - cpu0
	var mst runtime.MemStats
	runtime.ReadMemStats(&mst)
	b.Logf("after ingest: peak RSS %d MB (now: %s), Go heap sys %d MB, heap in use %d MB", rss>>20, rssNow(), mst.HeapSys>>20, mst.HeapInuse>>20)
	if err := ingestLong(st, runs, series, created); err != nil {
		b.Fatal(err)
	}
	if err := st.Close(); err != nil {
		b.Fatal(err)
	}
	rate := float64(points) / ingest.Seconds()
	b.ReportMetric(rate, "points/s")

	// SQLite, in its own process, while nothing else runs.
	var sq *sqliteResult
	if *benchSQLite {
		sq = runSQLite(b, work, runs, steps, series)
	}
	sqs := func(f func(*sqliteResult) string) string {
		if sq == nil {
			return "—"
		}
		return f(sq)
	}
	row(fmt.Sprintf("ingest %d runs × %d metrics × %d steps", runs, benchMetrics, steps),
		fmt.Sprintf("%.0fk points/s (%.1f s; CPU %.1f s, %.2f s per 10⁶ points), peak RSS %d MB (sampled peaks: anonymous %d MB, mapped files %d MB)",
			rate/1000, ingest.Seconds(), cpu.Seconds(), cpu.Seconds()*1e6/float64(points), rss>>20, anon>>20, file>>20),
		sqs(func(r *sqliteResult) string {
			return fmt.Sprintf("%.0fk points/s (%.1f s), peak RSS %d MB", float64(r.Points)/r.IngestS/1000, r.IngestS, r.PeakRSSBytes>>20)
		}))
	row("disk (with the 10⁵-point series)", fmt.Sprintf("%d MB", dirBytes(dir)>>20), sqs(func(r *sqliteResult) string { return fmt.Sprintf("%d MB", r.DiskBytes>>20) }))

	// Startup: a writable open (what `lens run` does first) and a
	// read-only one.
	openW, _ := bestOf(b, 3, func() error {
		s, err := kv.Open(dir, kv.Options{})
		if err != nil {
			return err
		}
		return s.Close()
	})
	row("open the store for writing (startup)", ms(openW), "—")

	ro, err := kv.Open(dir, kv.Options{ReadOnly: true})
	if err != nil {
		b.Fatal(err)
	}
	defer ro.Close()
	list := func() error {
		l, err := ro.ListRuns()
		if err == nil && len(l) != runs+1 {
			err = fmt.Errorf("listed %d runs", len(l))
		}
		return err
	}
	// Listing reads the summary index (what `lens runs` and lens.runs
	// do); full records are timed too (what `lens runs --json` writes).
	sumBest, sumCold := bestOf(b, 3, func() error {
		l, err := ro.ListSummaries()
		if err == nil && len(l) != runs+1 {
			err = fmt.Errorf("listed %d summaries", len(l))
		}
		return err
	})
	row(fmt.Sprintf("list %d runs in-process (summaries)", runs+1), fmt.Sprintf("%s (first: %s)", ms(sumBest), ms(sumCold)),
		sqs(func(r *sqliteResult) string { return fmt.Sprintf("%.1f ms", r.ListMS) }))
	listBest, listCold := bestOf(b, 3, list)
	row(fmt.Sprintf("list %d runs in-process (full records)", runs+1), fmt.Sprintf("%s (first, decoding every record: %s)", ms(listBest), ms(listCold)),
		sqs(func(r *sqliteResult) string { return fmt.Sprintf("%.1f ms", r.ListMS) }))

	// What lens.runs(where=, order_by=, limit=) does, in Go (kv may not
	// import Starlark; the CLI timing below runs the real script).
	qBest, _ := bestOf(b, 3, func() error {
		l, err := ro.ListSummaries()
		if err != nil {
			return err
		}
		var best []kv.RunSummary
		for _, m := range l {
			if m.FinalLoss != nil && *m.FinalLoss < 0.5 {
				best = append(best, m)
			}
		}
		sort.SliceStable(best, func(i, j int) bool { return *best[i].FinalLoss < *best[j].FinalLoss })
		if len(best) == 0 {
			return fmt.Errorf("the query found no run")
		}
		best = best[:min(10, len(best))]
		return nil
	})
	row("where final_loss < 0.5, order by final_loss, limit 10 (in-process)", ms(qBest),
		sqs(func(r *sqliteResult) string { return fmt.Sprintf("%.1f ms (SQL: WHERE, ORDER BY, LIMIT)", r.QueryMS) }))

	allBest, _ := bestOf(b, 3, func() error {
		for i := range runs {
			p, err := ro.ReadMetric(benchRunID(i), "loss")
			if err != nil {
				return err
			}
			if len(p) != steps {
				return fmt.Errorf("run %d: %d points", i, len(p))
			}
		}
		return nil
	})
	row(fmt.Sprintf("one metric of all %d runs", runs), ms(allBest), sqs(func(r *sqliteResult) string { return fmt.Sprintf("%.1f ms", r.MetricAllMS) }))
	serBest, _ := bestOf(b, 3, func() error {
		p, err := ro.ReadMetric("long-series", "loss")
		if err == nil && len(p) != series {
			err = fmt.Errorf("%d points", len(p))
		}
		return err
	})
	row(fmt.Sprintf("a %d-point series", series), ms(serBest), sqs(func(r *sqliteResult) string { return fmt.Sprintf("%.1f ms", r.SeriesMS) }))
	ro.Close()

	if *benchCLI {
		benchCLIStartup(b, work, dir, row)
	}

	fmt.Printf("\n| operation | lens | SQLite |\n|---|---|---|\n")
	for _, r := range rows {
		fmt.Printf("| %s | %s | %s |\n", r[0], r[1], r[2])
	}
	fmt.Println()
}

func ms(d time.Duration) string { return fmt.Sprintf("%.1f ms", float64(d.Microseconds())/1000) }

func ingestLong(st *kv.Store, runs, series int, created time.Time) error {
	if err := st.CreateRun(kv.RunMeta{ID: "long-series", Created: created.Add(time.Duration(runs) * time.Second)}); err != nil {
		return err
	}
	for s := 1; s <= series; s++ {
		if err := st.AddMetrics("long-series", s, map[string]float64{"loss": benchValue(runs, 0, s)}); err != nil {
			return err
		}
	}
	return st.UpdateRun("long-series", func(m *kv.RunMeta) error { m.Status, m.Steps = kv.StatusDone, series; return nil })
}

func runSQLite(b *testing.B, work string, runs, steps, series int) *sqliteResult {
	bin := filepath.Join(work, "sqlitebench")
	build := exec.Command("go", "build", "-o", bin, ".")
	build.Dir = filepath.Join("testdata", "sqlitebench")
	if out, err := build.CombinedOutput(); err != nil {
		b.Logf("SQLite side skipped: building kv/testdata/sqlitebench failed: %v\n%s", err, out)
		return nil
	}
	db := filepath.Join(work, "sqlite")
	if err := os.MkdirAll(db, 0o700); err != nil {
		b.Fatal(err)
	}
	cmd := exec.Command(bin, "-dir", db, "-runs", fmt.Sprint(runs), "-steps", fmt.Sprint(steps), "-metrics", fmt.Sprint(benchMetrics),
		"-series", fmt.Sprint(series), "-config", benchConfig)
	cmd.Stderr = os.Stderr
	out, err := cmd.Output()
	if err != nil {
		b.Fatalf("sqlitebench: %v", err)
	}
	var r sqliteResult
	if err := json.Unmarshal(out, &r); err != nil {
		b.Fatalf("sqlitebench output %q: %v", out, err)
	}
	os.RemoveAll(db)
	return &r
}

// benchCLIStartup times the lens binary on the store: `lens run` of a
// script that is only `x = 1`, of the lens.runs(where=, order_by=, limit=)
// query, and `lens runs --json | head -1`. Each row gives the best wall
// time of 3 and that process's CPU time (user + system), which a loaded
// machine inflates less than the wall time.
func benchCLIStartup(b *testing.B, work, dir string, row func(op, lens, sqlite string)) {
	bin := filepath.Join(work, "lens")
	build := exec.Command("go", "build", "-o", bin, "lens/cmd/lens")
	if out, err := build.CombinedOutput(); err != nil {
		b.Logf("CLI timings skipped: building cmd/lens failed: %v\n%s", err, out)
		return
	}
	// timed runs cmd 3 times and returns the best wall time with the CPU
	// time of that run.
	timed := func(name string, cmd func() (*exec.Cmd, error)) string {
		best, cpu := time.Duration(math.MaxInt64), time.Duration(0)
		for range 3 {
			t := time.Now()
			c, err := cmd()
			if err != nil {
				b.Fatalf("%s: %v", name, err)
			}
			if d := time.Since(t); d < best {
				best, cpu = d, c.ProcessState.UserTime()+c.ProcessState.SystemTime()
			}
		}
		return fmt.Sprintf("%s (CPU %s)", ms(best), ms(cpu))
	}
	run := func(script string, check func([]byte) error) func() (*exec.Cmd, error) {
		return func() (*exec.Cmd, error) {
			c := exec.Command(bin, "run", "--store", dir, script)
			out, err := c.CombinedOutput()
			if err == nil {
				err = check(out)
			}
			if err != nil {
				return nil, fmt.Errorf("%v\n%s", err, out)
			}
			return c, nil
		}
	}
	script := filepath.Join(work, "empty.star")
	if err := os.WriteFile(script, []byte("x = 1\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	row("`lens run` of a script that is only `x = 1` (whole process)",
		timed("lens run empty.star", run(script, func([]byte) error { return nil })), "—")
	query := filepath.Join(work, "query.star")
	if err := os.WriteFile(query, []byte("best = lens.runs(where = lambda r: r.final_loss != None and r.final_loss < 0.5, order_by = \"final_loss\", limit = 10)\nprint(len(best))\n"), 0o600); err != nil {
		b.Fatal(err)
	}
	row("`lens run` of `lens.runs(where = lambda r: r.final_loss < 0.5, order_by = \"final_loss\", limit = 10)` (whole process)",
		timed("lens run query.star", run(query, func(out []byte) error {
			if !bytes.HasPrefix(out, []byte("10")) {
				return fmt.Errorf("the query printed %q, want 10 runs", out)
			}
			return nil
		})), "—")
	var firstLine time.Duration
	head := timed("lens runs --json | head -1", func() (*exec.Cmd, error) {
		t := time.Now()
		c := exec.Command(bin, "runs", "--json", "--store", dir)
		out, err := c.StdoutPipe()
		if err != nil {
			return nil, err
		}
		if err := c.Start(); err != nil {
			return nil, err
		}
		line, err := bufio.NewReader(out).ReadString('\n')
		if err != nil {
			return nil, err
		}
		if !strings.HasPrefix(line, `[{"id":`) {
			return nil, fmt.Errorf("first line %.80q is not the first run", line)
		}
		if d := time.Since(t); firstLine == 0 || d < firstLine {
			firstLine = d
		}
		out.Close() // what head does after its line
		c.Wait()    // killed by SIGPIPE at its next write, as under head
		return c, nil
	})
	row("`lens runs --json \\| head -1` (whole process)", fmt.Sprintf("%s, first line after %s", head, ms(firstLine)), "—")
}
