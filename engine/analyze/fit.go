package analyze

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// Fit is a least-squares fit of L(t) = LInf + A·t^−B.
type Fit struct {
	LInf, A, B float64
	LInfStdErr float64 // standard error of LInf from the Jacobian at the optimum
	Remaining  float64 // A·t_last^−B: predicted further fall after the last step
	RMSE       float64
	// Converged is true when the fit supports a plateau: B is inside its
	// search range, A > 0 and LInf is determined to better than a tenth of
	// the fitted fall A·t_first^−B.
	Converged bool
}

// Power-law exponents searched by FitPowerLaw.
const (
	fitMinB = 1e-3
	fitMaxB = 5.0
)

// FitPowerLaw fits L(t) = L∞ + a·t^−b by non-linear least squares (variable
// projection: L∞ and a are linear given b; b by grid and golden-section
// search) and takes L∞'s standard error from σ²(JᵀJ)⁻¹ (docs/SCIENCE.md "Curve
// fit"). Pass the smoothed curve after warmup; steps must be positive.
func FitPowerLaw(steps, losses []float64) (Fit, error) {
	n := len(steps)
	if n != len(losses) {
		return Fit{}, fmt.Errorf("fit power law: %d steps and %d losses: %w", n, len(losses), errShape)
	}
	if n < 5 {
		return Fit{}, fmt.Errorf("fit power law: %d points, need ≥ 5", n)
	}
	for i, t := range steps {
		if !(t > 0) || math.IsInf(t, 0) || math.IsNaN(losses[i]) || math.IsInf(losses[i], 0) {
			return Fit{}, fmt.Errorf("fit power law: point %d (t=%g, L=%g) not finite with t > 0", i, t, losses[i])
		}
	}
	rss := func(lb float64) float64 { _, _, r := linearPart(steps, losses, math.Exp(lb)); return r }
	const grid = 300
	lo, hi := math.Log(fitMinB), math.Log(fitMaxB)
	at := func(i int) float64 { return lo + (hi-lo)*float64(i)/grid }
	best, bestR := 0, math.Inf(1)
	for i := 0; i <= grid; i++ {
		if r := rss(at(i)); r < bestR {
			best, bestR = i, r
		}
	}
	lb := goldenMin(rss, at(max(best-1, 0)), at(min(best+1, grid)))
	b := math.Exp(lb)
	linf, a, r := linearPart(steps, losses, b)
	f := Fit{LInf: linf, A: a, B: b, RMSE: math.Sqrt(r / float64(n))}
	f.Remaining = a * math.Pow(maxOf(steps), -b)
	f.LInfStdErr = linfStdErr(steps, a, b, r/float64(n-3))
	drop := a * math.Pow(minOf(steps), -b)
	interior := best > 0 && best < grid
	f.Converged = interior && a > 0 && f.LInfStdErr < 0.1*drop
	return f, nil
}

// linearPart solves min over (L∞, a) of Σ(y − L∞ − a·t^−b)² for fixed b.
func linearPart(t, y []float64, b float64) (linf, a, rss float64) {
	n := float64(len(t))
	var mz, my float64
	z := make([]float64, len(t))
	for i := range t {
		z[i] = math.Pow(t[i], -b)
		mz += z[i]
		my += y[i]
	}
	mz /= n
	my /= n
	var szz, szy float64
	for i := range z {
		szz += (z[i] - mz) * (z[i] - mz)
		szy += (z[i] - mz) * (y[i] - my)
	}
	if szz > 0 {
		a = szy / szz
	}
	linf = my - a*mz
	for i := range z {
		d := y[i] - linf - a*z[i]
		rss += d * d
	}
	return linf, a, rss
}

// linfStdErr is sqrt of the (L∞, L∞) entry of σ²(JᵀJ)⁻¹ with Jacobian rows
// [1, t^−b, −a·t^−b·ln t]; +Inf when JᵀJ is singular.
func linfStdErr(t []float64, a, b, sigma2 float64) float64 {
	j := mat.NewDense(len(t), 3, nil)
	for i, ti := range t {
		z := math.Pow(ti, -b)
		j.Set(i, 0, 1)
		j.Set(i, 1, z)
		j.Set(i, 2, -a*z*math.Log(ti))
	}
	var jtj, inv mat.Dense
	jtj.Mul(j.T(), j)
	if err := inv.Inverse(&jtj); err != nil {
		return math.Inf(1)
	}
	v := sigma2 * inv.At(0, 0)
	if !(v >= 0) {
		return math.Inf(1)
	}
	return math.Sqrt(v)
}

// goldenMin minimises f on [lo, hi] by golden-section search.
func goldenMin(f func(float64) float64, lo, hi float64) float64 {
	const g = 0.6180339887498949
	c, d := hi-g*(hi-lo), lo+g*(hi-lo)
	fc, fd := f(c), f(d)
	for i := 0; i < 100 && hi-lo > 1e-10; i++ {
		if fc < fd {
			hi, d, fd = d, c, fc
			c = hi - g*(hi-lo)
			fc = f(c)
		} else {
			lo, c, fc = c, d, fd
			d = lo + g*(hi-lo)
			fd = f(d)
		}
	}
	return (lo + hi) / 2
}

func minOf(x []float64) float64 {
	m := math.Inf(1)
	for _, v := range x {
		m = math.Min(m, v)
	}
	return m
}

func maxOf(x []float64) float64 {
	m := math.Inf(-1)
	for _, v := range x {
		m = math.Max(m, v)
	}
	return m
}

// Plateau returns the first index i from which every window of the given
// length starting at or after i has a least-squares slope whose drift across
// the window, |slope|·(window−1), is within 2σ, σ the series' own per-step
// noise estimated robustly from step-to-step differences
// (1.4826·MAD(diff)/√2); -1 when the last window is still moving
// (docs/SCIENCE.md "Curve fit": never a fixed step). Use window ≳ 20.
func Plateau(series []float64, window int) int {
	n := len(series)
	if window < 3 || n < window {
		return -1
	}
	diff := make([]float64, n-1)
	var scale float64
	for i := range diff {
		diff[i] = series[i+1] - series[i]
		scale = math.Max(scale, math.Abs(series[i]))
	}
	sigma := 1.4826 * mad(diff, median(diff)) / math.Sqrt2
	tol := math.Max(2*sigma, 1e-12*math.Max(scale, 1))
	// Least-squares slope over x = 0..w−1: Σ(x−x̄)y / Σ(x−x̄)².
	w := float64(window)
	xbar, sxx := (w-1)/2, w*(w*w-1)/12
	first := -1
	for j := n - window; j >= 0; j-- {
		var sxy float64
		for k := 0; k < window; k++ {
			sxy += (float64(k) - xbar) * series[j+k]
		}
		if math.Abs(sxy/sxx)*(w-1) > tol {
			break
		}
		first = j
	}
	return first
}
