package analyze

import (
	"errors"
	"fmt"
	"math"
	"slices"
)

// ErrTooSmall is returned when a spectrum has too few eigenvalues for a
// meaningful power-law fit (docs/SCIENCE.md: at least ~50).
var ErrTooSmall = errors.New("analyze: too small")

// MinPowerLawEigs is the fewest positive eigenvalues PowerLawAlpha accepts.
const MinPowerLawEigs = 50

// minTail is the fewest points a candidate tail may have.
const minTail = 10

// PowerLawAlpha fits p(λ) ∝ λ^−α to the tail λ ≥ λmin of the positive
// eigenvalues by the Clauset–Shalizi–Newman (2009) continuous MLE
// α = 1 + n/Σ log(λ_i/λmin), with λmin the candidate (leaving ≥ 10 points)
// of smallest Kolmogorov–Smirnov distance; n is the tail size. Returns
// ErrTooSmall for fewer than 50 positive values.
func PowerLawAlpha(eigs []float64) (alpha, xmin float64, n int, err error) {
	var x []float64
	for _, e := range eigs {
		if e > 0 && !math.IsInf(e, 0) {
			x = append(x, e)
		}
	}
	if len(x) < MinPowerLawEigs {
		return 0, 0, 0, fmt.Errorf("power-law alpha: %d positive eigenvalues, need %d: %w", len(x), MinPowerLawEigs, ErrTooSmall)
	}
	slices.Sort(x)
	N := len(x)
	// suffix[m] = Σ_{i≥m} log x_i
	suffix := make([]float64, N+1)
	for i := N - 1; i >= 0; i-- {
		suffix[i] = suffix[i+1] + math.Log(x[i])
	}
	bestD := math.Inf(1)
	for m := 0; N-m >= minTail; m++ {
		if (m > 0 && x[m] == x[m-1]) || x[N-1] <= x[m] {
			continue // same λmin as before, or a tail with no spread
		}
		nt := N - m
		s := suffix[m] - float64(nt)*math.Log(x[m])
		if s <= 0 {
			continue
		}
		a := 1 + float64(nt)/s
		if d := ksPowerLaw(x[m:], a); d < bestD {
			bestD, alpha, xmin, n = d, a, x[m], nt
		}
	}
	if math.IsInf(bestD, 1) {
		return 0, 0, 0, fmt.Errorf("power-law alpha: no tail with spread (all eigenvalues equal?): %w", ErrTooSmall)
	}
	return alpha, xmin, n, nil
}

// ksPowerLaw is the KS distance between the sorted tail and the power law
// P(X ≤ x) = 1 − (x/xmin)^(1−α).
func ksPowerLaw(tail []float64, alpha float64) float64 {
	n := float64(len(tail))
	var d float64
	for i, v := range tail {
		p := 1 - math.Pow(v/tail[0], 1-alpha)
		d = math.Max(d, math.Max(math.Abs(float64(i+1)/n-p), math.Abs(float64(i)/n-p)))
	}
	return d
}

// ESD returns the empirical spectral density of W (rows×cols): the
// min(rows, cols) eigenvalues of WᵀW/N with N = max(rows, cols), descending,
// as weightwatcher computes them (Martin & Mahoney 2021), from the singular
// values of W.
func ESD(W []float32, rows, cols int) ([]float64, error) {
	w, err := dense32("esd: W", W, rows, cols)
	if err != nil {
		return nil, err
	}
	sv, err := singularValues(w)
	if err != nil {
		return nil, fmt.Errorf("esd: %w", err)
	}
	N := float64(max(rows, cols))
	for i, s := range sv {
		sv[i] = s * s / N
	}
	return sv, nil
}
