package collect

import (
	"fmt"
	"maps"
	"math"
	"path"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"

	"lens/engine/analyze"
	"lens/engine/gemm"
	"lens/engine/train"
)

func init() {
	Default.Register(Registration{Name: "adapter_weights", Produces: "AdapterWeights",
		Doc: "per LoRA module: A and B norms, mean, std; ΔW = s·B·A singular values (r×r method), Frobenius and spectral norm; options tensors=True also stores A and B",
		Factory: func(s Spec) (Collector, error) {
			return &adapterWeights{every: s.Every, tensors: boolOpt(s, "tensors")}, nil
		}})
	Default.Register(Registration{Name: "adapter_grads", Produces: "AdapterGrads, StepGrads",
		Doc: "per LoRA module: ∇A and ∇B norms (between backward and the optimizer step), their ratio, cosine with the previous collected gradient, update-to-weight ratio of the step",
		Factory: func(s Spec) (Collector, error) {
			return &adapterGrads{every: s.Every, prev: map[string][]float32{}, before: map[string][]float32{}}, nil
		}})
	Default.Register(Registration{Name: "lora_activations", Produces: "LoRAActivation",
		Doc:     "per LoRA module on the probe batch: input, x·Aᵀ, LoRA-path and base-path output norms, their ratio, input sparsity",
		Factory: func(s Spec) (Collector, error) { return &loraActivations{every: s.Every}, nil }})
	Default.Register(Registration{Name: "activations", Produces: "ActivationStats",
		Doc: "TransformerLens-style hook points on the probe batch, selected by glob patterns (option hooks, default blocks.*.hook_resid_post); summaries, or full tensors with tensors=True",
		Factory: func(s Spec) (Collector, error) {
			pats := stringsOpt(s, "hooks")
			if len(pats) == 0 {
				pats = []string{"blocks.*.hook_resid_post"}
			}
			for _, p := range pats {
				if _, err := path.Match(p, ""); err != nil {
					return nil, fmt.Errorf("collector activations: hook pattern %q: %w", p, err)
				}
			}
			return &activations{every: s.Every, patterns: pats, tensors: boolOpt(s, "tensors")}, nil
		}})
}

func boolOpt(s Spec, name string) bool {
	v, _ := s.Options[name].(bool)
	return v
}

func stringsOpt(s Spec, name string) []string {
	switch v := s.Options[name].(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, x := range v {
			if str, ok := x.(string); ok {
				out = append(out, str)
			}
		}
		return out
	case []string:
		return v
	}
	return nil
}

func norm(x []float32) float64 { return analyze.GlobalNorm(x) }

func due(step, every int) bool { return every > 0 && step%every == 0 }

// ---- adapter weights ----

type adapterWeights struct {
	every   int
	tensors bool
}

func (c *adapterWeights) Name() string { return "adapter_weights" }
func (c *adapterWeights) Hooks(t *train.Trainer, sink Sink, _ *Probe) train.Hooks {
	return train.Hooks{AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
		if t.Adapter == nil || !due(s.Step, c.every) {
			return nil
		}
		ad := t.Adapter
		r, scale := ad.Config.Rank, ad.Config.Scale()
		// The modules' spectra are independent: compute them on every core
		// (between steps the training workers idle), then write in order.
		recs := make([]AdapterWeights, len(ad.Modules))
		err := forEach(len(ad.Modules), func(i int) error {
			mod := ad.Modules[i]
			A, B := ad.A[mod], ad.B[mod]
			rec := AdapterWeights{Module: mod, NormA: norm(A.Data), NormB: norm(B.Data)}
			rec.MeanA, rec.StdA = meanStd(A.Data)
			rec.MeanB, rec.StdB = meanStd(B.Data)
			sv, _, _, err := analyze.DeltaSpectrum(A.Data, B.Data, r, A.Shape[1], B.Shape[0], scale)
			if err != nil {
				return fmt.Errorf("adapter_weights %s: %w", mod, err)
			}
			rec.SV = sv
			for _, v := range sv {
				rec.DeltaFro += v * v
			}
			rec.DeltaFro = math.Sqrt(rec.DeltaFro)
			if len(sv) > 0 {
				rec.DeltaSpectral = sv[0]
			}
			rec.EffectiveRank, rec.StableRank = analyze.EffectiveRank(sv), analyze.StableRank(sv)
			recs[i] = rec
			return nil
		})
		if err != nil {
			return err
		}
		out := newBatch(sink, c.Name(), s.Step)
		for i, mod := range ad.Modules {
			if err := out.json(mod, recs[i]); err != nil {
				return err
			}
			if c.tensors {
				A, B := ad.A[mod], ad.B[mod]
				out.tensor(kvTensor(mod+".lora_A", A.Shape, A.Data))
				out.tensor(kvTensor(mod+".lora_B", B.Shape, B.Data))
			}
		}
		return out.flush()
	}}
}

// ---- adapter gradients ----

type adapterGrads struct {
	every  int
	prev   map[string][]float32 // last collected gradient per parameter
	before map[string][]float32 // weights before this step's update
}

func (c *adapterGrads) Name() string { return "adapter_grads" }
func (c *adapterGrads) Hooks(t *train.Trainer, sink Sink, _ *Probe) train.Hooks {
	var pending []AdapterGrads
	return train.Hooks{
		AfterBackward: func(t *train.Trainer, s *train.StepInfo) error {
			pending = nil
			if t.Adapter == nil || !due(s.Step, c.every) {
				return nil
			}
			for _, mod := range t.Adapter.Modules {
				pa, pb := t.Param(mod+".lora_A"), t.Param(mod+".lora_B")
				rec := AdapterGrads{Module: mod, NormGradA: norm(pa.Grad), NormGradB: norm(pb.Grad)}
				if rec.NormGradA > 0 {
					ratio := rec.NormGradB / rec.NormGradA
					rec.RatioBA = &ratio
				}
				for _, p := range []*train.Param{pa, pb} {
					// A cosine with a zero vector is undefined, not 0: absent.
					if prev, ok := c.prev[p.Name]; ok && norm(prev) > 0 && norm(p.Grad) > 0 {
						cos, err := analyze.Cosine(prev, p.Grad)
						if err != nil {
							return fmt.Errorf("adapter_grads %s: %w", p.Name, err)
						}
						if p == pa {
							rec.CosPrevA = &cos
						} else {
							rec.CosPrevB = &cos
						}
					}
					c.prev[p.Name] = append(c.prev[p.Name][:0], p.Grad...)
					c.before[p.Name] = append(c.before[p.Name][:0], p.Data...)
				}
				pending = append(pending, rec)
			}
			return sink.PutJSON(c.Name(), s.Step, "_step", StepGrads{GlobalNorm: s.GradNorm, MicroNormSq: s.MicroNorm,
				MicroBatch: t.Config.BatchSize, Clipped: s.Clipped})
		},
		AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
			out := newBatch(sink, c.Name(), s.Step)
			for _, rec := range pending {
				pa, pb := t.Param(rec.Module+".lora_A"), t.Param(rec.Module+".lora_B")
				ratio, _, err := analyze.UpdateRatio(c.before[pa.Name], pa.Data)
				if err != nil {
					return fmt.Errorf("adapter_grads %s: %w", rec.Module, err)
				}
				rec.UpdateRatioA = ratio
				rec.UpdateAbsB = diffNorm(c.before[pb.Name], pb.Data)
				if err := out.json(rec.Module, rec); err != nil {
					return err
				}
			}
			pending = nil
			return out.flush()
		},
	}
}

func diffNorm(a, b []float32) float64 {
	var s float64
	for i := range a {
		d := float64(b[i]) - float64(a[i])
		s += d * d
	}
	return math.Sqrt(s)
}

// ---- probe-batch collectors ----

// probeForward runs the probe batch through the current weights, once per
// optimizer step however many collectors ask (the probe remembers the step
// its activations belong to), where the trainer trains: on the CPU graph
// or on its device.
func probeForward(t *train.Trainer, p *Probe) (train.Activations, error) {
	if p == nil || len(p.Inputs) == 0 {
		return nil, fmt.Errorf("no probe batch")
	}
	if p.acts != nil && p.step == t.Step && p.trainer == t {
		return p.acts, nil
	}
	acts, err := t.Probe(p.Inputs, p.Targets, p.Batch)
	if err != nil {
		return nil, fmt.Errorf("probe batch: %w", err)
	}
	c := t.Model.Config
	acts = tlActs{Activations: acts, last: fmt.Sprintf("blocks.%d.hook_resid_post", c.NumHiddenLayers-1), eps: c.RMSNormEps}
	p.acts, p.step, p.trainer = acts, t.Step, t
	return acts, nil
}

// LNFinalNormalized is TransformerLens's name for the final residual
// stream normalised by its RMS, before the final norm's weight.
const LNFinalNormalized = "ln_final.hook_normalized"

// tlActs reads the probe's hook points with TransformerLens's meaning
// where the forward pass's differ: the pass's ln_final.hook_normalized
// (on the CPU graph and on the device step alike) is the fused RMSNorm's
// output, after the weight, so it is recomputed here from the last
// block's hook_resid_post as x/√(mean(x²)+eps), what TransformerLens's
// RMSNorm hands its hook_normalized.
type tlActs struct {
	train.Activations
	last string // blocks.{L-1}.hook_resid_post
	eps  float64
}

func (a tlActs) Read(name string) ([]float32, []int, error) {
	if name != LNFinalNormalized {
		return a.Activations.Read(name)
	}
	x, shape, err := a.Activations.Read(a.last)
	if err != nil {
		return nil, nil, fmt.Errorf("%s from %s: %w", name, a.last, err)
	}
	w := shape[len(shape)-1]
	out := make([]float32, len(x))
	for r := 0; r+w <= len(x); r += w {
		var ss float64
		for _, v := range x[r : r+w] {
			ss += float64(v) * float64(v)
		}
		inv := 1 / math.Sqrt(ss/float64(w)+a.eps)
		for i, v := range x[r : r+w] {
			out[r+i] = float32(float64(v) * inv)
		}
	}
	return out, shape, nil
}

type loraActivations struct{ every int }

func (c *loraActivations) Name() string { return "lora_activations" }
func (c *loraActivations) Hooks(t *train.Trainer, sink Sink, probe *Probe) train.Hooks {
	return train.Hooks{AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
		if t.Adapter == nil || !due(s.Step, c.every) {
			return nil
		}
		acts, err := probeForward(t, probe)
		if err != nil {
			return fmt.Errorf("lora_activations: %w", err)
		}
		mods := t.Adapter.Modules
		recs := make([]LoRAActivation, len(mods))
		err = forEach(len(mods), func(i int) error {
			mod := mods[i]
			x, _, err := acts.Read(mod + ".hook_in")
			if err != nil {
				return fmt.Errorf("lora_activations %s: %w", mod, err)
			}
			y, _, err := acts.Read(mod + ".hook_out")
			if err != nil {
				return fmt.Errorf("lora_activations %s: %w", mod, err)
			}
			A, B := t.Adapter.A[mod], t.Adapter.B[mod]
			mid, _, err := acts.LoRAHidden(mod) // x·Aᵀ (no dropout on the probe)
			if err != nil {
				return fmt.Errorf("lora_activations %s: %w", mod, err)
			}
			recs[i] = loraActivation(mod, x, mid, y, B.Data, A.Shape[1], A.Shape[0], B.Shape[0], float32(t.Adapter.Config.Scale()))
			return nil
		})
		if err != nil {
			return err
		}
		out := newBatch(sink, c.Name(), s.Step)
		for _, rec := range recs {
			if err := out.json(rec.Module, rec); err != nil {
				return err
			}
		}
		return out.flush()
	}}
}

// loraActivation splits a module's probe output y (rows×o) into the
// adapter's part l = s·mid·Bᵀ and the base part y − l, row by row.
func loraActivation(mod string, x, mid, y, b []float32, in, r, o int, s float32) LoRAActivation {
	rows := len(mid) / r
	rec := LoRAActivation{Module: mod, InNorm: rowNorm(x, in), MidNorm: rowNorm(mid, r), InSparsity: sparsity(x)}
	l := make([]float32, rows*o)
	gemm.Sgemm(false, true, rows, o, r, s, mid, r, b, r, 0, l, o)
	for i := range rows {
		var ll, bb float64
		for j, v := range l[i*o : (i+1)*o] {
			lv := float64(v)
			base := float64(y[i*o+j]) - lv
			ll += lv * lv
			bb += base * base
		}
		rec.LoRANorm += math.Sqrt(ll)
		rec.BaseNorm += math.Sqrt(bb)
	}
	if rows > 0 {
		rec.LoRANorm /= float64(rows)
		rec.BaseNorm /= float64(rows)
	}
	if rec.BaseNorm > 0 {
		rec.Ratio = rec.LoRANorm / rec.BaseNorm
	}
	return rec
}

// forEach runs fn(0..n-1) on GOMAXPROCS goroutines: a collection runs
// between optimizer steps while the training workers idle, so its
// per-module statistics use every core. It returns the first error by index.
func forEach(n int, fn func(i int) error) error {
	errs := make([]error, n)
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(n, runtime.GOMAXPROCS(0)) {
		wg.Go(func() {
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				errs[i] = fn(i)
			}
		})
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}

type activations struct {
	every    int
	patterns []string
	tensors  bool
}

func (c *activations) Name() string { return "activations" }
func (c *activations) Hooks(t *train.Trainer, sink Sink, probe *Probe) train.Hooks {
	return train.Hooks{AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
		if !due(s.Step, c.every) {
			return nil
		}
		acts, err := probeForward(t, probe)
		if err != nil {
			return fmt.Errorf("activations: %w", err)
		}
		type hook struct {
			x     []float32
			shape []int
		}
		hooks := map[string]hook{}
		for _, name := range acts.Names() {
			if c.match(name) {
				x, shape, err := acts.Read(name)
				if err != nil {
					return fmt.Errorf("activations %s: %w", name, err)
				}
				hooks[name] = hook{x, shape}
			}
		}
		names := slices.Sorted(maps.Keys(hooks))
		matched := len(names)
		recs := make([]ActivationStats, len(names))
		err = forEach(len(names), func(i int) error {
			h := hooks[names[i]]
			st, err := analyze.Summary(h.x, h.shape[len(h.shape)-1], 20)
			if err != nil {
				return fmt.Errorf("activations %s: %w", names[i], err)
			}
			recs[i] = ActivationStats{Hook: names[i], Mean: st.Mean, Std: st.Std, RowNorm: st.Norm, Min: st.Min, Max: st.Max,
				Q05: st.Q05, Q50: st.Q50, Q95: st.Q95, Sparsity: st.FracZero, Hist: st.Hist.Counts, Edges: st.Hist.Edges}
			return nil
		})
		if err != nil {
			return err
		}
		out := newBatch(sink, c.Name(), s.Step)
		for i, name := range names {
			if err := out.json(name, recs[i]); err != nil {
				return err
			}
			if c.tensors {
				out.tensor(kvTensor(name, hooks[name].shape, hooks[name].x))
			}
		}
		if err := out.flush(); err != nil {
			return err
		}
		if matched == 0 {
			return fmt.Errorf("activations: no hook point matches %s (names look like blocks.0.hook_resid_post, blocks.0.attn.hook_z)", strings.Join(c.patterns, ", "))
		}
		return nil
	}}
}

func (c *activations) match(name string) bool {
	for _, p := range c.patterns {
		if ok, _ := path.Match(p, name); ok {
			return true
		}
	}
	return false
}
