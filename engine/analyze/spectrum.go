package analyze

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// DeltaSpectrum returns the singular values (descending) and the left (out×k)
// and right (in×k) singular vectors of ΔW = scale·B·A, with B out×r and A r×in
// row-major and k = min(r, out, in), without forming ΔW: thin QR of B and Aᵀ
// and an SVD of the r×r core (docs/SCIENCE.md "Spectra of ΔW without a full SVD").
func DeltaSpectrum(A, B []float32, r, in, out int, scale float64) (sv []float64, U, V *mat.Dense, err error) {
	a, err := dense32("delta spectrum: A", A, r, in)
	if err != nil {
		return nil, nil, nil, err
	}
	b, err := dense32("delta spectrum: B", B, out, r)
	if err != nil {
		return nil, nil, nil, err
	}
	if out < r || in < r { // rank exceeds a side: the product is small anyway
		var dw mat.Dense
		dw.Mul(b, a)
		dw.Scale(scale, &dw)
		sv, U, V, err = thinSVD(&dw)
		if err != nil {
			return nil, nil, nil, fmt.Errorf("delta spectrum: %w", err)
		}
		return sv, U, V, nil
	}
	qb, rb, err := thinQR(b)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("delta spectrum: QR of B: %w", err)
	}
	qa, ra, err := thinQR(mat.DenseCopyOf(a.T()))
	if err != nil {
		return nil, nil, nil, fmt.Errorf("delta spectrum: QR of Aᵀ: %w", err)
	}
	var core mat.Dense
	core.Mul(rb, ra.T())
	core.Scale(scale, &core)
	sv, uc, vc, err := thinSVD(&core)
	if err != nil {
		return nil, nil, nil, fmt.Errorf("delta spectrum: core: %w", err)
	}
	U, V = &mat.Dense{}, &mat.Dense{}
	U.Mul(qb, uc)
	V.Mul(qa, vc)
	return sv, U, V, nil
}

// nonzero returns the singular values above a relative floor of
// len·eps·σmax, the usual numerical-rank tolerance.
func nonzero(sv []float64) []float64 {
	var mx float64
	for _, s := range sv {
		mx = math.Max(mx, math.Abs(s))
	}
	tol := float64(len(sv)) * 2.220446049250313e-16 * mx
	var out []float64
	for _, s := range sv {
		if math.Abs(s) > tol {
			out = append(out, math.Abs(s))
		}
	}
	return out
}

// EffectiveRank is exp of the entropy of the L1-normalised singular values,
// p_i = σ_i/Σσ_j (Roy & Vetterli 2007). k equal values → k; 0 for none.
func EffectiveRank(sv []float64) float64 {
	nz := nonzero(sv)
	var sum float64
	for _, s := range nz {
		sum += s
	}
	if sum == 0 {
		return 0
	}
	var h float64
	for _, s := range nz {
		p := s / sum
		h -= p * math.Log(p)
	}
	return math.Exp(h)
}

// StableRank is ‖M‖_F²/‖M‖_2² = Σσ²/σmax² (Rudelson & Vershynin); 0 for none.
func StableRank(sv []float64) float64 {
	var sum, mx float64
	for _, s := range sv {
		sum += s * s
		mx = math.Max(mx, s*s)
	}
	if mx == 0 {
		return 0
	}
	return sum / mx
}

// Condition is σmax/σmin over the numerically non-zero singular values;
// 0 when there are none.
func Condition(sv []float64) float64 {
	nz := nonzero(sv)
	if len(nz) == 0 {
		return 0
	}
	mn, mx := math.Inf(1), 0.0
	for _, s := range nz {
		mn, mx = math.Min(mn, s), math.Max(mx, s)
	}
	return mx / mn
}

// RankUtilisation is EffectiveRank(sv)/r, the fraction of the LoRA rank used
// (docs/SCIENCE.md "Rank measures"); 0 for r ≤ 0.
func RankUtilisation(sv []float64, r int) float64 {
	if r <= 0 {
		return 0
	}
	return EffectiveRank(sv) / float64(r)
}

// Cosine returns ⟨a,b⟩/(‖a‖‖b‖) in float64; 0 when either vector is zero.
func Cosine(a, b []float32) (float64, error) {
	if len(a) != len(b) {
		return 0, fmt.Errorf("cosine: lengths %d and %d: %w", len(a), len(b), errShape)
	}
	var ab, aa, bb float64
	for i := range a {
		x, y := float64(a[i]), float64(b[i])
		ab += x * y
		aa += x * x
		bb += y * y
	}
	if aa == 0 || bb == 0 {
		return 0, nil
	}
	return ab / math.Sqrt(aa*bb), nil
}

// loraInner returns ⟨B1A1, B2A2⟩_F = tr(A1A2ᵀ B2ᵀB1) = Σ (A1A2ᵀ)∘(B1ᵀB2),
// an r1×r2 computation that never forms an out×in matrix.
func loraInner(a1, b1, a2, b2 *mat.Dense) float64 {
	var aa, bb mat.Dense
	aa.Mul(a1, a2.T())
	bb.Mul(b1.T(), b2)
	var s float64
	r, c := aa.Dims()
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			s += aa.At(i, j) * bb.At(i, j)
		}
	}
	return s
}

// DeltaCosine is the Frobenius cosine between ΔW1 = B1A1 and ΔW2 = B2A2
// (A_k r_k×in, B_k out×r_k), via ⟨B1A1, B2A2⟩_F = tr(A1A2ᵀB2ᵀB1) in r1×r2
// space. Positive LoRA scales cancel. 0 when either ΔW is zero.
func DeltaCosine(A1, B1 []float32, r1 int, A2, B2 []float32, r2 int, in, out int) (float64, error) {
	a1, err := dense32("delta cosine: A1", A1, r1, in)
	if err != nil {
		return 0, err
	}
	b1, err := dense32("delta cosine: B1", B1, out, r1)
	if err != nil {
		return 0, err
	}
	a2, err := dense32("delta cosine: A2", A2, r2, in)
	if err != nil {
		return 0, err
	}
	b2, err := dense32("delta cosine: B2", B2, out, r2)
	if err != nil {
		return 0, err
	}
	n1, n2 := loraInner(a1, b1, a1, b1), loraInner(a2, b2, a2, b2)
	if n1 <= 0 || n2 <= 0 {
		return 0, nil
	}
	return loraInner(a1, b1, a2, b2) / math.Sqrt(n1*n2), nil
}
