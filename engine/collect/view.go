package collect

import (
	"lens/engine/train"
)

// StepView is a plain summary of a step for collectors written outside
// Go (Starlark): the step's scalars and, per LoRA module, weight and
// gradient norms. It is computed after the optimizer step, so gradient
// norms are those of the step just taken.
func StepView(t *train.Trainer, s *train.StepInfo) map[string]any {
	v := map[string]any{
		"step": s.Step, "loss": s.Loss, "lr": s.LR, "grad_norm": s.GradNorm,
		"clipped": s.Clipped, "skipped": s.Skipped, "tokens": s.Tokens,
	}
	if t.Adapter != nil {
		mods := map[string]any{}
		for _, m := range t.Adapter.Modules {
			pa, pb := t.Param(m+".lora_A"), t.Param(m+".lora_B")
			mods[m] = map[string]any{
				"norm_a": norm(pa.Data), "norm_b": norm(pb.Data),
				"grad_norm_a": norm(pa.Grad), "grad_norm_b": norm(pb.Grad),
			}
		}
		v["modules"] = mods
	}
	return v
}

// FuncCollector adapts a function to a Collector: fn is called after
// every every-th optimizer step with the StepView and returns a record to
// store (nil stores nothing).
type FuncCollector struct {
	CName string
	Every int
	Fn    func(view map[string]any) (map[string]any, error)
}

// Name is the collector's name.
func (f *FuncCollector) Name() string { return f.CName }

// Hooks calls Fn after each due step.
func (f *FuncCollector) Hooks(t *train.Trainer, sink Sink, _ *Probe) train.Hooks {
	return train.Hooks{AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
		if !due(s.Step, f.Every) {
			return nil
		}
		rec, err := f.Fn(StepView(t, s))
		if err != nil || rec == nil {
			return err
		}
		return sink.PutJSON(f.CName, s.Step, "value", rec)
	}}
}
