package reports

import (
	"context"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/analyze"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/report"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

func openStore(t *testing.T) *kv.Store {
	st, err := kv.Open(filepath.Join(t.TempDir(), "s"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// tinyRun trains a small LoRA run (6 steps) after edit changes its spec.
func tinyRun(t *testing.T, st *kv.Store, edit func(*runs.Spec)) string {
	t.Helper()
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 1)
	require.NoError(t, err)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Name: "r", Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 6, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 2, EvalBatches: 2},
		Data:  runs.DataRef{Source: "opticks"}, CheckpointEvery: 3}
	if edit != nil {
		edit(&spec)
	}
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	m, err := job.Run(context.Background(), st, runs.Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m.Status, m.Reason)
	return m.ID
}

// items returns the section's items of type T.
func items[T any](doc *report.Document, section string) []T {
	var out []T
	for _, s := range doc.Sections {
		if s.Title != section {
			continue
		}
		for _, it := range s.Items {
			if v, ok := it.(T); ok {
				out = append(out, v)
			}
		}
	}
	return out
}

func table(t *testing.T, doc *report.Document, section, title string) *report.Table {
	t.Helper()
	for _, tb := range items[*report.Table](doc, section) {
		if tb.Title == title {
			return tb
		}
	}
	t.Fatalf("no table %q in section %q", title, section)
	return nil
}

// TestCompareConfigDiff: the config diff lists every field that differs,
// lora_seed included (it was left out, so two runs differing in lora_seed
// and r showed only lora.r), and nothing that does not differ.
func TestCompareConfigDiff(t *testing.T) {
	st := openStore(t)
	a := tinyRun(t, st, func(s *runs.Spec) { s.Name = "a" })
	b := tinyRun(t, st, func(s *runs.Spec) { s.Name, s.LoRASeed, s.LoRA.Rank = "b", 7, 2 })
	c := tinyRun(t, st, func(s *runs.Spec) { s.Name, s.KeepLast = "c", 1 })
	for _, tc := range []struct {
		ids  []string
		diff []string
	}{
		{[]string{a, b}, []string{"lora.r", "lora_seed"}},
		{[]string{a, c}, []string{"keep_last"}},
		{[]string{a, a}, nil},
	} {
		doc, err := Compare(st, tc.ids)
		require.NoError(t, err)
		var fields []string
		for _, row := range table(t, doc, "Runs", "Config fields that differ").Rows {
			fields = append(fields, row[0])
		}
		require.Equal(t, tc.diff, fields)
	}
	doc, err := Compare(st, []string{a, b})
	require.NoError(t, err)
	for _, row := range table(t, doc, "Runs", "Config fields that differ").Rows {
		if row[0] == "lora_seed" {
			require.Equal(t, []string{"lora_seed", "0", "7"}, row)
		}
	}
	_, err = Compare(st, []string{a})
	require.ErrorContains(t, err, "at least two runs")
}

// TestCompareSubspaces: the comparison shows φ(i, j) and φ minus the
// random baseline max(i, j)/in for every cell (not only i = j = 1), each
// heatmap coloured over its own values, so its lowest and highest cells
// get the two ends of the colour scale (on the fixed 0–1 scale every cell
// of two small adapters in a wide layer looked alike).
func TestCompareSubspaces(t *testing.T) {
	st := openStore(t)
	a := tinyRun(t, st, func(s *runs.Spec) { s.Name = "a" })
	b := tinyRun(t, st, func(s *runs.Spec) { s.Name, s.LoRASeed = "b", 1 })
	doc, err := Compare(st, []string{a, b})
	require.NoError(t, err)
	hms := items[*report.Heatmap](doc, "Adapter subspaces")
	require.Len(t, hms, 2)
	phi, over := hms[0], hms[1]

	// Recompute φ from the stored adapters of the module the report chose.
	_, a1, _, err := runs.Weights(st, a, -1)
	require.NoError(t, err)
	_, a2, _, err := runs.Weights(st, b, -1)
	require.NoError(t, err)
	var mod string
	for m := range a1.A {
		if strings.Contains(phi.Title, shortModule(m)+":") {
			mod = m
		}
	}
	require.NotEmpty(t, mod, phi.Title)
	A1, A2 := a1.A[mod], a2.A[mod]
	in := A1.Shape[1]
	grid, err := analyze.SubspaceGrid(A1.Data, A2.Data, A1.Shape[0], A2.Shape[0], in)
	require.NoError(t, err)
	require.Equal(t, grid, phi.Values)
	lo, hi := math.Inf(1), math.Inf(-1)
	for i := range grid {
		for j := range grid[i] {
			want := grid[i][j] - float64(max(i+1, j+1))/float64(in)
			require.InDelta(t, want, over.Values[i][j], 1e-15, "cell (%d, %d)", i+1, j+1)
			lo, hi = min(lo, grid[i][j]), max(hi, grid[i][j])
		}
	}
	require.Less(t, hi-lo, 0.5, "a test of the scale needs φ spanning a part of [0, 1]")
	for _, hm := range hms {
		svg := hm.SVG()
		require.Contains(t, svg, `fill="#440154"`, "the lowest cell gets the bottom of the scale")
		require.Contains(t, svg, `fill="#fde725"`, "the highest cell gets the top of the scale")
	}
	sec := doc.Sections[len(doc.Sections)-1]
	require.Contains(t, sec.Text, "max(i, j)/")
	require.Contains(t, sec.Text, "i = 4, j = 4")
}

// TestStandardReport: the three kinds build from a real run; the
// diagnostic report says there were no events in a sentence instead of an
// empty table, and shows events in a table when there are some; an eval
// series of two points (eval_every = 0: before and after) is drawn as
// dots, a longer one as a line.
func TestStandardReport(t *testing.T) {
	st := openStore(t)
	sparse := tinyRun(t, st, func(s *runs.Spec) { s.Name, s.Train.EvalEvery = "sparse", 0 })
	dense := tinyRun(t, st, func(s *runs.Spec) { s.Name = "dense" })
	for _, kind := range Kinds {
		doc, err := Standard(st, dense, kind, Options{})
		require.NoError(t, err, kind)
		require.Contains(t, doc.Title, kind)
		_, err = doc.HTML()
		require.NoError(t, err, kind)
	}
	_, err := Standard(st, dense, "bogus", Options{})
	require.ErrorContains(t, err, `report kind "bogus"`)

	evalDots := func(id string) bool {
		doc, err := Standard(st, id, "executive", Options{})
		require.NoError(t, err)
		for _, ch := range items[*report.LineChart](doc, "Summary") {
			for _, s := range ch.Series {
				if strings.HasPrefix(s.Name, "eval ") {
					return s.Dots
				}
			}
		}
		t.Fatal("no eval series")
		return false
	}
	require.True(t, evalDots(sparse), "two eval points are dots")
	require.False(t, evalDots(dense), "four eval points are a line")

	doc, err := Standard(st, dense, "diagnostic", Options{})
	require.NoError(t, err)
	for _, tb := range items[*report.Table](doc, "Diagnostics") {
		require.NotEqual(t, "Events", tb.Title, "no Events table without events")
	}
	require.Contains(t, items[string](doc, "Diagnostics"), noEvents)
	require.Contains(t, Text(doc), noEvents)

	require.NoError(t, st.AddEvent(dense, kv.Event{Step: 4, Kind: "nan_skip", Message: "planted"}))
	doc, err = Standard(st, dense, "diagnostic", Options{})
	require.NoError(t, err)
	require.Equal(t, [][]string{{"4", "nan_skip", "planted"}}, table(t, doc, "Diagnostics", "Events").Rows)
	require.NotContains(t, items[string](doc, "Diagnostics"), noEvents)
}

// TestJSON: the JSON form has the document's sections and items in order,
// each tagged with its kind and carrying its data, with NaN as null; an
// item the report package cannot render is an error naming its section.
func TestJSON(t *testing.T) {
	nan := math.NaN()
	doc := &report.Document{Title: "T", Subtitle: "S", Sections: []report.Section{{
		Title: "one", Text: "para",
		Items: []any{
			"a sentence",
			&report.Table{Title: "tab", Header: []string{"k", "v"}, Rows: [][]string{{"a", "1"}}},
			&report.Table{Title: "empty", Header: []string{"k"}},
			&report.LineChart{Title: "line", XLabel: "step", Series: []report.Series{{Name: "s", X: []float64{0, 1}, Y: []float64{2, nan}}}, LogY: true},
			&report.Heatmap{Title: "hm", Values: [][]float64{{0.5, math.Inf(1)}}, XTicks: []string{"1", "2"}},
			&report.BarChart{Title: "bar", Labels: []string{"x"}, Values: []float64{3}},
			&report.Scatter{Title: "sc", Points: []report.Point{{X: 1, Y: 2, Label: "p"}}},
		}}}}
	b, err := MarshalJSON(doc)
	require.NoError(t, err)
	var got map[string]any
	require.NoError(t, json.Unmarshal(b, &got))
	want := map[string]any{"title": "T", "subtitle": "S", "sections": []any{map[string]any{
		"title": "one", "text": "para", "items": []any{
			map[string]any{"kind": "text", "text": "a sentence"},
			map[string]any{"kind": "table", "title": "tab", "header": []any{"k", "v"}, "rows": []any{[]any{"a", "1"}}},
			map[string]any{"kind": "table", "title": "empty", "header": []any{"k"}},
			map[string]any{"kind": "line", "title": "line", "x_label": "step", "log_y": true,
				"series": []any{map[string]any{"name": "s", "x": []any{0.0, 1.0}, "y": []any{2.0, nil}}}},
			map[string]any{"kind": "heatmap", "title": "hm", "grid": []any{[]any{0.5, nil}}, "x_ticks": []any{"1", "2"}},
			map[string]any{"kind": "bar", "title": "bar", "labels": []any{"x"}, "values": []any{3.0}},
			map[string]any{"kind": "scatter", "title": "sc", "points": []any{map[string]any{"x": 1.0, "y": 2.0, "label": "p"}}},
		}}}}
	require.Equal(t, want, got)

	_, err = JSON(&report.Document{Sections: []report.Section{{Title: "bad", Items: []any{42}}}})
	require.ErrorContains(t, err, `report section "bad" item 1: cannot write int`)
}
