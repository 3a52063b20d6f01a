package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
)

func TestDeltaSpectrumMatchesFullSVD(t *testing.T) {
	cases := []struct {
		name         string
		r, in, out   int
		scale        float64
		zeroB        bool
		wantNonzeros int
	}{
		{"tall", 4, 32, 48, 2.0, false, 4},
		{"wide", 8, 64, 16, 0.5, false, 8},
		{"rank exceeds in", 6, 4, 10, 1.0, false, 4},
		{"B zero at init", 4, 16, 12, 2.0, true, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(1, 2))
			A := randF32(rng, tc.r*tc.in, 1/math.Sqrt(float64(tc.in)))
			B := randF32(rng, tc.out*tc.r, 0.3)
			if tc.zeroB {
				B = make([]float32, tc.out*tc.r)
			}
			sv, U, V, err := DeltaSpectrum(A, B, tc.r, tc.in, tc.out, tc.scale)
			require.NoError(t, err)

			a, _ := dense32("A", A, tc.r, tc.in)
			b, _ := dense32("B", B, tc.out, tc.r)
			var dw mat.Dense
			dw.Mul(b, a)
			dw.Scale(tc.scale, &dw)
			full, err := singularValues(&dw)
			require.NoError(t, err)
			k := len(sv)
			assert.Equal(t, min(tc.r, tc.in, tc.out), k)
			assert.Less(t, maxAbsDiff(sv, full[:k]), 1e-9, "singular values")
			for _, s := range full[k:] {
				assert.Less(t, s, 1e-9, "full SVD has no extra mass")
			}
			assert.Len(t, nonzero(sv), tc.wantNonzeros)

			// U diag(sv) Vᵀ reconstructs ΔW.
			var us, rec mat.Dense
			us.Mul(U, mat.NewDiagDense(k, sv))
			rec.Mul(&us, V.T())
			assert.Less(t, maxAbsDiff(toF64(&rec), toF64(&dw)), 1e-9, "reconstruction")
			if tc.wantNonzeros == k { // singular vectors are orthonormal
				var g mat.Dense
				g.Mul(U.T(), U)
				assert.True(t, mat.EqualApprox(&g, eye(k), 1e-9))
				g.Mul(V.T(), V)
				assert.True(t, mat.EqualApprox(&g, eye(k), 1e-9))
			}
		})
	}
}

func TestDeltaSpectrumShapeError(t *testing.T) {
	_, _, _, err := DeltaSpectrum(make([]float32, 5), make([]float32, 8), 2, 3, 4, 1)
	assert.ErrorIs(t, err, errShape)
}

func eye(n int) *mat.Dense {
	m := mat.NewDense(n, n, nil)
	for i := 0; i < n; i++ {
		m.Set(i, i, 1)
	}
	return m
}

func TestRankMeasures(t *testing.T) {
	cases := []struct {
		name                string
		sv                  []float64
		erank, stable, cond float64
		r                   int
		util                float64
	}{
		{"four equal", []float64{3, 3, 3, 3}, 4, 4, 1, 8, 0.5},
		{"one nonzero", []float64{5, 0, 0, 0}, 1, 1, 1, 4, 0.25},
		{"two to one", []float64{2, 1}, math.Exp(-(2.0/3*math.Log(2.0/3) + 1.0/3*math.Log(1.0/3))), 1.25, 2, 2,
			math.Exp(-(2.0/3*math.Log(2.0/3) + 1.0/3*math.Log(1.0/3))) / 2},
		{"numerically zero tail", []float64{1, 1, 1e-20}, 2, 2, 1, 2, 1},
		{"empty", nil, 0, 0, 0, 4, 0},
		{"all zero", []float64{0, 0}, 0, 0, 0, 2, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.erank, EffectiveRank(tc.sv), 1e-12, "effective rank")
			assert.InDelta(t, tc.stable, StableRank(tc.sv), 1e-12, "stable rank")
			assert.InDelta(t, tc.cond, Condition(tc.sv), 1e-12, "condition")
			assert.InDelta(t, tc.util, RankUtilisation(tc.sv, tc.r), 1e-12, "utilisation")
		})
	}
}

func TestCosine(t *testing.T) {
	cases := []struct {
		name string
		a, b []float32
		want float64
	}{
		{"same", []float32{1, 2, 3}, []float32{1, 2, 3}, 1},
		{"scaled", []float32{1, 2, 3}, []float32{2, 4, 6}, 1},
		{"opposite", []float32{1, -1}, []float32{-1, 1}, -1},
		{"orthogonal", []float32{1, 0}, []float32{0, 5}, 0},
		{"45 degrees", []float32{1, 0}, []float32{1, 1}, 1 / math.Sqrt2},
		{"zero", []float32{0, 0}, []float32{1, 1}, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Cosine(tc.a, tc.b)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-7)
		})
	}
	_, err := Cosine([]float32{1}, []float32{1, 2})
	assert.ErrorIs(t, err, errShape)
}

func TestDeltaCosineMatchesDense(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	const in, out = 20, 12
	A1, B1 := randF32(rng, 4*in, 1), randF32(rng, out*4, 1)
	A2, B2 := randF32(rng, 6*in, 1), randF32(rng, out*6, 1)
	flat := func(A, B []float32, r int) []float32 {
		a, _ := dense32("A", A, r, in)
		b, _ := dense32("B", B, out, r)
		var d mat.Dense
		d.Mul(b, a)
		return toF32(&d)
	}
	// Same row space of A, B negated: ΔW2 = −ΔW1 exactly.
	negB1 := make([]float32, len(B1))
	for i, v := range B1 {
		negB1[i] = -v
	}
	cases := []struct {
		name           string
		a1, b1, a2, b2 []float32
		r1, r2         int
		want           float64
	}{
		{"random pair", A1, B1, A2, B2, 4, 6, func() float64 { c, _ := Cosine(flat(A1, B1, 4), flat(A2, B2, 6)); return c }()},
		{"self", A1, B1, A1, B1, 4, 4, 1},
		{"negated", A1, B1, A1, negB1, 4, 4, -1},
		{"zero B", A1, B1, A2, make([]float32, out*6), 4, 6, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := DeltaCosine(tc.a1, tc.b1, tc.r1, tc.a2, tc.b2, tc.r2, in, out)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-6)
		})
	}
	_, err := DeltaCosine(A1, B1, 4, A2, B2, 5, in, out)
	assert.ErrorIs(t, err, errShape)
}
