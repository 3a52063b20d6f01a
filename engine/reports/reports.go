// Package reports builds the standard reports of lens from stored runs:
// an executive, technical or diagnostic report of one run and a comparison
// of several, each as a report.Document (self-contained HTML with SVG
// charts) that also renders as terminal text.
package reports

import (
	"encoding/json"
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"github.com/olekukonko/tablewriter"
	"github.com/olekukonko/tablewriter/tw"

	"lens/engine/analyze"
	"lens/engine/analyzers"
	"lens/engine/collect"
	"lens/engine/report"
	"lens/engine/runs"
	"lens/kv"
)

// Kinds of standard report, from least to most detail.
var Kinds = []string{"executive", "technical", "diagnostic"}

// Options adjust a report.
type Options struct {
	// Extra analyzers (e.g. written in Starlark) whose findings join the report.
	Extra []analyzers.Analyzer
	// Registry of built-in analyzers (default analyzers.Default).
	Registry *analyzers.Registry
}

func f4(v float64) string {
	if math.IsNaN(v) {
		return "-"
	}
	return fmt.Sprintf("%.4f", v)
}

// dotsUpTo is the most points an eval series may have and still be drawn
// as dots alone: two evaluations (before and after training) are two
// measurements, and a line between them would show a trend nobody measured.
const dotsUpTo = 2

func lossSeries(st *kv.Store, id, metric, label string) (report.Series, error) {
	pts, err := st.ReadMetric(id, metric)
	if err != nil {
		return report.Series{}, err
	}
	s := report.Series{Name: label}
	for _, p := range pts {
		s.X = append(s.X, float64(p.Step))
		s.Y = append(s.Y, p.Value)
	}
	return s, nil
}

// Standard builds the report of one run.
func Standard(st *kv.Store, runID, kind string, opt Options) (*report.Document, error) {
	level := -1
	for i, k := range Kinds {
		if k == kind {
			level = i
		}
	}
	if level < 0 {
		return nil, fmt.Errorf("report kind %q: want one of %s", kind, strings.Join(Kinds, ", "))
	}
	reg := opt.Registry
	if reg == nil {
		reg = analyzers.Default
	}
	meta, err := st.GetRun(runID)
	if err != nil {
		return nil, err
	}
	spec, err := runs.SpecOf(meta)
	if err != nil {
		return nil, err
	}
	doc := &report.Document{Title: fmt.Sprintf("lens %s report: %s", kind, meta.Name),
		Subtitle: fmt.Sprintf("run %s · %s · %d steps · %s", meta.ID, meta.Status, meta.Steps, meta.Created.Format("2006-01-02 15:04"))}

	// Summary: what ran, how it ended.
	rows := [][]string{
		{"status", meta.Status + reasonOf(meta)},
		{"steps", fmt.Sprint(meta.Steps)},
		{"final eval loss", fmtPtr(meta.FinalLoss)},
		{"data", spec.Data.Source},
		{"model", fmt.Sprintf("hidden %d, %d layers, %d heads, vocab %d", spec.ModelConfig.HiddenSize, spec.ModelConfig.NumHiddenLayers, spec.ModelConfig.NumAttentionHeads, spec.ModelConfig.VocabSize)},
	}
	if spec.LoRA != nil {
		rows = append(rows, []string{"lora", fmt.Sprintf("r=%d alpha=%g rslora=%v targets=%s", spec.LoRA.Rank, spec.LoRA.Alpha, spec.LoRA.RSLoRA, strings.Join(spec.LoRA.Targets, ","))})
	} else {
		rows = append(rows, []string{"training", "full (every weight)"})
	}
	rows = append(rows, []string{"optimizer", fmt.Sprintf("AdamW lr=%g %s warmup=%d batch=%d×%d accum=%d clip=%g", spec.Train.LR, spec.Train.Schedule, spec.Train.Warmup, spec.Train.BatchSize, spec.Train.SeqLen, spec.Train.GradAccum, spec.Train.ClipNorm)})
	summary := report.Section{Title: "Summary", Items: []any{&report.Table{Header: []string{"field", "value"}, Rows: rows}}}

	// Loss and eval curves.
	curves := &report.LineChart{Title: "Loss", XLabel: "step", YLabel: "nats/token"}
	train, err := lossSeries(st, runID, "loss", "train")
	if err != nil {
		return nil, err
	}
	if len(train.Y) > 0 {
		ema := analyze.EMA(train.Y, 0.9)
		curves.Series = append(curves.Series, train, report.Series{Name: "train (EMA 0.9)", X: train.X, Y: ema})
	}
	names, err := st.MetricNames(runID)
	if err != nil {
		return nil, err
	}
	evalRows := [][]string{}
	for _, n := range names {
		if set, ok := strings.CutPrefix(n, "eval/"); ok {
			s, err := lossSeries(st, runID, n, "eval "+set)
			if err != nil {
				return nil, err
			}
			s.Dots = len(s.Y) <= dotsUpTo
			curves.Series = append(curves.Series, s)
			if len(s.Y) > 0 {
				evalRows = append(evalRows, []string{set, f4(s.Y[0]), f4(s.Y[len(s.Y)-1]), fmt.Sprintf("%+.1f%%", 100*(s.Y[len(s.Y)-1]/s.Y[0]-1))})
			}
		}
	}
	summary.Items = append(summary.Items, &report.Table{Title: "Evaluation", Header: []string{"eval set", "first", "last", "change"}, Rows: evalRows}, curves)
	doc.Sections = append(doc.Sections, summary)

	// Findings of the analyzers the kind asks for.
	want := [][]string{{"checkpoint", "convergence"}, {"checkpoint", "convergence", "gradient", "lora"}, {"checkpoint", "convergence", "gradient", "lora", "activation"}}[level]
	findings := report.Section{Title: "Findings"}
	var values []*analyzers.Result
	for _, name := range want {
		r, err := reg.Run(name, st, runID)
		if err != nil {
			findings.Items = append(findings.Items, fmt.Sprintf("%s: not available (%v)", name, unwrapMsg(err)))
			continue
		}
		values = append(values, r)
		findings.Items = append(findings.Items, &report.Table{Title: name, Header: []string{"finding"}, Rows: oneCol(r.Findings)})
	}
	for _, a := range opt.Extra {
		r, err := a.Analyze(st, runID)
		if err != nil {
			findings.Items = append(findings.Items, fmt.Sprintf("%s: %v", a.Name(), err))
			continue
		}
		values = append(values, r)
		findings.Items = append(findings.Items, &report.Table{Title: a.Name() + " (script)", Header: []string{"value", ""}, Rows: valueRows(r)})
	}
	doc.Sections = append(doc.Sections, findings)
	if level >= 1 {
		sec, err := technical(st, runID)
		if err != nil {
			return nil, err
		}
		doc.Sections = append(doc.Sections, sec...)
	}
	if level >= 2 {
		sec, err := diagnostic(st, runID)
		if err != nil {
			return nil, err
		}
		doc.Sections = append(doc.Sections, sec...)
	}
	return doc, nil
}

func unwrapMsg(err error) string {
	msg := err.Error()
	if i := strings.LastIndex(msg, ": "); i > 0 && strings.HasPrefix(msg, "analyzer ") {
		return msg[i+2:]
	}
	return msg
}

func oneCol(s []string) [][]string {
	out := make([][]string, len(s))
	for i, v := range s {
		out[i] = []string{v}
	}
	return out
}

func valueRows(r *analyzers.Result) [][]string {
	var rows [][]string
	keys := make([]string, 0, len(r.Values))
	for k := range r.Values {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	for _, k := range keys {
		b, _ := json.Marshal(r.Values[k])
		rows = append(rows, []string{k, string(b)})
	}
	for _, f := range r.Findings {
		rows = append(rows, []string{"finding", f})
	}
	return rows
}

func reasonOf(m kv.RunMeta) string {
	if m.Reason == "" {
		return ""
	}
	return " (" + m.Reason + ")"
}

func fmtPtr(p *float64) string {
	if p == nil {
		return "-"
	}
	return f4(*p)
}

// technical adds gradient and adapter charts.
func technical(st *kv.Store, id string) ([]report.Section, error) {
	var items []any
	gn, err := lossSeries(st, id, "grad_norm", "global grad norm (before clipping)")
	if err != nil {
		return nil, err
	}
	lr, err := lossSeries(st, id, "lr", "learning rate")
	if err != nil {
		return nil, err
	}
	items = append(items, &report.LineChart{Title: "Gradient norm", XLabel: "step", YLabel: "L2 norm", Series: []report.Series{gn}, LogY: true},
		&report.LineChart{Title: "Learning rate", XLabel: "step", YLabel: "lr", Series: []report.Series{lr}})
	ws, err := collect.Read[collect.AdapterWeights](st, id, "adapter_weights")
	if err != nil {
		return nil, err
	}
	if len(ws) > 0 {
		// Effective rank of ΔW per layer over time (mean over the layer's modules).
		byLayer := map[int]map[int][]float64{}
		last := 0
		for _, w := range ws {
			l := layerOf(w.Name)
			if byLayer[l] == nil {
				byLayer[l] = map[int][]float64{}
			}
			byLayer[l][w.Step] = append(byLayer[l][w.Step], w.Value.EffectiveRank)
			last = max(last, w.Step)
		}
		er := &report.LineChart{Title: "Effective rank of ΔW per layer", XLabel: "step", YLabel: "effective rank"}
		for _, l := range sortedInts(byLayer) {
			s := report.Series{Name: fmt.Sprintf("layer %d", l)}
			for _, step := range sortedInts(byLayer[l]) {
				s.X = append(s.X, float64(step))
				s.Y = append(s.Y, mean(byLayer[l][step]))
			}
			er.Series = append(er.Series, s)
		}
		spec := &report.LineChart{Title: fmt.Sprintf("Singular values of ΔW at step %d", last), XLabel: "index", YLabel: "σ", LogY: true}
		var rows [][]string
		for _, w := range ws {
			if w.Step != last {
				continue
			}
			s := report.Series{Name: shortModule(w.Name)}
			for i, v := range w.Value.SV {
				s.X = append(s.X, float64(i+1))
				s.Y = append(s.Y, v)
			}
			spec.Series = append(spec.Series, s)
			rows = append(rows, []string{w.Name, f4(w.Value.NormA), f4(w.Value.NormB), f4(w.Value.DeltaFro), f4(w.Value.DeltaSpectral), fmt.Sprintf("%.2f", w.Value.EffectiveRank), fmt.Sprintf("%.2f", w.Value.StableRank)})
		}
		items = append(items, er, spec, &report.Table{Title: fmt.Sprintf("Adapters at step %d", last),
			Header: []string{"module", "‖A‖", "‖B‖", "‖ΔW‖F", "‖ΔW‖₂", "eff. rank", "stable rank"}, Rows: rows})
	}
	return []report.Section{{Title: "Training dynamics", Items: items}}, nil
}

// noEvents stands for an empty Events table.
const noEvents = "Events: none (no skipped or rolled-back steps, no failures)."

// diagnostic adds activations and events.
func diagnostic(st *kv.Store, id string) ([]report.Section, error) {
	var items []any
	acts, err := collect.Read[collect.ActivationStats](st, id, "activations")
	if err != nil {
		return nil, err
	}
	if len(acts) > 0 {
		byHook := map[string]*report.Series{}
		for _, a := range acts {
			s := byHook[a.Name]
			if s == nil {
				s = &report.Series{Name: a.Name}
				byHook[a.Name] = s
			}
			s.X = append(s.X, float64(a.Step))
			s.Y = append(s.Y, a.Value.RowNorm)
		}
		ch := &report.LineChart{Title: "Activation norms on the probe batch", XLabel: "step", YLabel: "mean L2 norm per position"}
		for _, k := range slices.Sorted(maps.Keys(byHook)) {
			ch.Series = append(ch.Series, *byHook[k])
		}
		items = append(items, ch)
	}
	la, err := collect.Read[collect.LoRAActivation](st, id, "lora_activations")
	if err != nil {
		return nil, err
	}
	if len(la) > 0 {
		byMod := map[string]*report.Series{}
		for _, a := range la {
			s := byMod[a.Name]
			if s == nil {
				s = &report.Series{Name: shortModule(a.Name)}
				byMod[a.Name] = s
			}
			s.X = append(s.X, float64(a.Step))
			s.Y = append(s.Y, a.Value.Ratio)
		}
		ch := &report.LineChart{Title: "LoRA contribution: ‖LoRA path‖ / ‖base path‖", XLabel: "step", YLabel: "ratio", LogY: true}
		for _, k := range slices.Sorted(maps.Keys(byMod)) {
			ch.Series = append(ch.Series, *byMod[k])
		}
		items = append(items, ch)
	}
	events, err := st.Events(id)
	if err != nil {
		return nil, err
	}
	if len(events) == 0 {
		items = append(items, noEvents)
	} else {
		var rows [][]string
		for _, e := range events {
			rows = append(rows, []string{fmt.Sprint(e.Step), e.Kind, e.Message})
		}
		items = append(items, &report.Table{Title: "Events", Header: []string{"step", "kind", "message"}, Rows: rows})
	}
	return []report.Section{{Title: "Diagnostics", Items: items}}, nil
}

func layerOf(module string) int {
	var l int
	if _, err := fmt.Sscanf(module, "model.layers.%d.", &l); err != nil {
		return -1
	}
	return l
}

func shortModule(m string) string {
	return strings.NewReplacer("model.layers.", "L", ".self_attn.", ".", ".mlp.", ".").Replace(m)
}

func mean(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

func sortedInts[V any](m map[int]V) []int {
	out := make([]int, 0, len(m))
	for k := range m {
		out = append(out, k)
	}
	sort.Ints(out)
	return out
}

// Text renders a document for a terminal: titles, tables and paragraphs
// (charts are HTML only).
func Text(doc *report.Document) string {
	var sb strings.Builder
	fmt.Fprintf(&sb, "%s\n%s\n", doc.Title, doc.Subtitle)
	for _, s := range doc.Sections {
		fmt.Fprintf(&sb, "\n== %s ==\n", s.Title)
		if s.Text != "" {
			sb.WriteString(s.Text + "\n")
		}
		for _, it := range s.Items {
			switch it := it.(type) {
			case string:
				sb.WriteString(it + "\n")
			case *report.Table:
				if it.Title != "" {
					sb.WriteString(it.Title + "\n")
				}
				if len(it.Rows) == 0 {
					sb.WriteString("(none)\n")
					continue
				}
				tw := tablewriter.NewTable(&sb, tablewriter.WithHeaderAutoFormat(tw.Off))
				tw.Header(it.Header)
				tw.Bulk(it.Rows)
				tw.Render()
			}
		}
	}
	return sb.String()
}
