package wandb

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math"
	"path/filepath"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/engine/wandb/wandbtest"
	"lens/kv"
)

const testKey = "k3y-0123456789abcdef-SECRET"

func openStore(t *testing.T) *kv.Store {
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

func newServer(t *testing.T) *wandbtest.Server {
	srv := wandbtest.New(testKey)
	t.Cleanup(srv.Close)
	return srv
}

// testOpts point at srv with retries short enough for tests.
func testOpts(srv *wandbtest.Server, dir string) Options {
	return Options{Project: "proj", Mode: ModeOnline, Dir: dir, APIKey: testKey, BaseURL: srv.URL,
		ChunkLines: 5, FlushEvery: 5 * time.Millisecond, Retry: Retry{Attempts: 3, Backoff: time.Millisecond, Max: 5 * time.Millisecond}}
}

// trainRun trains a tiny LoRA run (eval every 2 steps) into st with sinks.
func trainRun(t *testing.T, st *kv.Store, steps int, sinks ...runs.Sink) kv.RunMeta {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	require.NoError(t, err)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Name: "tiny", Tags: []string{"test"}, Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: steps, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 2, EvalBatches: 2},
		Data:  runs.DataRef{Source: "opticks"}}
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, runs.Options{Sinks: sinks})
	require.NoError(t, err)
	return meta
}

// storeSteps reads every metric of run id from the store, by step.
func storeSteps(t *testing.T, st *kv.Store, id string) map[int]map[string]float64 {
	names, err := st.MetricNames(id)
	require.NoError(t, err)
	out := map[int]map[string]float64{}
	for _, n := range names {
		pts, err := st.ReadMetric(id, n)
		require.NoError(t, err)
		for _, p := range pts {
			if out[p.Step] == nil {
				out[p.Step] = map[string]float64{}
			}
			out[p.Step][n] = p.Value
		}
	}
	return out
}

// requireLines checks that lines are exactly one per step of want, in
// step order, each with exactly the step's metrics.
func requireLines(t *testing.T, want map[int]map[string]float64, lines []string) {
	t.Helper()
	steps := slices.Sorted(maps.Keys(want))
	require.Len(t, lines, len(steps), "one history line per step")
	for i, l := range lines {
		got, err := ParseLine(l)
		require.NoError(t, err)
		require.Equal(t, float64(steps[i]), got[keyStep], "line %d", i)
		require.Contains(t, got, keyRuntime)
		require.Contains(t, got, keyTimestamp)
		delete(got, keyStep)
		delete(got, keyRuntime)
		delete(got, keyTimestamp)
		require.Equal(t, want[steps[i]], got, "metrics of step %d", steps[i])
	}
}

// requireRun checks what srv holds for run meta: every step once, in
// order, nothing sent twice, config and name, finished with exitCode.
func requireRun(t *testing.T, srv *wandbtest.Server, st *kv.Store, meta kv.RunMeta, exitCode int) *wandbtest.Run {
	t.Helper()
	r := srv.Run(srv.Entity, "proj", RunID(meta.ID))
	require.NotNil(t, r, "the server has the run")
	require.Zero(t, r.Overlaps, "no line sent twice")
	require.Zero(t, r.Gaps, "no line skipped")
	requireLines(t, storeSteps(t, st, meta.ID), r.Lines)
	require.Equal(t, meta.Name, r.DisplayName)
	// The config is the spec, one {"value": v} per key.
	var spec map[string]any
	require.NoError(t, json.Unmarshal(meta.Config, &spec))
	got := map[string]any{}
	for k, v := range r.Config {
		got[k] = v.(map[string]any)["value"]
	}
	require.Equal(t, spec, got)
	require.True(t, r.Complete, "marked complete")
	require.Equal(t, exitCode, r.ExitCode)
	sum, err := ParseLine(r.Summary)
	require.NoError(t, err)
	loss, err := st.ReadMetric(meta.ID, "loss")
	require.NoError(t, err)
	require.Equal(t, loss[len(loss)-1].Value, sum["loss"], "the summary has the final loss")
	return r
}

// syntheticRun records a run in st without training: loss, lr and
// grad_norm at steps 1..steps, eval/opticks at 0 and every evalEvery.
func syntheticRun(t *testing.T, st *kv.Store, steps, evalEvery int) kv.RunMeta {
	meta := kv.RunMeta{ID: st.NewRunID(), Name: "synthetic", Config: json.RawMessage(`{"name":"synthetic","train":{"lr":0.01,"steps":` + fmt.Sprint(steps) + `}}`)}
	require.NoError(t, st.CreateRun(meta))
	for s := 0; s <= steps; s++ {
		if s > 0 {
			require.NoError(t, st.AddMetrics(meta.ID, s, trainVals(s)))
		}
		if s%evalEvery == 0 {
			require.NoError(t, st.AddMetrics(meta.ID, s, map[string]float64{"eval/opticks": 3 - float64(s)/100}))
		}
	}
	require.NoError(t, st.UpdateRun(meta.ID, func(m *kv.RunMeta) error { m.Status, m.Steps = kv.StatusDone, steps; return nil }))
	m, err := st.GetRun(meta.ID)
	require.NoError(t, err)
	return m
}

func trainVals(s int) map[string]float64 {
	return map[string]float64{"loss": 4 / float64(s+1), "lr": 0.01, "grad_norm": 1.5 + float64(s)/7, "step_time_s": 0.01}
}

// feed plays the run's metrics into sink in the order runs does: per
// step, the train metrics, then the eval ones.
func feed(t *testing.T, sink runs.Sink, st *kv.Store, meta kv.RunMeta) {
	t.Helper()
	require.NoError(t, sink.Start(meta))
	byStep := storeSteps(t, st, meta.ID)
	for _, s := range slices.Sorted(maps.Keys(byStep)) {
		tr, ev := map[string]float64{}, map[string]float64{}
		for k, v := range byStep[s] {
			if len(k) > 5 && k[:5] == "eval/" {
				ev[k] = v
			} else {
				tr[k] = v
			}
		}
		if len(tr) > 0 {
			require.NoError(t, sink.Log(s, tr))
		}
		if len(ev) > 0 {
			require.NoError(t, sink.Log(s, ev))
		}
	}
	require.NoError(t, sink.Finish(meta))
}

// logBuffer is a slog.Logger writing text to a buffer, safe for the
// sender goroutine.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func (l *logBuffer) logger() *slog.Logger {
	return slog.New(slog.NewTextHandler(l, &slog.HandlerOptions{Level: slog.LevelDebug}))
}

func nan() float64               { return math.NaN() }
func inf(sign int) float64       { return math.Inf(sign) }
func timeAt(s float64) time.Time { return time.UnixMicro(int64(s * 1e6)) }
