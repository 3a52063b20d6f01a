package runs

import (
	"fmt"
	"math"
	"reflect"
	"slices"

	"lens/kv"
)

// clockMetrics are measurements of the machine, not of training: they
// differ between any two runs.
var clockMetrics = map[string]bool{"tokens_per_s": true, "step_time_s": true, "memory_bytes": true, "peak_rss": true}

// Differences lists how run b's stored results differ from run a's: every
// metric but the wall-clock ones, every collector record, the checkpoints
// kept with the eval losses they carry, and every tensor of the latest
// checkpoint (weights, adapters, optimizer moments). Values compare bit for
// bit, so two runs of one seed, one of them killed and resumed any number
// of times, give none. The error is for failures to read.
func Differences(st *kv.Store, a, b string) ([]string, error) {
	var diffs []string
	add := func(format string, args ...any) { diffs = append(diffs, fmt.Sprintf(format, args...)) }
	ma, err := st.GetRun(a)
	if err != nil {
		return nil, err
	}
	mb, err := st.GetRun(b)
	if err != nil {
		return nil, err
	}
	if ma.Steps != mb.Steps {
		add("steps: %d, %d", ma.Steps, mb.Steps)
	}

	na, err := st.MetricNames(a)
	if err != nil {
		return nil, err
	}
	nb, err := st.MetricNames(b)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(na, nb) {
		add("metric names: %v, %v", na, nb)
	}
	for _, n := range na {
		if clockMetrics[n] || !slices.Contains(nb, n) {
			continue
		}
		pa, err := st.ReadMetric(a, n)
		if err != nil {
			return nil, err
		}
		pb, err := st.ReadMetric(b, n)
		if err != nil {
			return nil, err
		}
		if len(pa) != len(pb) {
			add("metric %s: %d points, %d points", n, len(pa), len(pb))
			continue
		}
		for i := range pa {
			if pa[i].Step != pb[i].Step || !sameFloat(pa[i].Value, pb[i].Value) {
				add("metric %s: step %d = %v, step %d = %v", n, pa[i].Step, pa[i].Value, pb[i].Step, pb[i].Value)
				break
			}
		}
	}

	ca, err := st.Collectors(a)
	if err != nil {
		return nil, err
	}
	cb, err := st.Collectors(b)
	if err != nil {
		return nil, err
	}
	if !slices.Equal(ca, cb) {
		add("collectors: %v, %v", ca, cb)
	}
	for _, c := range ca {
		ra, err := st.ReadCollected(a, c)
		if err != nil {
			return nil, err
		}
		rb, err := st.ReadCollected(b, c)
		if err != nil {
			return nil, err
		}
		if len(ra) != len(rb) {
			add("collector %s: %d records (steps %v), %d records (steps %v)", c, len(ra), recordSteps(ra), len(rb), recordSteps(rb))
			continue
		}
		for i := range ra {
			if !reflect.DeepEqual(ra[i], rb[i]) {
				add("collector %s: record %s at step %d differs", c, ra[i].Name, ra[i].Step)
				break
			}
		}
	}

	ka, err := st.Checkpoints(a)
	if err != nil {
		return nil, err
	}
	kb, err := st.Checkpoints(b)
	if err != nil {
		return nil, err
	}
	if len(ka) != len(kb) {
		add("checkpoints: steps %v, steps %v", ckptSteps(ka), ckptSteps(kb))
	} else {
		for i := range ka {
			if ka[i].Step != kb[i].Step || !sameLosses(ka[i].EvalLoss, kb[i].EvalLoss) {
				add("checkpoint %d: eval loss %v; checkpoint %d: eval loss %v", ka[i].Step, ka[i].EvalLoss, kb[i].Step, kb[i].EvalLoss)
			}
		}
	}
	if len(ka) == 0 || len(kb) == 0 {
		return diffs, nil
	}
	_, ta, err := st.LoadCheckpoint(a, ka[len(ka)-1].Step)
	if err != nil {
		return nil, err
	}
	_, tb, err := st.LoadCheckpoint(b, kb[len(kb)-1].Step)
	if err != nil {
		return nil, err
	}
	if len(ta) != len(tb) {
		add("latest checkpoint: %d tensors, %d tensors", len(ta), len(tb))
		return diffs, nil
	}
	for i := range ta {
		if !reflect.DeepEqual(ta[i], tb[i]) {
			add("latest checkpoint: tensor %s differs", ta[i].Name)
		}
	}
	return diffs, nil
}

func sameFloat(x, y float64) bool {
	return math.Float64bits(x) == math.Float64bits(y) || (math.IsNaN(x) && math.IsNaN(y))
}

func sameLosses(x, y map[string]float64) bool {
	if len(x) != len(y) {
		return false
	}
	for k, v := range x {
		w, ok := y[k]
		if !ok || !sameFloat(v, w) {
			return false
		}
	}
	return true
}

func recordSteps(rs []kv.Collected) []int {
	var out []int
	for _, r := range rs {
		if len(out) == 0 || out[len(out)-1] != r.Step {
			out = append(out, r.Step)
		}
	}
	return out
}

func ckptSteps(cs []kv.CheckpointMeta) []int {
	out := make([]int, len(cs))
	for i, c := range cs {
		out[i] = c.Step
	}
	return out
}
