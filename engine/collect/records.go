package collect

import "math"

// The record types below are written by the built-in collectors and read
// by the analyzers: one definition shared by producer and consumer.

// AdapterWeights is one LoRA module's weights at a step (collector
// "adapter_weights", record name = module path).
type AdapterWeights struct {
	Module        string    `json:"module"`
	NormA         float64   `json:"norm_a"`
	NormB         float64   `json:"norm_b"`
	MeanA         float64   `json:"mean_a"`
	StdA          float64   `json:"std_a"`
	MeanB         float64   `json:"mean_b"`
	StdB          float64   `json:"std_b"`
	DeltaFro      float64   `json:"delta_fro"`      // ‖s·B·A‖_F
	DeltaSpectral float64   `json:"delta_spectral"` // σ_max(s·B·A)
	SV            []float64 `json:"sv"`             // singular values of s·B·A, descending
	EffectiveRank float64   `json:"effective_rank"`
	StableRank    float64   `json:"stable_rank"`
}

// AdapterGrads is one LoRA module's gradients at a step, read after
// backward and before the optimizer step, plus the update the step made
// (collector "adapter_grads", record name = module path).
type AdapterGrads struct {
	Module    string  `json:"module"`
	NormGradA float64 `json:"norm_grad_a"`
	NormGradB float64 `json:"norm_grad_b"`
	// The values below are absent where undefined: the ratio while ∇A = 0
	// (every step before B leaves zero), a cosine when this or the previous
	// collected gradient is zero (or there is none yet).
	RatioBA      *float64 `json:"ratio_b_a,omitempty"`  // ‖∇B‖/‖∇A‖
	CosPrevA     *float64 `json:"cos_prev_a,omitempty"` // cosine with the previous collected ∇A
	CosPrevB     *float64 `json:"cos_prev_b,omitempty"`
	UpdateRatioA float64  `json:"update_ratio_a"` // ‖A_{t+1}−A_t‖/‖A_t‖
	UpdateAbsB   float64  `json:"update_abs_b"`   // ‖B_{t+1}−B_t‖ (B starts at 0)
}

// StepGrads is the step-level gradient record (collector "adapter_grads",
// record name "_step").
type StepGrads struct {
	GlobalNorm  float64   `json:"global_norm"`   // L2 over every trainable tensor, before clipping
	MicroNormSq []float64 `json:"micro_norm_sq"` // ‖g‖² of each micro-batch (batch size MicroBatch)
	MicroBatch  int       `json:"micro_batch"`
	Clipped     bool      `json:"clipped"`
}

// LoRAActivation is one module's activations on the probe batch
// (collector "lora_activations", record name = module path): norms are
// mean row L2 norms over the probe's token positions.
type LoRAActivation struct {
	Module     string  `json:"module"`
	InNorm     float64 `json:"in_norm"`   // x
	MidNorm    float64 `json:"mid_norm"`  // x·Aᵀ
	LoRANorm   float64 `json:"lora_norm"` // s·x·Aᵀ·Bᵀ
	BaseNorm   float64 `json:"base_norm"` // x·Wᵀ
	Ratio      float64 `json:"ratio"`     // LoRANorm / BaseNorm
	InSparsity float64 `json:"in_sparsity"`
}

// ActivationStats summarises one hook point on the probe batch (collector
// "activations", record name = hook name).
type ActivationStats struct {
	Hook     string    `json:"hook"`
	Mean     float64   `json:"mean"`
	Std      float64   `json:"std"`
	RowNorm  float64   `json:"row_norm"` // mean L2 norm of a position's vector
	Min      float64   `json:"min"`
	Max      float64   `json:"max"`
	Q05      float64   `json:"q05"`
	Q50      float64   `json:"q50"`
	Q95      float64   `json:"q95"`
	Sparsity float64   `json:"sparsity"` // fraction of |x| < 1e-6
	Hist     []int     `json:"hist"`
	Edges    []float64 `json:"edges"`
}

// OrNaN is *p, or NaN for a value a record leaves absent because it is
// undefined (for charts that draw NaN as a gap).
func OrNaN(p *float64) float64 {
	if p == nil {
		return math.NaN()
	}
	return *p
}
