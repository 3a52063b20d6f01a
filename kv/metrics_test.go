package kv

import (
	"errors"
	"math"
	"slices"
	"testing"
)

// Behaviour 5: out-of-order writes read back sorted, a rewritten step keeps
// the last value, and steps order numerically (256 after 2).
func TestMetrics(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "m")
	writes := []Point{{256, 1}, {2, 2}, {1, 3}, {65536, 4}, {2, 5}, {0, 6}, {3, math.NaN()}}
	for _, p := range writes {
		if err := s.AddMetric(m.ID, "loss", p.Step, p.Value); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.AddMetrics(m.ID, 7, map[string]float64{"lr": 0.1, "eval/loss": 9}); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMetric(m.ID, "eval", 1, 8); err != nil { // a name that prefixes another
		t.Fatal(err)
	}
	tests := []struct {
		name string
		want []Point
	}{
		{"loss", []Point{{0, 6}, {1, 3}, {2, 5}, {3, math.NaN()}, {256, 1}, {65536, 4}}},
		{"lr", []Point{{7, 0.1}}},
		{"eval", []Point{{1, 8}}},
		{"eval/loss", []Point{{7, 9}}},
		{"absent", nil},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got, err := s.ReadMetric(m.ID, tt.name)
			if err != nil {
				t.Fatal(err)
			}
			if !slices.EqualFunc(got, tt.want, func(a, b Point) bool {
				return a.Step == b.Step && math.Float64bits(a.Value) == math.Float64bits(b.Value)
			}) {
				t.Errorf("got %v, want %v", got, tt.want)
			}
		})
	}
	names, err := s.MetricNames(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	if want := []string{"eval", "eval/loss", "loss", "lr"}; !slices.Equal(names, want) {
		t.Errorf("MetricNames = %v, want %v", names, want)
	}
	// Everything survives a reopen.
	s = reopen(t, s, Options{})
	if got, _ := s.ReadMetric(m.ID, "loss"); len(got) != 6 {
		t.Errorf("after reopen: %v", got)
	}
}

func TestMetricsErrors(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "m")
	if err := s.AddMetric("nope", "loss", 1, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if err := s.AddMetric(m.ID, "loss", -1, 1); err == nil {
		t.Error("negative step accepted")
	}
	if err := s.AddMetric(m.ID, "", 1, 1); err == nil {
		t.Error("empty name accepted")
	}
	if _, err := s.ReadMetric("nope", "loss"); !errors.Is(err, ErrNotFound) {
		t.Errorf("ReadMetric of unknown run: %v", err)
	}
}

// More values than the buffer holds are flushed along the way and all land.
func TestMetricsAutoFlush(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "m")
	n := flushAt*2 + 17
	for i := range n {
		if err := s.AddMetric(m.ID, "loss", n-i, float64(i)); err != nil {
			t.Fatal(err)
		}
	}
	s.mu.Lock()
	pending := s.pending.n
	s.mu.Unlock()
	if pending >= flushAt {
		t.Errorf("%d values still buffered", pending)
	}
	got, err := s.ReadMetric(m.ID, "loss")
	if err != nil || len(got) != n || got[0].Step != 1 || got[n-1].Step != n {
		t.Errorf("got %d points (%v)", len(got), err)
	}
}

// A sweep's pattern: runs write in turn, each flush leaves the finished
// runs idle and the next flush recycles their buffers for new series. Every
// run must read back exactly its own points (a recycled buffer carrying
// stale points would show up as extra or wrong values), and a call with a
// bad name must buffer none of its values.
func TestMetricsBufferReuse(t *testing.T) {
	s := openTemp(t)
	want := map[string]map[int]float64{}
	var ids []string
	for r := range 6 {
		id := newRun(t, s, "r").ID
		ids = append(ids, id)
		want[id] = map[int]float64{}
		steps := 600 - 60*r // shorter each time: stale points would stand out
		for step := 1; step <= steps; step++ {
			v := float64(r*1000 + step)
			if err := s.AddMetrics(id, step, map[string]float64{"loss": v, "lr": -v}); err != nil {
				t.Fatal(err)
			}
			want[id][step] = v
		}
		// A resumed run writes some steps again: the later value wins.
		for step := steps - 20; step <= steps; step++ {
			v := float64(r*1000+step) + 0.5
			if err := s.AddMetrics(id, step, map[string]float64{"loss": v, "lr": -v}); err != nil {
				t.Fatal(err)
			}
			want[id][step] = v
		}
		if err := s.AddMetrics(id, steps+1, map[string]float64{"loss": 1, "": 2}); err == nil {
			t.Fatal("empty metric name accepted")
		}
		if r%2 == 1 { // two runs per flush; each flush drops the idle ones
			if err := s.Flush(); err != nil {
				t.Fatal(err)
			}
		}
	}
	s.mu.Lock()
	recycled := len(s.pending.free)
	s.mu.Unlock()
	if recycled == 0 {
		t.Error("no buffer was recycled: the test does not exercise reuse")
	}
	for _, id := range ids {
		for _, name := range []string{"loss", "lr"} {
			got, err := s.ReadMetric(id, name)
			if err != nil {
				t.Fatal(err)
			}
			if len(got) != len(want[id]) {
				t.Errorf("run %s %s: %d points, want %d", id, name, len(got), len(want[id]))
				continue
			}
			for _, p := range got {
				w := want[id][p.Step]
				if name == "lr" {
					w = -w
				}
				if p.Value != w {
					t.Errorf("run %s %s step %d = %g, want %g", id, name, p.Step, p.Value, w)
					break
				}
			}
		}
	}
}
