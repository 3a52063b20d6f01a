package analyzers

import (
	"fmt"
	"maps"
	"math"
	"slices"
	"sort"
	"strings"

	"lens/engine/analyze"
	"lens/engine/collect"
	"lens/engine/runs"
	"lens/kv"
)

func series(pts []kv.Point) (steps, vals []float64) {
	for _, p := range pts {
		steps = append(steps, float64(p.Step))
		vals = append(vals, p.Value)
	}
	return steps, vals
}

func median(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	s := append([]float64(nil), x...)
	sort.Float64s(s)
	return s[len(s)/2]
}

func meanOf(x []float64) float64 {
	if len(x) == 0 {
		return math.NaN()
	}
	var s float64
	for _, v := range x {
		s += v
	}
	return s / float64(len(x))
}

// gradient: spikes, vanishing, consistency, noise scale.
func gradient(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("gradient")
	pts, err := st.ReadMetric(ids[0], "grad_norm")
	if err != nil {
		return nil, err
	}
	if len(pts) == 0 {
		return nil, fmt.Errorf("run %s has no grad_norm metric", ids[0])
	}
	steps, norms := series(pts)
	spikes := analyze.Spikes(norms, 20, 6)
	var spikeSteps []any
	for _, i := range spikes {
		spikeSteps = append(spikeSteps, steps[i])
	}
	vanish := 0
	for _, v := range norms {
		if v < 1e-8 {
			vanish++
		}
	}
	r.Values["median_grad_norm"] = median(norms)
	r.Values["max_grad_norm"] = maxOf(norms)
	r.Values["spike_steps"] = spikeSteps
	r.Values["vanishing_fraction"] = float64(vanish) / float64(len(norms))
	if len(spikes) > 0 {
		r.say("%d gradient spike(s) above the rolling median by 6 MADs, first at step %v", len(spikes), spikeSteps[0])
	} else {
		r.say("no gradient spikes (rolling median + 6 MAD)")
	}
	if vanish > 0 {
		r.say("gradients vanished (norm < 1e-8) on %d of %d steps", vanish, len(norms))
	}
	grads, err := collect.Read[collect.AdapterGrads](st, ids[0], "adapter_grads")
	if err != nil {
		return nil, err
	}
	var cosA, cosB []float64
	for _, g := range grads {
		if g.Name == "_step" {
			continue
		}
		// Absent cosines are undefined (a zero gradient), not 0: skipped.
		if g.Value.CosPrevA != nil {
			cosA = append(cosA, *g.Value.CosPrevA)
		}
		if g.Value.CosPrevB != nil {
			cosB = append(cosB, *g.Value.CosPrevB)
		}
	}
	var parts []string
	for _, c := range []struct {
		name string
		cos  []float64
	}{{"a", cosA}, {"b", cosB}} {
		if len(c.cos) > 0 {
			r.Values["consistency_"+c.name] = meanOf(c.cos)
			parts = append(parts, fmt.Sprintf("%s %.3f", strings.ToUpper(c.name), meanOf(c.cos)))
		}
	}
	if len(parts) > 0 {
		r.say("gradient consistency (mean cosine between successive collected gradients): %s", strings.Join(parts, ", "))
	}
	stepRecs, err := collect.Read[collect.StepGrads](st, ids[0], "adapter_grads")
	if err != nil {
		return nil, err
	}
	est := analyze.NoiseScaleEstimator{Beta: 0.9}
	used := 0
	for _, s := range stepRecs {
		m := len(s.Value.MicroNormSq)
		if s.Name != "_step" || m < 2 {
			continue
		}
		small := meanOf(s.Value.MicroNormSq)
		b := float64(s.Value.MicroBatch)
		if err := est.Add(b, small, b*float64(m), s.Value.GlobalNorm*s.Value.GlobalNorm); err == nil {
			used++
		}
	}
	if used > 0 {
		if bs, ok := est.BSimple(); ok {
			r.Values["noise_scale"] = bs
			r.say("gradient noise scale B_simple ≈ %.1f sequences (from %d steps of micro vs accumulated gradients)", bs, used)
		} else {
			r.say("gradient noise scale: estimates not yet positive after %d steps", used)
		}
	} else if len(stepRecs) > 0 {
		r.say("gradient noise scale needs grad_accum ≥ 2 (it compares micro-batch and accumulated gradients)")
	}
	return r, nil
}

func maxOf(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = max(m, v)
	}
	return m
}

// layerOf extracts the layer index from a module path.
func layerOf(module string) int {
	var l int
	if _, err := fmt.Sscanf(module, "model.layers.%d.", &l); err != nil {
		return -1
	}
	return l
}

// loraWeights: rank measures of ΔW per module, first and last collected.
func loraWeights(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("lora")
	recs, err := collect.Read[collect.AdapterWeights](st, ids[0], "adapter_weights")
	if err != nil {
		return nil, err
	}
	if len(recs) == 0 {
		return nil, fmt.Errorf("run %s has no adapter_weights records (train with collect=[collect.adapter_weights()])", ids[0])
	}
	first, last := map[string]collect.AdapterWeights{}, map[string]collect.AdapterWeights{}
	lastStep := 0
	for _, rec := range recs {
		if _, ok := first[rec.Name]; !ok {
			first[rec.Name] = rec.Value
		}
		last[rec.Name] = rec.Value
		lastStep = max(lastStep, rec.Step)
	}
	meta, err := st.GetRun(ids[0])
	if err != nil {
		return nil, err
	}
	spec, err := runs.SpecOf(meta)
	if err != nil {
		return nil, err
	}
	rank := 0
	if spec.LoRA != nil {
		rank = spec.LoRA.Rank
	}
	modules := map[string]any{}
	var utils []float64
	for _, mod := range slices.Sorted(maps.Keys(last)) {
		w := last[mod]
		util := analyze.RankUtilisation(w.SV, rank)
		utils = append(utils, util)
		bal := math.NaN()
		if w.NormA > 0 {
			bal = w.NormB / w.NormA
		}
		modules[mod] = map[string]any{
			"effective_rank": w.EffectiveRank, "stable_rank": w.StableRank, "rank_utilisation": util,
			"condition": analyze.Condition(w.SV), "ab_balance": bal, "delta_fro": w.DeltaFro,
			"effective_rank_first": first[mod].EffectiveRank, "layer": float64(layerOf(mod)),
		}
	}
	r.Values["modules"] = modules
	r.Values["step"] = float64(lastStep)
	r.Values["mean_rank_utilisation"] = meanOf(utils)
	r.say("at step %d the adapters use %.0f%% of rank %d on average (effective rank of ΔW / r)", lastStep, 100*meanOf(utils), rank)
	lo, hi := "", ""
	for mod := range last {
		if lo == "" || last[mod].EffectiveRank < last[lo].EffectiveRank {
			lo = mod
		}
		if hi == "" || last[mod].EffectiveRank > last[hi].EffectiveRank {
			hi = mod
		}
	}
	r.say("lowest effective rank %.2f in %s, highest %.2f in %s", last[lo].EffectiveRank, lo, last[hi].EffectiveRank, hi)
	return r, nil
}

// convergence: EMA, plateau, power-law fit of the training loss.
func convergence(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("convergence")
	pts, err := st.ReadMetric(ids[0], "loss")
	if err != nil {
		return nil, err
	}
	if len(pts) < 10 {
		return nil, fmt.Errorf("run %s has %d loss points; convergence needs at least 10", ids[0], len(pts))
	}
	steps, loss := series(pts)
	ema := analyze.EMA(loss, 0.9)
	r.Values["ema_final"] = ema[len(ema)-1]
	window := max(20, len(loss)/10)
	// One verdict: the run has converged when its smoothed loss has
	// plateaued (stopped moving beyond its own noise). The power-law fit
	// only adds a prediction of the final loss where it can make one, so the
	// findings never say both "plateaus" and "not converged".
	p := analyze.Plateau(loss, window)
	r.Values["converged"] = p >= 0
	if p >= 0 {
		r.Values["plateau_step"] = steps[p]
		r.say("converged: the smoothed loss plateaus from step %.0f (drift within its own noise over windows of %d steps) at %.4f (EMA)", steps[p], window, ema[len(ema)-1])
	} else {
		r.Values["plateau_step"] = nil
		r.say("not converged: the smoothed loss is still moving beyond its noise")
	}
	meta, err := st.GetRun(ids[0])
	if err != nil {
		return nil, err
	}
	spec, _ := runs.SpecOf(meta)
	skip := min(spec.Train.Warmup, len(steps)/2)
	fit, err := analyze.FitPowerLaw(steps[skip:], ema[skip:])
	if err != nil {
		r.say("no power-law fit: %v", err)
		return r, nil
	}
	r.Values["fit_l_inf"] = fit.LInf
	r.Values["fit_l_inf_stderr"] = fit.LInfStdErr
	r.Values["fit_exponent"] = fit.B
	r.Values["fit_determined"] = fit.Converged
	switch {
	case fit.Converged:
		r.say("fitted L(t) = %.3f + %.3g·t^−%.2f: predicted final loss %.3f ± %.3f", fit.LInf, fit.A, fit.B, fit.LInf, fit.LInfStdErr)
	case p >= 0:
		r.say("the power-law fit L∞ + a·t^−b adds nothing here: on a plateau it cannot separate L∞ from the fall")
	default:
		r.say("the power-law fit L∞ + a·t^−b cannot predict a final loss yet")
	}
	return r, nil
}

// checkpoints: best checkpoint, overfitting, Prechelt criteria, stability.
func checkpoints(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("checkpoint")
	meta, err := st.GetRun(ids[0])
	if err != nil {
		return nil, err
	}
	spec, err := runs.SpecOf(meta)
	if err != nil {
		return nil, err
	}
	evalName := "eval/" + spec.MainEval()
	evalPts, err := st.ReadMetric(ids[0], evalName)
	if err != nil {
		return nil, err
	}
	trainPts, err := st.ReadMetric(ids[0], "loss")
	if err != nil {
		return nil, err
	}
	cps, err := st.Checkpoints(ids[0])
	if err != nil {
		return nil, err
	}
	best, bestLoss := -1, math.Inf(1)
	for _, c := range cps {
		if v, ok := c.EvalLoss[spec.MainEval()]; ok && v < bestLoss {
			best, bestLoss = c.Step, v
		}
	}
	if best >= 0 {
		r.Values["best_checkpoint"] = float64(best)
		r.Values["best_eval_loss"] = bestLoss
		r.say("best checkpoint: step %d (%s %.4f)", best, evalName, bestLoss)
	}
	if len(evalPts) >= 2 {
		// Train loss averaged over the steps since the previous evaluation,
		// aligned with each evaluation.
		var tr, ev []float64
		j := 0
		for _, e := range evalPts {
			if e.Step == 0 {
				continue
			}
			var sum float64
			n := 0
			for j < len(trainPts) && trainPts[j].Step <= e.Step {
				sum += trainPts[j].Value
				n++
				j++
			}
			if n > 0 {
				tr = append(tr, sum/float64(n))
				ev = append(ev, e.Value)
			}
		}
		if len(ev) >= 2 {
			gl := analyze.GL(ev)
			r.Values["generalization_loss"] = gl[len(gl)-1]
			signals, err := analyze.EarlyStop(tr, ev, 1, 5, 0.5, 3)
			if err == nil {
				var fired []any
				for _, s := range signals {
					fired = append(fired, fmt.Sprintf("%s at eval %d", s.Criterion, s.Index))
					r.say("early stopping: Prechelt's %s criterion fires at evaluation %d (step %d)", s.Criterion, s.Index, evalStep(evalPts, s.Index))
				}
				r.Values["early_stop"] = fired
				if len(signals) == 0 {
					r.say("early stopping: no Prechelt criterion (GL5, PQ0.5, UP3) fired; keep training or stop at the budget")
				}
			}
			trendTr, trendEv := tr[len(tr)-1]-tr[0], ev[len(ev)-1]-ev[0]
			r.Values["overfitting"] = trendTr < 0 && trendEv > 0
			if trendTr < 0 && trendEv > 0 {
				r.say("overfitting: train loss fell by %.3f while eval loss rose by %.3f", -trendTr, trendEv)
			}
		}
	}
	norms, err := st.ReadMetric(ids[0], "grad_norm")
	if err != nil {
		return nil, err
	}
	if len(norms) >= 4 {
		_, g := series(norms[len(norms)/2:])
		m := meanOf(g)
		var sd float64
		for _, v := range g {
			sd += (v - m) * (v - m)
		}
		cv := math.Sqrt(sd/float64(len(g))) / m
		r.Values["grad_norm_cv"] = cv
		r.say("gradient stability: coefficient of variation of the gradient norm over the second half %.2f", cv)
		_, l := series(trainPts)
		var rough float64
		for i := 1; i < len(l); i++ {
			rough += math.Abs(l[i] - l[i-1])
		}
		r.Values["loss_roughness"] = rough / float64(len(l)-1)
	}
	grads, err := collect.Read[collect.AdapterGrads](st, ids[0], "adapter_grads")
	if err != nil {
		return nil, err
	}
	var ratios []float64
	for _, g := range grads {
		if g.Name != "_step" && g.Value.UpdateRatioA > 0 {
			ratios = append(ratios, g.Value.UpdateRatioA)
		}
	}
	if len(ratios) > 0 {
		r.Values["median_update_ratio_a"] = median(ratios)
		r.say("weight stability: median update-to-weight ratio of A %.2g per step (≈1e-3 is the usual healthy range for Adam)", median(ratios))
	}
	return r, nil
}

func evalStep(pts []kv.Point, i int) int {
	n := 0
	for _, p := range pts {
		if p.Step == 0 {
			continue
		}
		if n == i {
			return p.Step
		}
		n++
	}
	return -1
}

// activation: norm growth per layer and the LoRA contribution over time.
func activation(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("activation")
	acts, err := collect.Read[collect.ActivationStats](st, ids[0], "activations")
	if err != nil {
		return nil, err
	}
	lastStep := 0
	for _, a := range acts {
		lastStep = max(lastStep, a.Step)
	}
	perLayer := map[int]float64{}
	var dead []string
	for _, a := range acts {
		if a.Step != lastStep {
			continue
		}
		var layer int
		if _, err := fmt.Sscanf(a.Name, "blocks.%d.hook_resid_post", &layer); err == nil && strings.HasSuffix(a.Name, "hook_resid_post") {
			perLayer[layer] = a.Value.RowNorm
		}
		if a.Value.Sparsity > 0.5 {
			dead = append(dead, a.Name)
		}
	}
	if len(perLayer) >= 2 {
		var layers []int
		for l := range perLayer {
			layers = append(layers, l)
		}
		sort.Ints(layers)
		norms := map[string]any{}
		for _, l := range layers {
			norms[fmt.Sprint(l)] = perLayer[l]
		}
		growth := perLayer[layers[len(layers)-1]] / perLayer[layers[0]]
		r.Values["resid_norm_by_layer"] = norms
		r.Values["resid_norm_growth"] = growth
		r.say("residual-stream norm grows %.2f× from layer %d to layer %d", growth, layers[0], layers[len(layers)-1])
	}
	if len(dead) > 0 {
		r.say("more than half the values are ~0 at: %s", strings.Join(dead, ", "))
	}
	la, err := collect.Read[collect.LoRAActivation](st, ids[0], "lora_activations")
	if err != nil {
		return nil, err
	}
	byStep := map[int][]float64{}
	for _, a := range la {
		byStep[a.Step] = append(byStep[a.Step], a.Value.Ratio)
	}
	if len(byStep) > 0 {
		var steps []int
		for s := range byStep {
			steps = append(steps, s)
		}
		sort.Ints(steps)
		first, last := meanOf(byStep[steps[0]]), meanOf(byStep[steps[len(steps)-1]])
		r.Values["lora_ratio_first"] = first
		r.Values["lora_ratio_last"] = last
		r.say("LoRA path / base path output norm: %.3g at step %d → %.3g at step %d", first, steps[0], last, steps[len(steps)-1])
	}
	if len(r.Findings) == 0 {
		return nil, fmt.Errorf("run %s has no activation records (collect.activations or collect.lora_activations)", ids[0])
	}
	return r, nil
}

// similarity: subspace similarity and ΔW cosine between two runs' final
// adapters, module by module.
func similarity(st *kv.Store, ids ...string) (*Result, error) {
	r := newResult("similarity")
	a1, _, err := runs.Adapter(st, ids[0], -1)
	if err != nil {
		return nil, err
	}
	a2, _, err := runs.Adapter(st, ids[1], -1)
	if err != nil {
		return nil, err
	}
	if a1 == nil || a2 == nil {
		return nil, fmt.Errorf("similarity compares two LoRA runs")
	}
	mods := map[string]any{}
	var phi11, base11 []float64
	for _, m := range a1.Modules {
		A1, ok := a1.A[m]
		A2, ok2 := a2.A[m]
		if !ok || !ok2 {
			continue
		}
		in := A1.Shape[1]
		r1, r2 := A1.Shape[0], A2.Shape[0]
		p11, err := analyze.SubspaceSimilarity(A1.Data, A2.Data, r1, r2, in, 1, 1)
		if err != nil {
			return nil, err
		}
		pFull, err := analyze.SubspaceSimilarity(A1.Data, A2.Data, r1, r2, in, r1, r2)
		if err != nil {
			return nil, err
		}
		B1, B2 := a1.B[m], a2.B[m]
		cos, err := analyze.DeltaCosine(A1.Data, B1.Data, r1, A2.Data, B2.Data, r2, in, B1.Shape[0])
		if err != nil {
			return nil, err
		}
		mods[m] = map[string]any{"phi_1_1": p11, "phi_full": pFull, "baseline_1_1": analyze.RandomBaseline(1, 1, in),
			"baseline_full": analyze.RandomBaseline(r1, r2, in), "delta_cosine": cos}
		phi11 = append(phi11, p11)
		base11 = append(base11, analyze.RandomBaseline(1, 1, in))
	}
	if len(mods) == 0 {
		return nil, fmt.Errorf("runs %s and %s adapt no module in common", ids[0], ids[1])
	}
	if err := activationCKA(st, r, ids[0], ids[1]); err != nil {
		return nil, err
	}
	r.Values["modules"] = mods
	r.Values["mean_phi_1_1"] = meanOf(phi11)
	r.say("top directions: mean φ(1,1) = %.3f against a random baseline of %.4f over %d modules", meanOf(phi11), meanOf(base11), len(mods))
	return r, nil
}

// activationCKA adds linear CKA between the two runs' activation tensors
// at each hook both collected (collect.activations(tensors=True)), at
// each run's last collected step.
func activationCKA(st *kv.Store, r *Result, id1, id2 string) error {
	last := func(id string) (map[string]kv.Tensor, error) {
		items, err := st.ReadCollected(id, "activations")
		if err != nil {
			return nil, err
		}
		out := map[string]kv.Tensor{}
		step := -1
		for _, it := range items {
			if it.Kind == kv.KindTensor && it.Tensor != nil && it.Step >= step {
				if it.Step > step {
					out, step = map[string]kv.Tensor{}, it.Step
				}
				out[it.Name] = *it.Tensor
			}
		}
		return out, nil
	}
	t1, err := last(id1)
	if err != nil {
		return err
	}
	t2, err := last(id2)
	if err != nil {
		return err
	}
	cka := map[string]any{}
	for name, a := range t1 {
		b, ok := t2[name]
		if !ok || len(a.Shape) != 2 || len(b.Shape) != 2 || a.Shape[0] != b.Shape[0] {
			continue
		}
		v, err := analyze.LinearCKA(f64(a.Data), f64(b.Data), a.Shape[0], a.Shape[1], b.Shape[1])
		if err != nil {
			return err
		}
		cka[name] = v
	}
	if len(cka) > 0 {
		r.Values["activation_cka"] = cka
		for _, k := range slices.Sorted(maps.Keys(cka)) {
			r.say("linear CKA of %s on the probe batch: %.3f", k, cka[k])
		}
	}
	return nil
}

func f64(x []float32) []float64 {
	out := make([]float64, len(x))
	for i, v := range x {
		out[i] = float64(v)
	}
	return out
}

// Subspace returns the grid φ(i, j) (Hu et al. 2021 §7) between lora_A of
// module in two runs at checkpoints step1 and step2 (negative: the latest;
// the same run at two steps compares checkpoints), and the random baseline
// max(i,j)/in.
func Subspace(st *kv.Store, id1, id2, module string, step1, step2 int) (grid, baseline [][]float64, err error) {
	a1, _, err := runs.Adapter(st, id1, step1)
	if err != nil {
		return nil, nil, err
	}
	a2, _, err := runs.Adapter(st, id2, step2)
	if err != nil {
		return nil, nil, err
	}
	if a1 == nil || a2 == nil {
		return nil, nil, fmt.Errorf("subspace compares two LoRA runs")
	}
	A1, ok1 := a1.A[module]
	A2, ok2 := a2.A[module]
	if !ok1 || !ok2 {
		return nil, nil, fmt.Errorf("module %s is not adapted in both runs", module)
	}
	in := A1.Shape[1]
	grid, err = analyze.SubspaceGrid(A1.Data, A2.Data, A1.Shape[0], A2.Shape[0], in)
	if err != nil {
		return nil, nil, err
	}
	baseline = make([][]float64, len(grid))
	for i := range grid {
		baseline[i] = make([]float64, len(grid[i]))
		for j := range grid[i] {
			baseline[i][j] = analyze.RandomBaseline(i+1, j+1, in)
		}
	}
	return grid, baseline, nil
}
