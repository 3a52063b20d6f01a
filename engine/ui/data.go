package ui

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"time"

	"lens/engine/analyzers"
	"lens/engine/collect"
	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/kv"
)

// num is a float for JSON: NaN and ±Inf, which JSON cannot hold, become null.
type num float64

func (f num) MarshalJSON() ([]byte, error) {
	if math.IsNaN(float64(f)) || math.IsInf(float64(f), 0) {
		return []byte("null"), nil
	}
	return json.Marshal(float64(f))
}

func optNum(p *float64) *num {
	if p == nil {
		return nil
	}
	n := num(*p)
	return &n
}

// Row is one run in the runs table.
type Row struct {
	ID        string         `json:"id"`
	Name      string         `json:"name"`
	Status    string         `json:"status"`
	Reason    string         `json:"reason,omitempty"`
	Steps     int            `json:"steps"`
	FinalLoss *num           `json:"final_loss"`
	Tags      []string       `json:"tags"`
	Created   time.Time      `json:"created"`
	Updated   time.Time      `json:"updated"`
	Config    map[string]any `json:"config,omitempty"`  // the columns asked for
	Planned   int            `json:"planned,omitempty"` // a running run's planned steps
}

func row(st *kv.Store, m kv.RunMeta) Row {
	r := Row{ID: m.ID, Name: m.Name, Status: m.Status, Reason: m.Reason, Steps: liveSteps(st, m),
		FinalLoss: optNum(m.FinalLoss), Tags: m.Tags, Created: m.Created, Updated: m.Updated}
	if r.Tags == nil {
		r.Tags = []string{}
	}
	if m.Status == kv.StatusRunning && m.Progress != nil {
		r.Planned = m.Progress.Steps
	}
	return r
}

// FlatConfig is the flat dict a script sees as run.config (builtins'
// Run.config): training and LoRA settings, lora_seed, data, checkpoint_every,
// init, device, and the model config under "model". Runs whose config is not
// a runs.Spec (imported from elsewhere) give their raw JSON object.
func FlatConfig(m kv.RunMeta) map[string]any {
	spec, err := runs.SpecOf(m)
	if err != nil {
		flat := map[string]any{}
		_ = json.Unmarshal(m.Config, &flat)
		return flat
	}
	return runs.FlatConfig(spec)
}

// fields is what a Filter sees of a run.
func fields(m kv.RunMeta, cfg map[string]any) map[string]any {
	tags := make([]any, len(m.Tags))
	for i, t := range m.Tags {
		tags[i] = t
	}
	var fl any
	if m.FinalLoss != nil {
		fl = *m.FinalLoss
	}
	return map[string]any{
		"id": m.ID, "name": m.Name, "status": m.Status, "reason": m.Reason,
		"steps": float64(m.Steps), "final_loss": fl, "tags": tags,
		"created": m.Created.UTC().Format(time.RFC3339), "config": cfg,
	}
}

// liveSteps is the last step a running run recorded: its record's step
// count is written when it ends. The run's progress (kv.Progress, reported
// by the training process) says it without reading the loss series.
func liveSteps(st *kv.Store, m kv.RunMeta) int {
	if m.Status != kv.StatusRunning {
		return m.Steps
	}
	if m.Progress != nil {
		return max(m.Steps, m.Progress.Step)
	}
	pts, err := st.ReadMetric(m.ID, "loss")
	if err != nil || len(pts) == 0 {
		return m.Steps
	}
	return max(m.Steps, pts[len(pts)-1].Step)
}

// RunsPage is the runs table.
type RunsPage struct {
	Runs       []Row    `json:"runs"`
	Total      int      `json:"total"`       // runs in the store, before the filter
	ConfigKeys []string `json:"config_keys"` // every flat config field, for columns on demand
}

// flatCache keeps each run's FlatConfig while its record is unchanged, so a
// poll of a large store does not decode every config again.
type flatCache struct {
	mu sync.Mutex
	m  map[string]flatEntry
}

type flatEntry struct {
	updated time.Time
	status  string
	flat    map[string]any
}

func (c *flatCache) get(m kv.RunMeta) map[string]any {
	if c == nil {
		return FlatConfig(m)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if e, ok := c.m[m.ID]; ok && e.updated.Equal(m.Updated) && e.status == m.Status {
		return e.flat
	}
	if c.m == nil {
		c.m = map[string]flatEntry{}
	}
	f := FlatConfig(m)
	c.m[m.ID] = flatEntry{updated: m.Updated, status: m.Status, flat: f}
	return f
}

func runsPage(st *kv.Store, where *Filter, columns []string, cache *flatCache) (*RunsPage, error) {
	list, err := st.ListRuns()
	if err != nil {
		return nil, err
	}
	page := &RunsPage{Runs: []Row{}, Total: len(list)}
	keys := map[string]bool{}
	for _, m := range list {
		cfg := cache.get(m)
		for k, v := range cfg {
			if _, nested := v.(map[string]any); !nested {
				keys[k] = true
			}
		}
		if where != nil {
			ok, err := where.Match(fields(m, cfg))
			if err != nil {
				return nil, &badRequest{fmt.Sprintf("where: run %s: %v", m.ID, err)}
			}
			if !ok {
				continue
			}
		}
		r := row(st, m)
		if len(columns) > 0 {
			r.Config = map[string]any{}
			for _, c := range columns {
				r.Config[c] = cfg[c]
			}
		}
		page.Runs = append(page.Runs, r)
	}
	for k := range keys {
		page.ConfigKeys = append(page.ConfigKeys, k)
	}
	sort.Strings(page.ConfigKeys)
	return page, nil
}

// Checkpoint is one checkpoint on the run page.
type Checkpoint struct {
	Step     int            `json:"step"`
	Time     time.Time      `json:"time"`
	EvalLoss map[string]num `json:"eval_loss"`
	Best     bool           `json:"best"` // lowest eval loss on the run's own data
}

// RunPage is everything on a run's page but the series, which come one
// metric at a time.
type RunPage struct {
	Row
	Script      string         `json:"script,omitempty"`
	Seed        uint64         `json:"seed"`
	LensVersion string         `json:"lens_version,omitempty"`
	FlatConfig  map[string]any `json:"flat_config"`
	Config      map[string]any `json:"raw_config"`
	Metrics     []string       `json:"metrics"`
	MainEval    string         `json:"main_eval,omitempty"` // eval/<set> of the run's own data
	Checkpoints []Checkpoint   `json:"checkpoints"`
	Events      []kv.Event     `json:"events"`
	Collectors  []string       `json:"collectors"`
	// Series holds the metrics asked for with ?series=, downsampled.
	Series map[string]*Series `json:"series,omitempty"`
}

func runPage(st *kv.Store, id string) (*RunPage, error) {
	m, err := st.GetRun(id)
	if err != nil {
		return nil, err
	}
	p := &RunPage{Row: row(st, m), Script: m.Script, Seed: m.Seed, LensVersion: m.LensVersion, FlatConfig: FlatConfig(m)}
	_ = json.Unmarshal(m.Config, &p.Config)
	if p.Metrics, err = st.MetricNames(id); err != nil {
		return nil, err
	}
	main := ""
	if spec, err := runs.SpecOf(m); err == nil {
		main = spec.MainEval()
		p.MainEval = "eval/" + main
	}
	cks, err := st.Checkpoints(id)
	if err != nil {
		return nil, err
	}
	best, bestLoss := -1, math.Inf(1)
	for i, c := range cks {
		ck := Checkpoint{Step: c.Step, Time: c.Time, EvalLoss: map[string]num{}}
		for k, v := range c.EvalLoss {
			ck.EvalLoss[k] = num(v)
		}
		if v, ok := c.EvalLoss[main]; ok && v < bestLoss {
			best, bestLoss = i, v
		}
		p.Checkpoints = append(p.Checkpoints, ck)
	}
	if best >= 0 {
		p.Checkpoints[best].Best = true
	}
	if p.Events, err = st.Events(id); err != nil {
		return nil, err
	}
	if p.Collectors, err = st.Collectors(id); err != nil {
		return nil, err
	}
	if p.Checkpoints == nil {
		p.Checkpoints = []Checkpoint{}
	}
	if p.Events == nil {
		p.Events = []kv.Event{}
	}
	return p, nil
}

// Series is one metric, downsampled for a chart.
type Series struct {
	Run    string `json:"run"`
	Name   string `json:"name"`
	Total  int    `json:"total"` // points stored
	Steps  []int  `json:"steps"`
	Values []num  `json:"values"`
	First  int    `json:"first"` // step range stored
	Last   int    `json:"last"`
	Exact  bool   `json:"exact"` // every point in range is here
}

func series(st *kv.Store, id, name string, from, to float64, width int) (*Series, error) {
	if _, err := st.GetRun(id); err != nil {
		return nil, err
	}
	pts, err := st.ReadMetric(id, name)
	if err != nil {
		return nil, err
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("run %s has no metric %q: %w", id, name, kv.ErrNotFound)
	}
	ds := Downsample(pts, from, to, width)
	s := &Series{Run: id, Name: name, Total: len(pts), First: pts[0].Step, Last: pts[len(pts)-1].Step,
		Steps: make([]int, len(ds)), Values: make([]num, len(ds)), Exact: len(ds) <= 2*width}
	for i, p := range ds {
		s.Steps[i], s.Values[i] = p.Step, num(p.Value)
	}
	return s, nil
}

// Heatmap is a matrix for a canvas heatmap: Values[row][col].
type Heatmap struct {
	Title  string   `json:"title"`
	Rows   []string `json:"rows"`
	Cols   []string `json:"cols"`
	Values [][]num  `json:"values"`
}

// Lines are several series over the same steps, one per module or hook.
type Lines struct {
	Title  string   `json:"title"`
	Steps  []int    `json:"steps"`
	Names  []string `json:"names"`
	Values [][]num  `json:"values"` // Values[series][step index]; null where missing
	Log    bool     `json:"log,omitempty"`
}

// Panel is one collector's charts, with the findings of the analyzer that
// reads the same records.
type Panel struct {
	Collector string    `json:"collector"`
	Heatmaps  []Heatmap `json:"heatmaps,omitempty"`
	Lines     []Lines   `json:"lines,omitempty"`
	Records   int       `json:"records"`
	Note      string    `json:"note,omitempty"`
}

// maxCols caps the steps drawn in a heatmap or line set; longer runs are
// thinned to evenly spaced collected steps.
const maxCols = 400

func collectPanels(st *kv.Store, id string) ([]Panel, error) {
	names, err := st.Collectors(id)
	if err != nil {
		return nil, err
	}
	var out []Panel
	for _, c := range names {
		recs, err := readThinned(st, id, c)
		if err != nil {
			return nil, err
		}
		p := Panel{Collector: c, Records: len(recs)}
		switch c {
		case "adapter_weights":
			byStep := decodeBy[collect.AdapterWeights](recs, func(r collect.AdapterWeights) string { return r.Module })
			p.Heatmaps = append(p.Heatmaps, moduleHeatmap("effective rank of ΔW per module", byStep,
				func(r collect.AdapterWeights) float64 { return r.EffectiveRank }))
			p.Lines = append(p.Lines, moduleLines("‖ΔW‖_F per module", byStep, func(r collect.AdapterWeights) float64 { return r.DeltaFro }, false))
			p.Heatmaps = append(p.Heatmaps, spectrumHeatmaps(byStep)...)
		case "adapter_grads":
			byStep := decodeBy[collect.AdapterGrads](recs, func(r collect.AdapterGrads) string { return r.Module })
			p.Lines = append(p.Lines,
				moduleLines("‖∇B‖/‖∇A‖ per module", byStep, func(r collect.AdapterGrads) float64 { return collect.OrNaN(r.RatioBA) }, true),
				moduleLines("update ratio ‖ΔA‖/‖A‖ per module", byStep, func(r collect.AdapterGrads) float64 { return r.UpdateRatioA }, true))
		case "lora_activations":
			byStep := decodeBy[collect.LoRAActivation](recs, func(r collect.LoRAActivation) string { return r.Module })
			p.Lines = append(p.Lines, moduleLines("‖LoRA path‖/‖base path‖ per module", byStep, func(r collect.LoRAActivation) float64 { return r.Ratio }, true))
		case "activations":
			byStep := decodeBy[collect.ActivationStats](recs, func(r collect.ActivationStats) string { return r.Hook })
			p.Heatmaps = append(p.Heatmaps, histHeatmaps(byStep)...)
			p.Lines = append(p.Lines, moduleLines("activation std per hook", byStep, func(r collect.ActivationStats) float64 { return r.Std }, false))
		default:
			p.Lines = append(p.Lines, jsonLines(c, recs)...)
			if len(p.Lines) == 0 {
				p.Note = "no numeric fields to chart"
			}
		}
		out = append(out, p)
	}
	return out, nil
}

// readThinned reads a collector's records at no more than maxCols evenly
// spaced collected steps: a long run, or one that keeps tensors, is not
// read whole for one page.
func readThinned(st *kv.Store, id, c string) ([]kv.Collected, error) {
	steps, err := st.CollectedSteps(id, c)
	if err != nil {
		return nil, err
	}
	if len(steps) <= maxCols {
		return st.ReadCollected(id, c)
	}
	var out []kv.Collected
	for _, step := range thin(steps, maxCols) {
		recs, err := st.ReadCollectedStep(id, c, step)
		if err != nil {
			return nil, err
		}
		out = append(out, recs...)
	}
	return out, nil
}

// stepMap is records by collected step, then by module (or hook).
type stepMap[T any] struct {
	steps []int
	keys  []string
	at    map[int]map[string]T
}

func decodeBy[T any](recs []kv.Collected, key func(T) string) stepMap[T] {
	m := stepMap[T]{at: map[int]map[string]T{}}
	seen := map[string]bool{}
	for _, r := range recs {
		if r.Kind != kv.KindJSON {
			continue
		}
		var v T
		if json.Unmarshal(r.Data, &v) != nil {
			continue
		}
		k := key(v)
		if k == "" {
			continue // a record of another type under the same collector (StepGrads)
		}
		if m.at[r.Step] == nil {
			m.at[r.Step] = map[string]T{}
			m.steps = append(m.steps, r.Step)
		}
		m.at[r.Step][k] = v
		if !seen[k] {
			seen[k] = true
			m.keys = append(m.keys, k)
		}
	}
	sort.Ints(m.steps)
	sort.Strings(m.keys)
	m.steps = thin(m.steps, maxCols)
	return m
}

func thin(steps []int, n int) []int {
	if len(steps) <= n {
		return steps
	}
	out := make([]int, n)
	for i := range out {
		out[i] = steps[i*(len(steps)-1)/(n-1)]
	}
	return out
}

func stepLabels(steps []int) []string {
	out := make([]string, len(steps))
	for i, s := range steps {
		out[i] = fmt.Sprint(s)
	}
	return out
}

func moduleHeatmap[T any](title string, m stepMap[T], f func(T) float64) Heatmap {
	h := Heatmap{Title: title, Rows: m.keys, Cols: stepLabels(m.steps)}
	for _, k := range m.keys {
		row := make([]num, len(m.steps))
		for j, s := range m.steps {
			row[j] = num(math.NaN())
			if r, ok := m.at[s][k]; ok {
				row[j] = num(f(r))
			}
		}
		h.Values = append(h.Values, row)
	}
	return h
}

func moduleLines[T any](title string, m stepMap[T], f func(T) float64, log bool) Lines {
	l := Lines{Title: title, Steps: m.steps, Names: m.keys, Log: log}
	for _, k := range m.keys {
		row := make([]num, len(m.steps))
		for j, s := range m.steps {
			row[j] = num(math.NaN())
			if r, ok := m.at[s][k]; ok {
				row[j] = num(f(r))
			}
		}
		l.Values = append(l.Values, row)
	}
	return l
}

// spectrumHeatmaps: per module, the singular values of ΔW (rows: index)
// over steps.
func spectrumHeatmaps(m stepMap[collect.AdapterWeights]) []Heatmap {
	var out []Heatmap
	for _, k := range m.keys {
		r := 0
		for _, s := range m.steps {
			r = max(r, len(m.at[s][k].SV))
		}
		if r == 0 {
			continue
		}
		h := Heatmap{Title: "ΔW singular values: " + k, Cols: stepLabels(m.steps)}
		for i := range r {
			h.Rows = append(h.Rows, fmt.Sprintf("σ%d", i+1))
			row := make([]num, len(m.steps))
			for j, s := range m.steps {
				row[j] = num(math.NaN())
				if sv := m.at[s][k].SV; i < len(sv) {
					row[j] = num(sv[i])
				}
			}
			h.Values = append(h.Values, row)
		}
		out = append(out, h)
	}
	return out
}

// histHeatmaps: per hook, the activation histogram (rows: bins, labelled
// with the latest step's edges) over steps, each column normalised to sum 1.
func histHeatmaps(m stepMap[collect.ActivationStats]) []Heatmap {
	var out []Heatmap
	for _, k := range m.keys {
		var last collect.ActivationStats
		for _, s := range m.steps {
			if r, ok := m.at[s][k]; ok && len(r.Hist) > 0 {
				last = r
			}
		}
		bins := len(last.Hist)
		if bins == 0 {
			continue
		}
		h := Heatmap{Title: "activation histogram: " + k, Cols: stepLabels(m.steps)}
		for b := bins - 1; b >= 0; b-- {
			label := fmt.Sprint(b)
			if len(last.Edges) == bins+1 {
				label = fmt.Sprintf("%.3g", (last.Edges[b]+last.Edges[b+1])/2)
			}
			h.Rows = append(h.Rows, label)
			row := make([]num, len(m.steps))
			for j, s := range m.steps {
				row[j] = num(math.NaN())
				r, ok := m.at[s][k]
				if !ok || len(r.Hist) != bins {
					continue
				}
				total := 0
				for _, c := range r.Hist {
					total += c
				}
				if total > 0 {
					row[j] = num(float64(r.Hist[b]) / float64(total))
				}
			}
			h.Values = append(h.Values, row)
		}
		out = append(out, h)
	}
	return out
}

// jsonLines charts the numeric top-level fields of a Starlark collector's
// records, one chart per field, one line per record name.
func jsonLines(c string, recs []kv.Collected) []Lines {
	type key struct{ field, name string }
	vals := map[key]map[int]float64{}
	stepSet := map[int]bool{}
	var fieldsSeen, names []string
	seenF, seenN := map[string]bool{}, map[string]bool{}
	for _, r := range recs {
		var obj map[string]any
		if r.Kind != kv.KindJSON || json.Unmarshal(r.Data, &obj) != nil {
			continue
		}
		for f, v := range obj {
			x, ok := v.(float64)
			if !ok {
				continue
			}
			k := key{f, r.Name}
			if vals[k] == nil {
				vals[k] = map[int]float64{}
			}
			vals[k][r.Step] = x
			stepSet[r.Step] = true
			if !seenF[f] {
				seenF[f] = true
				fieldsSeen = append(fieldsSeen, f)
			}
			if !seenN[r.Name] {
				seenN[r.Name] = true
				names = append(names, r.Name)
			}
		}
	}
	var steps []int
	for s := range stepSet {
		steps = append(steps, s)
	}
	sort.Ints(steps)
	steps = thin(steps, maxCols)
	sort.Strings(fieldsSeen)
	sort.Strings(names)
	var out []Lines
	for _, f := range fieldsSeen {
		l := Lines{Title: c + ": " + f, Steps: steps}
		for _, n := range names {
			v := vals[key{f, n}]
			if v == nil {
				continue
			}
			row := make([]num, len(steps))
			for j, s := range steps {
				row[j] = num(math.NaN())
				if x, ok := v[s]; ok {
					row[j] = num(x)
				}
			}
			l.Names, l.Values = append(l.Names, n), append(l.Values, row)
		}
		out = append(out, l)
	}
	return out
}

// Finding is what one analyzer says about a run, for the panel whose
// records it reads.
type Finding struct {
	Analyzer string   `json:"analyzer"`
	Panel    string   `json:"panel"` // "metrics", "checkpoints" or a collector name
	Findings []string `json:"findings"`
	Error    string   `json:"error,omitempty"`
}

// analyzerPanels places each single-run analyzer beside the charts of the
// records it reads.
var analyzerPanels = []struct{ analyzer, panel string }{
	{"convergence", "metrics"},
	{"gradient", "adapter_grads"},
	{"checkpoint", "checkpoints"},
	{"lora", "adapter_weights"},
	{"activation", "activations"},
}

func findings(st *kv.Store, id string) ([]Finding, error) {
	if _, err := st.GetRun(id); err != nil {
		return nil, err
	}
	out := []Finding{}
	for _, a := range analyzerPanels {
		if _, ok := analyzers.Default.Get(a.analyzer); !ok {
			continue
		}
		f := Finding{Analyzer: a.analyzer, Panel: a.panel}
		res, err := analyzers.Default.Run(a.analyzer, st, id)
		if err != nil {
			f.Error = err.Error()
		} else {
			f.Findings = res.Findings
		}
		out = append(out, f)
	}
	return out, nil
}

// Compare is the compare view.
type Compare struct {
	Runs    []Row       `json:"runs"`
	Diff    []DiffField `json:"diff"`
	Metric  string      `json:"metric"`
	Series  []*Series   `json:"series"`
	Phi     *Phi        `json:"phi,omitempty"`
	PhiNote string      `json:"phi_note,omitempty"`
}

// DiffField is a config field whose value differs between the compared runs.
type DiffField struct {
	Field  string `json:"field"`
	Values []any  `json:"values"` // one per run; null where absent
}

// Phi is the subspace similarity grid of the first two runs' lora_A at
// their latest checkpoints, with the random-subspace baseline.
type Phi struct {
	Module   string      `json:"module"`
	Modules  []string    `json:"modules"`
	Grid     [][]float64 `json:"grid"`
	Baseline [][]float64 `json:"baseline"`
}

// flatten turns nested dicts into dotted keys (model.hidden_size).
func flatten(prefix string, v any, out map[string]any) {
	if m, ok := v.(map[string]any); ok && (prefix == "" || len(m) > 0) {
		for k, x := range m {
			key := k
			if prefix != "" {
				key = prefix + "." + k
			}
			flatten(key, x, out)
		}
		return
	}
	out[prefix] = v
}

func compareRuns(st *kv.Store, ids []string, metric, module string, width int) (*Compare, error) {
	c := &Compare{Metric: metric, Diff: []DiffField{}}
	var flats []map[string]any
	for _, id := range ids {
		m, err := st.GetRun(id)
		if err != nil {
			return nil, err
		}
		c.Runs = append(c.Runs, row(st, m))
		f := map[string]any{}
		flatten("", FlatConfig(m), f)
		if _, ok := f["seed"]; !ok {
			f["seed"] = float64(m.Seed)
		}
		f["script"] = m.Script
		tags := make([]any, len(m.Tags))
		for i, t := range m.Tags {
			tags[i] = t
		}
		f["tags"] = tags
		flats = append(flats, f)
		s, err := series(st, id, metric, math.Inf(-1), math.Inf(1), width)
		if errors.Is(err, kv.ErrNotFound) {
			continue
		}
		if err != nil {
			return nil, err
		}
		c.Series = append(c.Series, s)
	}
	keys := map[string]bool{}
	for _, f := range flats {
		for k := range f {
			keys[k] = true
		}
	}
	var sorted []string
	for k := range keys {
		sorted = append(sorted, k)
	}
	sort.Strings(sorted)
	for _, k := range sorted {
		d := DiffField{Field: k}
		differ := false
		for i, f := range flats {
			d.Values = append(d.Values, f[k])
			if i > 0 && !equal(f[k], flats[0][k]) {
				differ = true
			}
		}
		if differ {
			c.Diff = append(c.Diff, d)
		}
	}
	if len(ids) >= 2 {
		phi, err := subspace(st, ids[0], ids[1], module)
		if err != nil {
			c.PhiNote = err.Error()
		} else {
			c.Phi = phi
		}
	}
	return c, nil
}

func subspace(st *kv.Store, id1, id2, module string) (*Phi, error) {
	a1, _, err := runs.Adapter(st, id1, -1)
	if err != nil {
		return nil, err
	}
	a2, _, err := runs.Adapter(st, id2, -1)
	if err != nil {
		return nil, err
	}
	if a1 == nil || a2 == nil {
		return nil, fmt.Errorf("subspace similarity compares two LoRA runs")
	}
	var common []string
	for _, m := range a1.Modules {
		if _, ok := a2.A[m]; ok {
			common = append(common, m)
		}
	}
	sort.Strings(common)
	if len(common) == 0 {
		return nil, fmt.Errorf("the two runs adapt no module in common")
	}
	if module == "" {
		module = common[len(common)/2]
	} else if !contains1(common, module) {
		return nil, &badRequest{fmt.Sprintf("module %q is not adapted in both runs", module)}
	}
	grid, base, err := analyzers.Subspace(st, id1, id2, module, -1, -1)
	if err != nil {
		return nil, err
	}
	return &Phi{Module: module, Modules: common, Grid: grid, Baseline: base}, nil
}

func contains1(list []string, s string) bool {
	for _, x := range list {
		if x == s {
			return true
		}
	}
	return false
}

// SweepView is one sweep of the store's sweeps/ directory.
type SweepView struct {
	Name    string         `json:"name"`
	Backend string         `json:"backend"`
	Halving *sweep.Halving `json:"halving,omitempty"`
	Trials  []TrialView    `json:"trials"`
	Counts  map[string]int `json:"counts"`
	Best    *TrialView     `json:"best,omitempty"`
	Error   string         `json:"error,omitempty"`
}

// TrialView is a trial with its live progress when it is running.
type TrialView struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"`
	Point    json.RawMessage `json:"point"`
	State    string          `json:"state"`
	RunID    string          `json:"run_id,omitempty"`
	Step     int             `json:"step"`
	Steps    int             `json:"steps,omitempty"` // planned, while running
	Best     *num            `json:"best"`
	Rungs    []float64       `json:"rungs,omitempty"`
	Attempts int             `json:"attempts"`
	Error    string          `json:"error,omitempty"`
}

// sweeps reads STORE/sweeps/*/sweep.json (engine/sweep keeps them there)
// and each running trial's progress.json.
func sweeps(dir string) ([]SweepView, error) {
	ents, err := os.ReadDir(filepath.Join(dir, "sweeps"))
	if errors.Is(err, os.ErrNotExist) {
		return []SweepView{}, nil
	}
	if err != nil {
		return nil, fmt.Errorf("sweeps: %w", err)
	}
	out := []SweepView{}
	for _, e := range ents {
		if !e.IsDir() {
			continue
		}
		sd := filepath.Join(dir, "sweeps", e.Name())
		if _, err := os.Stat(filepath.Join(sd, "sweep.json")); err != nil {
			continue
		}
		sw, err := sweep.Load(sd)
		if err != nil {
			out = append(out, SweepView{Name: e.Name(), Error: err.Error()})
			continue
		}
		v := SweepView{Name: sw.Name, Backend: sw.Backend, Halving: sw.Halving, Counts: map[string]int{}, Trials: []TrialView{}}
		for _, t := range sw.Trials {
			tv := TrialView{ID: t.ID, Name: t.Name, Point: t.Point, State: t.State, RunID: t.RunID, Step: t.Steps,
				Best: optNum(t.Best), Rungs: t.Rungs, Attempts: t.Attempts, Error: t.Error}
			if p := sweep.ReadProgress(sd, t.ID); p != nil && (t.State == sweep.StateRunning || t.State == sweep.StateQueued) {
				tv.Step, tv.Steps, tv.Best = p.Step, p.Steps, optNum(p.Best)
			}
			v.Counts[t.State]++
			if tv.Best != nil && !math.IsNaN(float64(*tv.Best)) && (v.Best == nil || *tv.Best < *v.Best.Best) {
				b := tv
				v.Best = &b
			}
			v.Trials = append(v.Trials, tv)
		}
		out = append(out, v)
	}
	sort.Slice(out, func(i, j int) bool { return strings.Compare(out[i].Name, out[j].Name) < 0 })
	return out, nil
}
