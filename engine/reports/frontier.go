package reports

import (
	"fmt"

	"lens/engine/report"
	"lens/engine/runs"
	"lens/kv"
)

// Frontier is the learning/forgetting picture of Biderman et al. (2024):
// for every evaluation of every run, how much the loss on the target set
// fell (learning) against how much the loss on the source set rose
// (forgetting), one point per (run, step), grouped by run.
func Frontier(st *kv.Store, ids []string, target, source string) (*report.Document, [][]string, error) {
	sc := &report.Scatter{Title: fmt.Sprintf("Learning (%s loss decrease) vs forgetting (%s loss increase)", target, source),
		XLabel: target + " loss decrease (nats)", YLabel: source + " loss increase (nats)"}
	var rows [][]string
	for _, id := range ids {
		m, err := st.GetRun(id)
		if err != nil {
			return nil, nil, err
		}
		spec, err := runs.SpecOf(m)
		if err != nil {
			return nil, nil, err
		}
		tg, err := st.ReadMetric(id, "eval/"+target)
		if err != nil {
			return nil, nil, err
		}
		src, err := st.ReadMetric(id, "eval/"+source)
		if err != nil {
			return nil, nil, err
		}
		if len(tg) == 0 || len(src) != len(tg) {
			return nil, nil, fmt.Errorf("run %s: eval sets %s and %s must be evaluated at the same steps", m.Name, target, source)
		}
		group := "full fine-tuning"
		if spec.LoRA != nil {
			group = fmt.Sprintf("LoRA r=%d", spec.LoRA.Rank)
		}
		for i := range tg {
			if tg[i].Step == 0 {
				continue
			}
			learn, forget := tg[0].Value-tg[i].Value, src[i].Value-src[0].Value
			sc.Points = append(sc.Points, report.Point{X: learn, Y: forget, Group: group, Label: fmt.Sprint(tg[i].Step)})
			rows = append(rows, []string{group, fmt.Sprint(tg[i].Step), f4(tg[i].Value), f4(learn), f4(src[i].Value), f4(forget)})
		}
	}
	doc := &report.Document{Title: "Learning and forgetting", Subtitle: "Biderman et al. 2024, \"LoRA Learns Less and Forgets Less\"",
		Sections: []report.Section{{Title: "Frontier", Items: []any{sc, &report.Table{
			Header: []string{"method", "step", target + " loss", "learned", source + " loss", "forgot"}, Rows: rows}}}}}
	return doc, rows, nil
}
