package runs

import (
	"fmt"
	"log/slog"

	"lens/kv"
)

// Sink mirrors a run somewhere outside the store while it trains
// (TensorBoard event files, Weights & Biases). The store stays the record:
// a sink that fails is reported once (a "sink_error" event and a log line)
// and not called again, and training goes on.
type Sink interface {
	// Name says which integration this is, for messages ("tensorboard").
	Name() string
	// Start is called once the run record exists; meta.Config holds the
	// run's spec as JSON.
	Start(meta kv.RunMeta) error
	// Log receives the metrics recorded at step, with the names used in the
	// store ("loss", "lr", "eval/opticks", ...). Each (step, name) arrives once.
	Log(step int, metrics map[string]float64) error
	// Finish is called with the final record (status, steps, final loss).
	Finish(meta kv.RunMeta) error
}

// TensorSink is a Sink that also wants tensors: the adapter (or, for full
// training, the trained) weights at each checkpoint, for distributions.
type TensorSink interface {
	Sink
	Tensors(step int, kind string, tensors []kv.Tensor) error
}

// sinks fans calls out to the run's sinks and retires the ones that fail.
type sinks struct {
	list  []Sink
	dead  []bool
	st    *kv.Store
	runID string
	log   *slog.Logger
}

func newSinks(list []Sink, st *kv.Store, runID string, log *slog.Logger) *sinks {
	return &sinks{list: list, dead: make([]bool, len(list)), st: st, runID: runID, log: log}
}

// call runs fn on every live sink; a failure is reported once and the sink
// is dropped, so one broken integration never stops the run.
func (s *sinks) call(step int, what string, fn func(Sink) error) {
	if s == nil {
		return
	}
	for i, k := range s.list {
		if s.dead[i] {
			continue
		}
		if err := fn(k); err != nil {
			s.dead[i] = true
			msg := fmt.Sprintf("%s: %s failed, not logging to it for the rest of this run (the store has everything): %v", k.Name(), what, err)
			s.log.Warn(msg, "run", s.runID)
			_ = s.st.AddEvent(s.runID, kv.Event{Step: step, Kind: "sink_error", Message: msg})
		}
	}
}

func (s *sinks) start(meta kv.RunMeta) {
	s.call(0, "start", func(k Sink) error { return k.Start(meta) })
}

func (s *sinks) logMetrics(step int, vals map[string]float64) {
	s.call(step, "log", func(k Sink) error { return k.Log(step, vals) })
}

func (s *sinks) tensors(step int, kind string, ts []kv.Tensor) {
	s.call(step, "tensors", func(k Sink) error {
		if t, ok := k.(TensorSink); ok {
			return t.Tensors(step, kind, ts)
		}
		return nil
	})
}

func (s *sinks) finish(meta kv.RunMeta) {
	s.call(meta.Steps, "finish", func(k Sink) error { return k.Finish(meta) })
}
