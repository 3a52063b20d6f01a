package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
)

// rowsOf builds an r×in matrix whose row k is scale[k]·e_{idx[k]}.
func rowsOf(in int, idx []int, scale []float32) []float32 {
	a := make([]float32, len(idx)*in)
	for k, j := range idx {
		a[k*in+j] = scale[k]
	}
	return a
}

func TestSubspaceSimilarityKnown(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	const in = 16
	A := randF32(rng, 4*in, 1)
	// Q·A: same row space, different basis.
	q := mat.NewDense(4, 4, randF64(rng, 16))
	a, _ := dense32("A", A, 4, in)
	var qa mat.Dense
	qa.Mul(q, a)
	e01 := rowsOf(in, []int{0, 1}, []float32{2, 1})        // V = e0, e1
	e021 := rowsOf(in, []int{0, 2, 1}, []float32{3, 2, 1}) // V = e0, e2, e1
	lo := rowsOf(in, []int{0, 1, 2, 3}, []float32{4, 3, 2, 1})
	hi := rowsOf(in, []int{4, 5, 6, 7}, []float32{4, 3, 2, 1})
	cases := []struct {
		name   string
		a1, a2 []float32
		r1, r2 int
		i, j   int
		want   float64
	}{
		{"same, full", A, A, 4, 4, 4, 4, 1},
		{"same, top 1", A, A, 4, 4, 1, 1, 1},
		{"same, 2 vs 3", A, A, 4, 4, 2, 3, 1},
		{"mixed basis, full", A, toF32(&qa), 4, 4, 4, 4, 1},
		{"orthogonal", lo, hi, 4, 4, 4, 4, 0},
		{"orthogonal top 1", lo, hi, 4, 4, 1, 1, 0},
		{"nested 1,1", e01, e021, 2, 3, 1, 1, 1},
		{"nested 2,2 shares e0 only", e01, e021, 2, 3, 2, 2, 0.5},
		{"nested 2,3 contains", e01, e021, 2, 3, 2, 3, 1},
		{"nested 2,1", e01, e021, 2, 3, 2, 1, 1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := SubspaceSimilarity(tc.a1, tc.a2, tc.r1, tc.r2, in, tc.i, tc.j)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-5)
		})
	}
	_, err := SubspaceSimilarity(A, A, 4, 4, in, 5, 1)
	assert.ErrorIs(t, err, errShape)
	_, err = SubspaceSimilarity(A, A[:10], 4, 4, in, 1, 1)
	assert.ErrorIs(t, err, errShape)
}

func TestSubspaceGridShapeAndSymmetry(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	const in = 32
	A1, A2 := randF32(rng, 3*in, 1), randF32(rng, 5*in, 1)
	g, err := SubspaceGrid(A1, A2, 3, 5, in)
	require.NoError(t, err)
	require.Len(t, g, 3)
	require.Len(t, g[0], 5)
	gt, err := SubspaceGrid(A2, A1, 5, 3, in)
	require.NoError(t, err)
	for i := range g {
		for j := range g[i] {
			assert.InDelta(t, g[i][j], gt[j][i], 1e-9, "φ is symmetric")
			assert.GreaterOrEqual(t, g[i][j], -1e-12)
			assert.LessOrEqual(t, g[i][j], 1+1e-9)
		}
	}
}

func TestSubspaceSimilarityRandomMatchesBaseline(t *testing.T) {
	rng := rand.New(rand.NewPCG(9, 10))
	const in, trials = 256, 60
	cases := []struct{ r1, r2, i, j int }{
		{4, 16, 4, 16},
		{8, 8, 8, 8},
		{2, 32, 1, 32},
	}
	for _, tc := range cases {
		var sum float64
		for k := 0; k < trials; k++ {
			phi, err := SubspaceSimilarity(randF32(rng, tc.r1*in, 1), randF32(rng, tc.r2*in, 1), tc.r1, tc.r2, in, tc.i, tc.j)
			require.NoError(t, err)
			sum += phi
		}
		want := RandomBaseline(tc.i, tc.j, in)
		assert.InDelta(t, want, sum/trials, 0.15*want, "r1=%d r2=%d i=%d j=%d", tc.r1, tc.r2, tc.i, tc.j)
	}
}

func TestRandomBaseline(t *testing.T) {
	cases := []struct {
		i, j, in int
		want     float64
	}{
		{1, 1, 256, 1.0 / 256},
		{1, 64, 256, 0.25},
		{64, 8, 128, 0.5},
		{4, 4, 0, 0},
	}
	for _, tc := range cases {
		assert.Equal(t, tc.want, RandomBaseline(tc.i, tc.j, tc.in))
	}
}

func TestAmplificationKnown(t *testing.T) {
	const n = 8
	w0 := make([]float32, n*n) // diag(8, 7, ..., 1)
	for i := 0; i < n; i++ {
		w0[i*n+i] = float32(n - i)
	}
	e := func(k int, s float32) []float32 { v := make([]float32, n); v[k] = s; return v }
	cases := []struct {
		name string
		A, B []float32
		r    int
		want float64
	}{
		{"along the weakest direction", e(7, 1), e(7, 10), 1, 10},
		{"along the strongest direction", e(0, 1), e(0, 10), 1, 10.0 / 8},
		{"off-diagonal pair", e(3, 1), e(5, 4), 1, math.Inf(1)}, // Uᵀ W0 V = e5ᵀ W0 e3 = 0
		{"rank 2: 3·e6e6ᵀ + 4·e7e7ᵀ", append(e(6, 1), e(7, 1)...), []float32{0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 3, 0, 0, 4}, 2,
			5 / math.Sqrt(2*2+1*1)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sv, U, V, err := DeltaSpectrum(tc.A, tc.B, tc.r, n, n, 1)
			require.NoError(t, err)
			got, err := Amplification(w0, n, n, sv, U, V, tc.r)
			if math.IsInf(tc.want, 1) {
				assert.Error(t, err)
				return
			}
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-9)
		})
	}
	sv, U, V, err := DeltaSpectrum(e(0, 1), e(0, 1), 1, n, n, 1)
	require.NoError(t, err)
	_, err = Amplification(w0, n, n, sv, U, V, 2)
	assert.ErrorIs(t, err, errShape)
}

func TestRandomAmplificationMatchesTheory(t *testing.T) {
	// W0 with iid N(0,1) entries is rotation invariant, so for any orthonormal
	// U, V the r×r block Uᵀ W0 V has iid N(0,1) entries and ‖·‖_F ~ χ_{r²}:
	// E[D/‖·‖_F] = D·Γ((r²−1)/2) / (√2·Γ(r²/2)).
	rng := rand.New(rand.NewPCG(11, 12))
	const out, in, r, D = 40, 24, 4, 3.0
	k := float64(r * r)
	lg1, _ := math.Lgamma((k - 1) / 2)
	lg2, _ := math.Lgamma(k / 2)
	want := D * math.Exp(lg1-lg2) / math.Sqrt2
	var sum float64
	const draws = 20
	for d := 0; d < draws; d++ {
		got, err := RandomAmplification(randF32(rng, out*in, 1), out, in, D, r, 20, rng)
		require.NoError(t, err)
		sum += got
	}
	assert.InDelta(t, want, sum/draws, 0.04*want)
	_, err := RandomAmplification(make([]float32, out*in), out, in, D, 0, 1, rng)
	assert.ErrorIs(t, err, errShape)
}
