package analyze

import (
	"fmt"
	"math"
	"slices"
)

// GlobalNorm is sqrt(Σ_tensors ‖g‖²), the global gradient norm before
// clipping (never a sum of norms; docs/SCIENCE.md "Gradient health").
func GlobalNorm(tensors ...[]float32) float64 {
	var s float64
	for _, g := range tensors {
		for _, v := range g {
			s += float64(v) * float64(v)
		}
	}
	return math.Sqrt(s)
}

// NoiseScale returns the unbiased single-step estimates of ‖G‖² and tr(Σ)
// from squared gradient norms at batch sizes bSmall < bBig (McCandlish et al.
// 2018, App. A): ‖G‖² ≈ (B‖G_B‖² − b‖G_b‖²)/(B − b),
// tr Σ ≈ (‖G_b‖² − ‖G_B‖²)/(1/b − 1/B). Either may be negative; smooth them
// (NoiseScaleEstimator) before dividing.
func NoiseScale(bSmall, normSqSmall, bBig, normSqBig float64) (gradSq, traceSigma float64, err error) {
	if !(bSmall > 0 && bBig > bSmall) {
		return 0, 0, fmt.Errorf("noise scale: need 0 < b < B, got b=%g, B=%g", bSmall, bBig)
	}
	gradSq = (bBig*normSqBig - bSmall*normSqSmall) / (bBig - bSmall)
	traceSigma = (normSqSmall - normSqBig) / (1/bSmall - 1/bBig)
	return gradSq, traceSigma, nil
}

// ema is an exponential moving average with start-bias correction.
type ema struct {
	s float64
	t int
}

func (e *ema) add(beta, x float64) {
	e.s = beta*e.s + (1-beta)*x
	e.t++
}

func (e *ema) value(beta float64) float64 {
	if e.t == 0 {
		return 0
	}
	return e.s / (1 - math.Pow(beta, float64(e.t)))
}

// NoiseScaleEstimator smooths McCandlish et al. (2018, App. A) estimates of
// ‖G‖² and tr Σ with bias-corrected EMAs of factor Beta ∈ [0, 1) and divides
// them for B_simple = tr Σ / ‖G‖². The zero value (Beta 0, no smoothing) works.
type NoiseScaleEstimator struct {
	Beta  float64
	g, tr ema
}

// Add feeds one step's squared norms at batch sizes bSmall < bBig.
func (e *NoiseScaleEstimator) Add(bSmall, normSqSmall, bBig, normSqBig float64) error {
	if e.Beta < 0 || e.Beta >= 1 {
		return fmt.Errorf("noise scale estimator: beta %g outside [0, 1)", e.Beta)
	}
	g, tr, err := NoiseScale(bSmall, normSqSmall, bBig, normSqBig)
	if err != nil {
		return fmt.Errorf("noise scale estimator: %w", err)
	}
	e.g.add(e.Beta, g)
	e.tr.add(e.Beta, tr)
	return nil
}

// GradSq is the smoothed estimate of ‖G‖².
func (e *NoiseScaleEstimator) GradSq() float64 { return e.g.value(e.Beta) }

// TraceSigma is the smoothed estimate of tr Σ (per-example covariance).
func (e *NoiseScaleEstimator) TraceSigma() float64 { return e.tr.value(e.Beta) }

// BSimple is the smoothed tr Σ / ‖G‖²; ok is false before any data or while
// either smoothed estimate is not positive.
func (e *NoiseScaleEstimator) BSimple() (float64, bool) {
	g, tr := e.GradSq(), e.TraceSigma()
	if e.g.t == 0 || g <= 0 || tr <= 0 {
		return 0, false
	}
	return tr / g, true
}

// median returns the median of x (copied, not modified); 0 for empty x.
func median(x []float64) float64 {
	if len(x) == 0 {
		return 0
	}
	s := slices.Clone(x)
	slices.Sort(s)
	n := len(s)
	if n%2 == 1 {
		return s[n/2]
	}
	return (s[n/2-1] + s[n/2]) / 2
}

// mad returns the median absolute deviation of x about m.
func mad(x []float64, m float64) float64 {
	d := make([]float64, len(x))
	for i, v := range x {
		d[i] = math.Abs(v - m)
	}
	return median(d)
}

// Spikes returns the indices i whose value exceeds median + k·MAD of the
// trailing window series[i−window : i] (the point itself excluded; at least
// min(window, 5) earlier points): a robust rule that a spike cannot inflate,
// unlike mean + k·std (docs/SCIENCE.md "Gradient health"). MAD is unscaled.
func Spikes(series []float64, window int, k float64) []int {
	if window < 2 {
		return nil
	}
	var out []int
	for i := min(window, 5); i < len(series); i++ {
		hist := series[max(0, i-window):i]
		m := median(hist)
		d := mad(hist, m)
		d = math.Max(d, 1e-12*math.Max(math.Abs(m), 1)) // constant history
		if series[i] > m+k*d {
			out = append(out, i)
		}
	}
	return out
}

// Consistency is the mean cosine between successive gradient vectors
// (docs/SCIENCE.md "Gradient health"); needs at least two of equal length.
func Consistency(grads [][]float32) (float64, error) {
	if len(grads) < 2 {
		return 0, fmt.Errorf("consistency: %d gradients, need ≥ 2", len(grads))
	}
	var s float64
	for i := 1; i < len(grads); i++ {
		c, err := Cosine(grads[i-1], grads[i])
		if err != nil {
			return 0, fmt.Errorf("consistency: gradients %d and %d: %w", i-1, i, err)
		}
		s += c
	}
	return s / float64(len(grads)-1), nil
}

// ZeroNorm is the ‖θ‖ below which UpdateRatio reports the absolute update.
const ZeroNorm = 1e-12

// UpdateRatio is ‖after − before‖/‖before‖ (update-to-weight ratio, ~1e-3
// healthy for Adam); when ‖before‖ < ZeroNorm (LoRA B at init) it returns the
// absolute ‖after − before‖ with relative = false.
func UpdateRatio(before, after []float32) (value float64, relative bool, err error) {
	if len(before) != len(after) {
		return 0, false, fmt.Errorf("update ratio: lengths %d and %d: %w", len(before), len(after), errShape)
	}
	var d float64
	for i := range before {
		x := float64(after[i]) - float64(before[i])
		d += x * x
	}
	nb := norm2(before)
	if nb < ZeroNorm {
		return math.Sqrt(d), false, nil
	}
	return math.Sqrt(d) / nb, true, nil
}
