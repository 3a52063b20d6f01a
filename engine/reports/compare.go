package reports

import (
	"encoding/json"
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	"lens/engine/analyze"
	"lens/engine/report"
	"lens/engine/runs"
	"lens/kv"
)

// flatConfig flattens a run's spec into dotted keys for diffing: every
// field that changes what a run computes (the run's name, tags and script
// are not config).
func flatConfig(spec runs.Spec) map[string]string {
	top := map[string]any{"train": spec.Train, "lora": spec.LoRA, "data": spec.Data, "base": spec.Base.Hash,
		"checkpoint_every": spec.CheckpointEvery, "keep_last": spec.KeepLast, "device": spec.Device,
		"evals": spec.Evals, "init": spec.Init, "collect": spec.Collect, "probe_batch": spec.ProbeBatch}
	if spec.LoRA != nil {
		top["lora_seed"] = spec.LoRASeed // the adapter's initialisation; full training has none
	}
	b, _ := json.Marshal(top)
	var m map[string]any
	json.Unmarshal(b, &m)
	out := map[string]string{}
	var walk func(prefix string, v any)
	walk = func(prefix string, v any) {
		if mm, ok := v.(map[string]any); ok {
			for k, x := range mm {
				walk(strings.TrimPrefix(prefix+"."+k, "."), x)
			}
			return
		}
		b, _ := json.Marshal(v)
		out[prefix] = string(b)
	}
	walk("", m)
	return out
}

// Compare builds a side-by-side report of runs: the config fields that
// differ, final metrics, overlaid curves, and for the first two LoRA runs
// the subspace similarity of one module's adapters.
func Compare(st *kv.Store, ids []string) (*report.Document, error) {
	if len(ids) < 2 {
		return nil, fmt.Errorf("compare needs at least two runs, got %d", len(ids))
	}
	var metas []kv.RunMeta
	var specs []runs.Spec
	for _, id := range ids {
		m, err := st.GetRun(id)
		if err != nil {
			return nil, err
		}
		s, err := runs.SpecOf(m)
		if err != nil {
			return nil, err
		}
		metas, specs = append(metas, m), append(specs, s)
	}
	doc := &report.Document{Title: fmt.Sprintf("lens comparison of %d runs", len(ids))}
	header := []string{"field"}
	for _, m := range metas {
		header = append(header, m.Name+" ("+m.ID[len(m.ID)-4:]+")")
	}
	flats := make([]map[string]string, len(specs))
	keys := map[string]bool{}
	for i, s := range specs {
		flats[i] = flatConfig(s)
		for k := range flats[i] {
			keys[k] = true
		}
	}
	var diff [][]string
	for _, k := range slices.Sorted(maps.Keys(keys)) {
		row := []string{k}
		same := true
		for i := range flats {
			row = append(row, flats[i][k])
			same = same && flats[i][k] == flats[0][k]
		}
		if !same {
			diff = append(diff, row)
		}
	}
	results := [][]string{{"status"}, {"steps"}, {"final eval loss"}}
	for _, m := range metas {
		results[0] = append(results[0], m.Status)
		results[1] = append(results[1], fmt.Sprint(m.Steps))
		results[2] = append(results[2], fmtPtr(m.FinalLoss))
	}
	sec := report.Section{Title: "Runs", Items: []any{
		&report.Table{Title: "Config fields that differ", Header: header, Rows: diff},
		&report.Table{Title: "Results", Header: header, Rows: results},
	}}
	trainCh := &report.LineChart{Title: "Training loss (EMA 0.9)", XLabel: "step", YLabel: "nats/token"}
	evalCh := &report.LineChart{Title: "Eval loss on each run's own data", XLabel: "step", YLabel: "nats/token"}
	for i, id := range ids {
		s, err := lossSeries(st, id, "loss", metas[i].Name)
		if err != nil {
			return nil, err
		}
		if len(s.Y) > 0 {
			s.Y = analyze.EMA(s.Y, 0.9)
		}
		trainCh.Series = append(trainCh.Series, s)
		e, err := lossSeries(st, id, "eval/"+specs[i].MainEval(), metas[i].Name)
		if err != nil {
			return nil, err
		}
		e.Dots = len(e.Y) <= dotsUpTo
		evalCh.Series = append(evalCh.Series, e)
	}
	sec.Items = append(sec.Items, trainCh, evalCh)
	doc.Sections = append(doc.Sections, sec)

	// Subspace similarity between the first two LoRA runs.
	var lr []int
	for i, s := range specs {
		if s.LoRA != nil {
			lr = append(lr, i)
		}
	}
	if len(lr) >= 2 {
		a1, _, err1 := runs.Adapter(st, ids[lr[0]], -1)
		a2, _, err2 := runs.Adapter(st, ids[lr[1]], -1)
		if err1 == nil && err2 == nil {
			var common []string
			for _, m := range a1.Modules {
				if _, ok := a2.A[m]; ok {
					common = append(common, m)
				}
			}
			sort.Strings(common)
			if len(common) > 0 {
				mod := common[len(common)/2]
				A1, A2 := a1.A[mod], a2.A[mod]
				grid, err := analyze.SubspaceGrid(A1.Data, A2.Data, A1.Shape[0], A2.Shape[0], A1.Shape[1])
				if err == nil {
					doc.Sections = append(doc.Sections, subspaceSection(grid, A1.Shape[1], shortModule(mod), metas[lr[0]].Name, metas[lr[1]].Name))
				}
			}
		}
	}
	return doc, nil
}

// subspaceSection shows φ(i, j) of two adapters' A matrices (in columns)
// beside the random baseline of every cell: one heatmap of φ and one of
// φ − max(i, j)/in, each coloured over its own range of values, since φ
// of small adapters in a wide layer spans a sliver of [0, 1] and would
// colour every cell alike on a fixed 0–1 scale.
func subspaceSection(grid [][]float64, in int, mod, rowRun, colRun string) report.Section {
	excess := make([][]float64, len(grid))
	for i := range grid {
		excess[i] = make([]float64, len(grid[i]))
		for j := range grid[i] {
			excess[i][j] = grid[i][j] - analyze.RandomBaseline(i+1, j+1, in)
		}
	}
	var xt, yt []string
	for j := range grid[0] {
		xt = append(xt, fmt.Sprint(j+1))
	}
	for i := range grid {
		yt = append(yt, fmt.Sprint(i+1))
	}
	phi := &report.Heatmap{Title: fmt.Sprintf("Subspace similarity φ(i, j) of %s: %s (rows) vs %s (columns)", mod, rowRun, colRun),
		XLabel: "j", YLabel: "i", XTicks: xt, YTicks: yt, Values: grid}
	over := &report.Heatmap{Title: fmt.Sprintf("φ(i, j) − random baseline max(i, j)/%d", in),
		XLabel: "j", YLabel: "i", XTicks: xt, YTicks: yt, Values: excess}
	ri, rj := len(grid), len(grid[0])
	text := fmt.Sprintf("φ(1,1) = %.3f, φ(%d,%d) = %.3f. Two independent random subspaces of dimensions i and j in R^%d give "+
		"E[φ(i, j)] = max(i, j)/%d: %.4f for i = j = 1 up to %.4f for i = %d, j = %d; the second map is φ minus that baseline, cell by cell. "+
		"Each map's colours span its own values (see its colour bar).",
		grid[0][0], ri, rj, grid[ri-1][rj-1], in, in, analyze.RandomBaseline(1, 1, in), analyze.RandomBaseline(ri, rj, in), ri, rj)
	return report.Section{Title: "Adapter subspaces", Text: text, Items: []any{phi, over}}
}
