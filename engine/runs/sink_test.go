package runs

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// recordSink keeps what it is given; failAt makes one of its calls fail.
type recordSink struct {
	name     string
	started  bool
	finished string
	logged   map[int]map[string]float64
	tensors  map[int]int
	failAt   int // fail Log at this step (0: never)
	calls    int
	steps    []int // step of each Log call, in order
}

func (r *recordSink) Name() string { return r.name }
func (r *recordSink) Start(meta kv.RunMeta) error {
	r.started = len(meta.Config) > 0
	return nil
}
func (r *recordSink) Log(step int, m map[string]float64) error {
	r.calls++
	r.steps = append(r.steps, step)
	if r.failAt > 0 && step == r.failAt {
		return errors.New("server said no")
	}
	if r.logged == nil {
		r.logged = map[int]map[string]float64{}
	}
	if r.logged[step] == nil {
		r.logged[step] = map[string]float64{}
	}
	for k, v := range m {
		if _, dup := r.logged[step][k]; dup {
			return errors.New("logged twice: " + k)
		}
		r.logged[step][k] = v
	}
	return nil
}
func (r *recordSink) Tensors(step int, kind string, ts []kv.Tensor) error {
	if r.tensors == nil {
		r.tensors = map[int]int{}
	}
	r.tensors[step] = len(ts)
	return nil
}
func (r *recordSink) Finish(meta kv.RunMeta) error { r.finished = meta.Status; return nil }

// Sinks see exactly what the store has, and a failing sink is reported once
// and dropped without stopping the run.
func TestSinks(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	good := &recordSink{name: "good"}
	bad := &recordSink{name: "bad", failAt: 3}
	meta, err := job.Run(context.Background(), st, Options{Sinks: []Sink{good, bad}})
	require.NoError(t, err)
	require.True(t, good.started)
	require.Equal(t, kv.StatusDone, good.finished)
	names, err := st.MetricNames(meta.ID)
	require.NoError(t, err)
	points := 0
	for _, n := range names {
		series, err := st.ReadMetric(meta.ID, n)
		require.NoError(t, err)
		for _, p := range series {
			points++
			require.Equal(t, p.Value, good.logged[p.Step][n], "%s at step %d", n, p.Step)
		}
	}
	got := 0
	for _, m := range good.logged {
		got += len(m)
	}
	require.Equal(t, points, got, "the sink got every stored point once, nothing else")
	require.NotEmpty(t, good.tensors, "checkpoints reach tensor sinks")
	for _, n := range good.tensors {
		require.Equal(t, len(job.Trainer.Params), n)
	}
	before := 0
	for _, s := range good.steps {
		if s < bad.failAt {
			before++
		}
	}
	require.Equal(t, before+1, bad.calls, "the failing sink is not called after its failure")
	require.Empty(t, bad.finished)
	events, err := st.Events(meta.ID)
	require.NoError(t, err)
	n := 0
	for _, e := range events {
		if e.Kind == "sink_error" {
			n++
			require.True(t, strings.Contains(e.Message, "bad: log failed") && strings.Contains(e.Message, "server said no"), e.Message)
		}
	}
	require.Equal(t, 1, n)
}
