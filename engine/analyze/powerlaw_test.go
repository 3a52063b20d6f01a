package analyze

import (
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
)

// pareto draws n samples with density ∝ x^−alpha on [xmin, ∞).
func pareto(rng *rand.Rand, n int, alpha, xmin float64) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = xmin * math.Pow(1-rng.Float64(), -1/(alpha-1))
	}
	return x
}

func TestPowerLawAlphaRecoversPareto(t *testing.T) {
	cases := []struct {
		name      string
		alpha     float64
		n, bulk   int
		wantXmin  float64
		xminSlack float64
	}{
		{"alpha 2.5", 2.5, 2000, 0, 1, 0.5},
		{"alpha 4", 4, 2000, 0, 1, 0.5},
		{"alpha 6", 6, 3000, 0, 1, 0.5},
		{"alpha 3 above a uniform bulk", 3, 2000, 1500, 1, 0.5},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(i), 99))
			x := pareto(rng, tc.n, tc.alpha, 1)
			for b := 0; b < tc.bulk; b++ {
				x = append(x, 0.05+0.9*rng.Float64())
			}
			alpha, xmin, n, err := PowerLawAlpha(x)
			require.NoError(t, err)
			assert.InDelta(t, tc.alpha, alpha, 0.05*tc.alpha, "alpha")
			assert.InDelta(t, tc.wantXmin, xmin, tc.xminSlack, "xmin")
			assert.GreaterOrEqual(t, n, minTail)
			assert.LessOrEqual(t, n, tc.n+tc.bulk)
		})
	}
}

func TestPowerLawAlphaTooSmall(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	cases := []struct {
		name string
		x    []float64
	}{
		{"49 values", pareto(rng, 49, 3, 1)},
		{"60 values, 20 non-positive", append(pareto(rng, 40, 3, 1), make([]float64, 20)...)},
		{"all equal", slices.Repeat([]float64{2}, 100)},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			_, _, _, err := PowerLawAlpha(tc.x)
			assert.ErrorIs(t, err, ErrTooSmall)
		})
	}
}

func TestESD(t *testing.T) {
	// 3×5 with orthogonal rows of norms 3, 2, 1: eigenvalues 9/5, 4/5, 1/5.
	w := []float32{
		3, 0, 0, 0, 0,
		0, 0, 2, 0, 0,
		0, 0, 0, 0, -1,
	}
	got, err := ESD(w, 3, 5)
	require.NoError(t, err)
	assert.InDeltaSlice(t, []float64{9.0 / 5, 4.0 / 5, 1.0 / 5}, got, 1e-12)

	// Random tall W: eigenvalues of WᵀW/rows.
	rng := rand.New(rand.NewPCG(2, 3))
	const rows, cols = 30, 12
	W := randF32(rng, rows*cols, 1)
	got, err = ESD(W, rows, cols)
	require.NoError(t, err)
	d, _ := dense32("W", W, rows, cols)
	var g mat.SymDense
	g.SymOuterK(1/float64(rows), d.T())
	var es mat.EigenSym
	require.True(t, es.Factorize(&g, false))
	want := es.Values(nil)
	slices.Reverse(want)
	assert.InDeltaSlice(t, want, got, 1e-9)

	_, err = ESD(W, rows, cols+1)
	assert.ErrorIs(t, err, errShape)
}
