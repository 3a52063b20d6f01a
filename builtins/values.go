package builtins

import (
	"encoding/json"
	"fmt"
	"math"
	"sync"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/kv"
)

// Model is a base model in a script. One from model.new or model.tiny is
// drawn from its config and seed only when something needs its weights,
// and then in the form it needs: lens.train with base_quant draws it
// packed (model.NewQuantized), so a QLoRA run of a 1B model never holds
// the 5 GB float32 model; generation and model.save draw the float32 one.
// Both give the same hash (that of the float32 weights), which the run
// records with Init and Seed to rebuild the same base on resume.
type Model struct {
	m   *model.Model // as loaded; for a drawn model, the float32 weights once drawn
	ref runs.BaseRef // Init (Hash set once drawn), Dir or Blob; never replaced
	cfg model.Config // a drawn model's config, defaults applied
	// packed is a drawn model as lens.train last held it packed (m nil).
	packed *model.Model
	mu     sync.Mutex // the draws: a frozen value may be shared by threads
}

// drawn returns a model value that model.new or model.tiny made: cfg
// (complete and valid) drawn from seed when first needed.
func drawn(cfg model.Config, seed uint64) *Model {
	return &Model{cfg: cfg, ref: runs.BaseRef{Init: true, Seed: seed}}
}

// config is the model's config, without drawing it.
func (m *Model) config() model.Config {
	if m.m != nil {
		return m.m.Config
	}
	return m.cfg
}

// model returns the model as loaded, drawing a seeded one in float32.
func (m *Model) model() (*model.Model, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.modelLocked()
}

func (m *Model) modelLocked() (*model.Model, error) {
	if m.m == nil {
		fm, h, err := model.NewQuantized(m.cfg, m.ref.Seed, "")
		if err != nil {
			return nil, err
		}
		if err := m.setHash(h); err != nil {
			return nil, err
		}
		m.m, m.packed = fm, nil // trainingBase packs m from now on
	}
	return m.m, nil
}

// trainingBase returns the model to train with base_quant kind and its
// reference: a seeded model not yet drawn in float32 is drawn packed as
// kind (and kept for the next run); any other is returned as held
// (train.New packs a float32 one).
func (m *Model) trainingBase(kind string) (*model.Model, runs.BaseRef, error) {
	m.mu.Lock()
	defer m.mu.Unlock()
	if m.m != nil || !m.ref.Init || kind == "" {
		fm, err := m.modelLocked()
		return fm, m.ref, err
	}
	if m.packed == nil || m.packed.Quant != kind {
		m.packed = nil // one packed form at a time
		pm, h, err := model.NewQuantized(m.cfg, m.ref.Seed, kind)
		if err != nil {
			return nil, runs.BaseRef{}, err
		}
		if err := m.setHash(h); err != nil {
			return nil, runs.BaseRef{}, err
		}
		m.packed = pm
	}
	return m.packed, m.ref, nil
}

// setHash records a drawn model's hash; drawn again, in any form, it must
// be the same.
func (m *Model) setHash(h string) error {
	if m.ref.Hash != "" && m.ref.Hash != h {
		return fmt.Errorf("model drawn from seed %d has hash %s, drawn before as %s", m.ref.Seed, h, m.ref.Hash)
	}
	m.ref.Hash = h
	return nil
}

var _ starlark.HasAttrs = (*Model)(nil)

func (m *Model) String() string {
	c := m.config()
	return fmt.Sprintf("<model hidden=%d layers=%d heads=%d vocab=%d params=%d>", c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.VocabSize, c.ParamCount())
}
func (m *Model) Type() string          { return "model" }
func (m *Model) Freeze()               {}
func (m *Model) Truth() starlark.Bool  { return true }
func (m *Model) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: model") }
func (m *Model) AttrNames() []string   { return []string{"config", "params", "save"} }
func (m *Model) Attr(name string) (starlark.Value, error) {
	switch name {
	case "config":
		b, _ := json.Marshal(m.config())
		return jsonToStarlark(b)
	case "params":
		return starlark.MakeInt(m.config().ParamCount()), nil
	case "save":
		return method("model.save", func(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			var dir string
			if err := unpack(fn, args, kwargs, &dir); err != nil {
				return nil, err
			}
			fm, err := m.model()
			if err != nil {
				return nil, fmt.Errorf("%s: %w", fn.Name(), err)
			}
			return starlark.None, fm.Save(dir)
		}), nil
	}
	return nil, nil
}

// loraValue is a LoRA configuration.
type loraValue struct{ c lora.Config }

func (l *loraValue) String() string {
	return fmt.Sprintf("<lora r=%d alpha=%g targets=%v rslora=%v>", l.c.Rank, l.c.Alpha, l.c.Targets, l.c.RSLoRA)
}
func (l *loraValue) Type() string          { return "lora.config" }
func (l *loraValue) Freeze()               {}
func (l *loraValue) Truth() starlark.Bool  { return true }
func (l *loraValue) Hash() (uint32, error) { return 0, fmt.Errorf("unhashable: lora.config") }
func (l *loraValue) AttrNames() []string {
	return []string{"r", "alpha", "dropout", "targets", "rslora", "scale"}
}
func (l *loraValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "r":
		return starlark.MakeInt(l.c.Rank), nil
	case "alpha":
		return starlark.Float(l.c.Alpha), nil
	case "dropout":
		return starlark.Float(l.c.Dropout), nil
	case "targets":
		return fromGo(anySlice(l.c.Targets)), nil
	case "rslora":
		return starlark.Bool(l.c.RSLoRA), nil
	case "scale":
		return starlark.Float(l.c.Scale()), nil
	}
	return nil, nil
}

func anySlice(s []string) []any {
	out := make([]any, len(s))
	for i, v := range s {
		out[i] = v
	}
	return out
}

// dataValue is a corpus reference.
type dataValue struct{ ref runs.DataRef }

func (d *dataValue) String() string        { return fmt.Sprintf("<data %s>", d.ref.Source) }
func (d *dataValue) Type() string          { return "data" }
func (d *dataValue) Freeze()               {}
func (d *dataValue) Truth() starlark.Bool  { return true }
func (d *dataValue) Hash() (uint32, error) { return starlark.String(d.ref.Source).Hash() }
func (d *dataValue) AttrNames() []string   { return []string{"source", "eval_frac"} }
func (d *dataValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "source":
		return starlark.String(d.ref.Source), nil
	case "eval_frac":
		return starlark.Float(d.ref.EvalFrac), nil
	}
	return nil, nil
}

// Run is a stored run, holding the record it was made from; a running
// run's record (with its live progress) is read again on each attribute.
// lens.runs makes runs from summaries (kv.RunSummary): partial is set and
// the full record (config) is read once, when an attribute needs it.
type Run struct {
	st      *kv.Store
	meta    kv.RunMeta
	partial bool
}

// full returns the run's whole record, reading it the first time a run
// made from a summary needs it.
func (r *Run) full() (kv.RunMeta, error) {
	if r.partial {
		m, err := r.st.GetRun(r.meta.ID)
		if err != nil {
			return kv.RunMeta{}, err
		}
		r.meta, r.partial = m, false
	}
	return r.meta, nil
}

func (r *Run) String() string {
	return fmt.Sprintf("<run %s %q %s steps=%d>", r.meta.ID, r.meta.Name, r.meta.Status, r.meta.Steps)
}
func (r *Run) Type() string          { return "run" }
func (r *Run) Freeze()               {}
func (r *Run) Truth() starlark.Bool  { return true }
func (r *Run) Hash() (uint32, error) { return starlark.String(r.meta.ID).Hash() }
func (r *Run) AttrNames() []string {
	return []string{"id", "name", "status", "reason", "config", "steps", "final_loss", "tags", "metrics", "metric_names", "checkpoints", "eval_loss", "records"}
}

func (r *Run) Attr(name string) (starlark.Value, error) {
	// The record was read when the value was made; only a run still
	// running can have changed since, so lens.runs(where=, order_by=)
	// over finished runs reads each record once.
	if r.meta.Status == kv.StatusRunning {
		if m, err := r.st.GetRun(r.meta.ID); err == nil {
			r.meta, r.partial = m, false
		}
	}
	switch name {
	case "id":
		return starlark.String(r.meta.ID), nil
	case "name":
		return starlark.String(r.meta.Name), nil
	case "status":
		return starlark.String(r.meta.Status), nil
	case "reason":
		return starlark.String(r.meta.Reason), nil
	case "steps":
		return starlark.MakeInt(r.meta.Steps), nil
	case "tags":
		return fromGo(anySlice(r.meta.Tags)), nil
	case "final_loss":
		if r.meta.FinalLoss == nil {
			return starlark.None, nil
		}
		return starlark.Float(*r.meta.FinalLoss), nil
	case "config":
		return r.config()
	case "metrics":
		return method("run.metrics", r.metrics), nil
	case "metric_names":
		names, err := r.st.MetricNames(r.meta.ID)
		if err != nil {
			return nil, err
		}
		return fromGo(anySlice(names)), nil
	case "checkpoints":
		return method("run.checkpoints", r.checkpoints), nil
	case "eval_loss":
		return method("run.eval_loss", r.evalLoss), nil
	case "records":
		return method("run.records", r.records), nil
	}
	return nil, nil
}

// config flattens the run's spec into the dict scripts filter on:
// training settings, LoRA settings (r, alpha, ...) and the data source.
func (r *Run) config() (starlark.Value, error) {
	m, err := r.full()
	if err != nil {
		return nil, err
	}
	spec, err := runs.SpecOf(m)
	if err != nil {
		return nil, err
	}
	return fromGo(runs.FlatConfig(spec)), nil
}

func (r *Run) metrics(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	if err := unpack(fn, args, kwargs, &name); err != nil {
		return nil, err
	}
	pts, err := r.st.ReadMetric(r.meta.ID, name)
	if err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(pts))
	for i, p := range pts {
		out[i] = starlark.Tuple{starlark.MakeInt(p.Step), starlark.Float(p.Value)}
	}
	return starlark.NewList(out), nil
}

func (r *Run) evalLoss(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var name string
	step := -1
	if err := unpack(fn, args, kwargs, &name, &step); err != nil {
		return nil, err
	}
	if name == "" {
		m, err := r.full()
		if err != nil {
			return nil, err
		}
		spec, err := runs.SpecOf(m)
		if err != nil {
			return nil, err
		}
		name = spec.MainEval()
	}
	pts, err := r.st.ReadMetric(r.meta.ID, "eval/"+name)
	if err != nil {
		return nil, err
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("%s: run %s has no eval set %q", fn.Name(), r.meta.ID, name)
	}
	if step < 0 {
		return starlark.Float(pts[len(pts)-1].Value), nil
	}
	for _, p := range pts {
		if p.Step == step {
			return starlark.Float(p.Value), nil
		}
	}
	return nil, fmt.Errorf("%s: run %s has no %s evaluation at step %d", fn.Name(), r.meta.ID, name, step)
}

func (r *Run) checkpoints(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	if err := unpack(fn, args, kwargs); err != nil {
		return nil, err
	}
	cps, err := r.st.Checkpoints(r.meta.ID)
	if err != nil {
		return nil, err
	}
	out := make([]starlark.Value, len(cps))
	for i, c := range cps {
		ev := starlark.NewDict(len(c.EvalLoss))
		for k, v := range c.EvalLoss {
			ev.SetKey(starlark.String(k), starlark.Float(v))
		}
		out[i] = starlarkstruct.FromStringDict(starlark.String("checkpoint"), starlark.StringDict{
			"step": starlark.MakeInt(c.Step), "eval_loss": ev, "time": starlark.String(c.Time.Format("2006-01-02 15:04:05")),
		})
	}
	return starlark.NewList(out), nil
}

func finite(f float64) bool { return !math.IsNaN(f) && !math.IsInf(f, 0) }

// records(collector, step=None) returns a collector's JSON records as
// structs with step, name and value (a dict).
func (r *Run) records(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var collector string
	step := -1
	if err := unpack(fn, args, kwargs, &collector, &step); err != nil {
		return nil, err
	}
	items, err := r.st.ReadCollected(r.meta.ID, collector)
	if err != nil {
		return nil, err
	}
	var out []starlark.Value
	for _, it := range items {
		if it.Kind != kv.KindJSON || (step >= 0 && it.Step != step) {
			continue
		}
		v, err := jsonToStarlark(it.Data)
		if err != nil {
			return nil, fmt.Errorf("%s: %s step %d %s: %w", fn.Name(), collector, it.Step, it.Name, err)
		}
		out = append(out, starlarkstruct.FromStringDict(starlark.String("record"), starlark.StringDict{
			"step": starlark.MakeInt(it.Step), "name": starlark.String(it.Name), "value": v}))
	}
	return starlark.NewList(out), nil
}
