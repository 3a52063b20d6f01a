package analyze

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
)

func TestLinearCKA(t *testing.T) {
	rng := rand.New(rand.NewPCG(21, 22))
	const n, p = 200, 6
	X := randF64(rng, n*p)
	x := mat.NewDense(n, p, X)
	var xq mat.Dense
	xq.Mul(x, randOrthonormal(rng, p, p))
	cX := make([]float64, len(X))
	shifted := make([]float64, len(X))
	for i, v := range X {
		cX[i] = -3.5 * v
		shifted[i] = v + float64(i%p) // per-column offsets, removed by centring
	}
	const big = 4000
	cases := []struct {
		name      string
		x, y      []float64
		n, p1, p2 int
		want, tol float64
	}{
		{"self", X, X, n, p, p, 1, 1e-12},
		{"orthogonal rotation", X, toF64(&xq), n, p, p, 1, 1e-12},
		{"scaled", X, cX, n, p, p, 1, 1e-12},
		{"column offsets", X, shifted, n, p, p, 1, 1e-12},
		// One column each: CKA is the squared Pearson correlation, here 0.8².
		{"1-d correlation", []float64{1, 2, 3, 4}, []float64{1, 3, 2, 4}, 4, 1, 1, 0.64, 1e-12},
		{"independent, n ≫ p", randF64(rng, big*4), randF64(rng, big*3), big, 4, 3, 0, 0.02},
		{"constant Y", X, make([]float64, n*2), n, p, 2, 0, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := LinearCKA(tc.x, tc.y, tc.n, tc.p1, tc.p2)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, tc.tol)
		})
	}
	_, err := LinearCKA(X, X, n, p, p+1)
	assert.ErrorIs(t, err, errShape)
}
