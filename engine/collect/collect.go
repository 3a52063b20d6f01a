// Package collect gathers data during training through the trainer's hook
// points and writes it to the store as typed records: adapter weights and
// their ΔW spectra, adapter gradients (read between backward and the
// optimizer step, while they are live), LoRA-path activations and
// TransformerLens-style activations on a fixed probe batch. Each collector
// runs at its own frequency, stores one record per module per collected
// step (never a cumulative history), and the same record types are what
// analyzers read back. Collectors are pluggable through a Registry.
package collect

import (
	"encoding/json"
	"fmt"

	"lens/engine/registry"
	"lens/engine/train"
	"lens/kv"
)

// Spec names a collector and its settings; a run stores its specs so the
// same collectors come back on resume.
type Spec struct {
	Name    string         `json:"name"`
	Every   int            `json:"every"`
	Options map[string]any `json:"options,omitempty"`
}

// Sink is where a collector writes its records for one run.
type Sink interface {
	PutJSON(collector string, step int, name string, v any) error
	PutTensor(collector string, step int, t kv.Tensor) error
}

// batch gathers one collector's records of a step so they are written in
// one store transaction.
type batch struct {
	sink      Sink
	collector string
	step      int
	items     []kv.Collected
}

func newBatch(s Sink, collector string, step int) *batch {
	return &batch{sink: s, collector: collector, step: step}
}

func (b *batch) json(name string, v any) error {
	data, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("%s %s: %w", b.collector, name, err)
	}
	b.items = append(b.items, kv.Collected{Name: name, Kind: kv.KindJSON, Data: data})
	return nil
}

func (b *batch) tensor(t kv.Tensor) {
	b.items = append(b.items, kv.Collected{Name: t.Name, Kind: kv.KindTensor, Tensor: &t})
}

// flush writes the batch: in one transaction to a StoreSink, item by item
// to other sinks.
func (b *batch) flush() error {
	if len(b.items) == 0 {
		return nil
	}
	if ss, ok := b.sink.(StoreSink); ok {
		return ss.Store.PutCollected(ss.RunID, b.collector, b.step, b.items...)
	}
	for _, it := range b.items {
		var err error
		if it.Kind == kv.KindTensor {
			err = b.sink.PutTensor(b.collector, b.step, *it.Tensor)
		} else {
			var v json.RawMessage = it.Data
			err = b.sink.PutJSON(b.collector, b.step, it.Name, v)
		}
		if err != nil {
			return err
		}
	}
	return nil
}

// Probe is the fixed batch activations are measured on.
type Probe struct {
	Inputs, Targets []int32
	Batch           int

	// The last forward run, shared by the collectors of a step.
	acts    train.Activations
	step    int
	trainer *train.Trainer
}

// Collector attaches hooks to a trainer.
type Collector interface {
	Name() string
	Hooks(t *train.Trainer, sink Sink, probe *Probe) train.Hooks
}

// Factory builds a collector from a spec.
type Factory func(s Spec) (Collector, error)

// Registration describes a collector kind.
type Registration struct {
	Name     string
	Doc      string
	Produces string // the record type it writes, e.g. "AdapterWeights"
	Factory  Factory
}

// Registry maps collector names to factories.
type Registry struct{ m registry.Map[Registration] }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register adds or replaces a collector kind.
func (r *Registry) Register(reg Registration) { r.m.Set(reg.Name, reg) }

// Build makes the collector a spec names.
func (r *Registry) Build(s Spec) (Collector, error) {
	reg, ok := r.m.Get(s.Name)
	if !ok {
		return nil, fmt.Errorf("collector %q is not registered (known: %v)", s.Name, r.Names())
	}
	if s.Every <= 0 {
		return nil, fmt.Errorf("collector %s: every = %d: must be positive", s.Name, s.Every)
	}
	return reg.Factory(s)
}

// Names lists the registered collectors.
func (r *Registry) Names() []string { return r.m.Names() }

// Get returns a registration.
func (r *Registry) Get(name string) (Registration, bool) { return r.m.Get(name) }

// Default holds the built-in collectors.
var Default = NewRegistry()

// StoreSink writes records of one run to the store.
type StoreSink struct {
	Store *kv.Store
	RunID string
}

// PutJSON stores a JSON record.
func (s StoreSink) PutJSON(collector string, step int, name string, v any) error {
	return s.Store.PutCollectedJSON(s.RunID, collector, step, name, v)
}

// PutTensor stores a tensor.
func (s StoreSink) PutTensor(collector string, step int, t kv.Tensor) error {
	return s.Store.PutCollectedTensor(s.RunID, collector, step, t)
}

// Read decodes every JSON record of a collector in a run into T, by step
// and record name.
func Read[T any](st *kv.Store, runID, collector string) ([]Record[T], error) {
	items, err := st.ReadCollected(runID, collector)
	if err != nil {
		return nil, err
	}
	var out []Record[T]
	for _, it := range items {
		if it.Kind != kv.KindJSON {
			continue
		}
		var v T
		if err := json.Unmarshal(it.Data, &v); err != nil {
			return nil, fmt.Errorf("run %s collector %s step %d %s: %w", runID, collector, it.Step, it.Name, err)
		}
		out = append(out, Record[T]{Step: it.Step, Name: it.Name, Value: v})
	}
	return out, nil
}

// Record is one stored record.
type Record[T any] struct {
	Step  int
	Name  string
	Value T
}
