// Command sqlitebench is the SQLite side of kv's BenchmarkStore: the same
// runs, metrics and queries as lens's store, on SQLite (WAL, one metrics
// table keyed by run, name and step), printed as JSON for the benchmark's
// table. It is its own module so that SQLite stays out of lens's
// dependencies; the data generator matches kv/bench_test.go's.
package main

import (
	"database/sql"
	"encoding/json"
	"flag"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"strings"
	"time"

	_ "modernc.org/sqlite"
)

// value and finalLoss are the generator of kv/bench_test.go.
func value(run, metric, step int) float64 {
	return math.Sin(float64(run*31+metric*7+step)) + float64(metric)
}

func finalLoss(run int) float64 { return float64((run*7919)%1000) / 1000 }

func runID(i int) string { return fmt.Sprintf("20261205-%06d-%04x", i/65536, i%65536) }

func metricName(j int) string {
	return [...]string{"loss", "lr", "grad_norm", "tokens_per_s", "step_time_s", "memory_bytes", "eval/loss", "eval/gocode", "act/mean", "act/std"}[j%10]
}

type result struct {
	IngestS      float64 `json:"ingest_s"`
	Points       int     `json:"points"`
	DiskBytes    int64   `json:"disk_bytes"`
	ListMS       float64 `json:"list_ms"`
	QueryMS      float64 `json:"query_ms"`
	MetricAllMS  float64 `json:"metric_all_ms"`
	SeriesMS     float64 `json:"series_ms"`
	PeakRSSBytes int64   `json:"peak_rss_bytes"`
}

func main() {
	dir := flag.String("dir", "", "directory for the database")
	runs := flag.Int("runs", 1000, "runs")
	steps := flag.Int("steps", 1000, "steps per run")
	metrics := flag.Int("metrics", 10, "metrics per step")
	series := flag.Int("series", 100000, "points of the one long series")
	config := flag.String("config", "", "a run's config JSON")
	flag.Parse()
	if err := run(*dir, *runs, *steps, *metrics, *series, *config); err != nil {
		fmt.Fprintln(os.Stderr, "sqlitebench:", err)
		os.Exit(1)
	}
}

func run(dir string, runs, steps, metrics, series int, config string) error {
	path := filepath.Join(dir, "bench.db")
	db, err := sql.Open("sqlite", path+"?_pragma=journal_mode(WAL)&_pragma=synchronous(NORMAL)")
	if err != nil {
		return err
	}
	defer db.Close()
	db.SetMaxOpenConns(1)
	for _, q := range []string{
		`CREATE TABLE runs (id TEXT PRIMARY KEY, name TEXT, status TEXT, created TEXT, steps INTEGER, final_loss REAL, record TEXT) WITHOUT ROWID`,
		`CREATE TABLE metrics (run TEXT, name TEXT, step INTEGER, value REAL, PRIMARY KEY (run, name, step)) WITHOUT ROWID`,
	} {
		if _, err := db.Exec(q); err != nil {
			return err
		}
	}
	var r result
	start := time.Now()
	created := time.Date(2026, 12, 5, 0, 0, 0, 0, time.UTC)
	ingest := func(id string, nsteps, nmetrics, runIdx int) error {
		tx, err := db.Begin()
		if err != nil {
			return err
		}
		if _, err := tx.Exec(`INSERT INTO runs VALUES (?, ?, 'running', ?, 0, NULL, ?)`, id, "run-"+id, created.Add(time.Duration(runIdx)*time.Second).Format(time.RFC3339Nano), config); err != nil {
			return err
		}
		ins, err := tx.Prepare(`INSERT OR REPLACE INTO metrics VALUES (?, ?, ?, ?)`)
		if err != nil {
			return err
		}
		for s := 1; s <= nsteps; s++ {
			for j := range nmetrics {
				if _, err := ins.Exec(id, metricName(j), s, value(runIdx, j, s)); err != nil {
					return err
				}
			}
		}
		ins.Close()
		if _, err := tx.Exec(`UPDATE runs SET status = 'done', steps = ?, final_loss = ? WHERE id = ?`, nsteps, finalLoss(runIdx), id); err != nil {
			return err
		}
		r.Points += nsteps * nmetrics
		return tx.Commit()
	}
	for i := range runs {
		if err := ingest(runID(i), steps, metrics, i); err != nil {
			return err
		}
	}
	r.IngestS = time.Since(start).Seconds()
	points := r.Points
	if err := ingest("long-series", series, 1, runs); err != nil {
		return err
	}
	r.Points = points
	if _, err := db.Exec(`PRAGMA wal_checkpoint(TRUNCATE)`); err != nil {
		return err
	}
	filepath.Walk(dir, func(_ string, fi os.FileInfo, err error) error {
		if err == nil && !fi.IsDir() {
			r.DiskBytes += fi.Size()
		}
		return nil
	})

	type rec struct {
		id, name, status, created, record string
		steps                             int
		loss                              sql.NullFloat64
	}
	best := func(f func() error) (float64, error) {
		b := math.Inf(1)
		for range 3 {
			t := time.Now()
			if err := f(); err != nil {
				return 0, err
			}
			b = min(b, float64(time.Since(t).Microseconds())/1000)
		}
		return b, nil
	}
	if r.ListMS, err = best(func() error {
		rows, err := db.Query(`SELECT id, name, status, created, steps, final_loss, record FROM runs ORDER BY created, id`)
		if err != nil {
			return err
		}
		defer rows.Close()
		var out []rec
		for rows.Next() {
			var x rec
			if err := rows.Scan(&x.id, &x.name, &x.status, &x.created, &x.steps, &x.loss, &x.record); err != nil {
				return err
			}
			out = append(out, x)
		}
		if len(out) != runs+1 {
			return fmt.Errorf("listed %d runs", len(out))
		}
		return rows.Err()
	}); err != nil {
		return err
	}
	if r.QueryMS, err = best(func() error {
		rows, err := db.Query(`SELECT id, name, status, created, steps, final_loss, record FROM runs WHERE final_loss < 0.5 ORDER BY final_loss LIMIT 10`)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var x rec
			if err := rows.Scan(&x.id, &x.name, &x.status, &x.created, &x.steps, &x.loss, &x.record); err != nil {
				return err
			}
			n++
		}
		if n == 0 || n > 10 {
			return fmt.Errorf("query gave %d runs", n)
		}
		return rows.Err()
	}); err != nil {
		return err
	}
	readSeries := func(id, name string, want int) error {
		rows, err := db.Query(`SELECT step, value FROM metrics WHERE run = ? AND name = ? ORDER BY step`, id, name)
		if err != nil {
			return err
		}
		defer rows.Close()
		n := 0
		for rows.Next() {
			var s int
			var v float64
			if err := rows.Scan(&s, &v); err != nil {
				return err
			}
			n++
		}
		if n != want {
			return fmt.Errorf("series %s/%s: %d points, want %d", id, name, n, want)
		}
		return rows.Err()
	}
	if r.MetricAllMS, err = best(func() error {
		for i := range runs {
			if err := readSeries(runID(i), "loss", steps); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return err
	}
	if r.SeriesMS, err = best(func() error { return readSeries("long-series", "loss", series) }); err != nil {
		return err
	}
	if b, err := os.ReadFile("/proc/self/status"); err == nil {
		for _, l := range strings.Split(string(b), "\n") {
			if f := strings.Fields(l); len(f) == 3 && f[0] == "VmHWM:" {
				fmt.Sscan(f[1], &r.PeakRSSBytes)
				r.PeakRSSBytes *= 1024
			}
		}
	}
	return json.NewEncoder(os.Stdout).Encode(r)
}
