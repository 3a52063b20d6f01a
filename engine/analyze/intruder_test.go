package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"
)

func TestIntruderDimensions(t *testing.T) {
	rng := rand.New(rand.NewPCG(13, 14))
	const rows, cols, k = 48, 64, 10
	u0, v0 := randOrthonormal(rng, rows, rows), randOrthonormal(rng, cols, rows)
	s := make([]float64, rows)
	for i := range s {
		s[i] = 10 - 9*float64(i)/float64(rows-1) // 10 … 1
	}
	var us, w0 mat.Dense
	us.Mul(u0, mat.NewDiagDense(rows, s))
	w0.Mul(&us, v0.T())
	// A unit direction spread evenly over the singular directions below the
	// top k: orthogonal to W0's top-k, |cos| = 1/√(rows−k) with each u⁰_j.
	spread := func(m *mat.Dense) *mat.VecDense {
		r, _ := m.Dims()
		v := mat.NewVecDense(r, nil)
		for j := k; j < rows; j++ {
			v.AddVec(v, m.ColView(j))
		}
		v.ScaleVec(1/v.Norm(2), v)
		return v
	}
	plusRank1 := func(sigma float64, u, v mat.Vector) []float32 {
		var o mat.Dense
		o.Outer(sigma, u, v)
		o.Add(&w0, &o)
		return toF32(&o)
	}
	cases := []struct {
		name    string
		w1      []float32
		eps     float64
		want    int
		minSims float64
	}{
		{"ΔW = 0", toF32(&w0), 0.5, 0, 1 - 1e-4},
		{"large rank-1 off W0's top", plusRank1(100, spread(u0), spread(v0)), 0.5, 1, 0},
		{"large rank-1 off W0's top, strict ε", plusRank1(100, spread(u0), spread(v0)), 0.9, 1, 0},
		{"large rank-1 along W0's top", plusRank1(100, u0.ColView(0), v0.ColView(0)), 0.9, 0, 1 - 1e-4},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			n, sims, err := IntruderDimensions(toF32(&w0), tc.w1, rows, cols, k, tc.eps)
			require.NoError(t, err)
			assert.Equal(t, tc.want, n)
			require.Len(t, sims, k)
			for _, v := range sims {
				assert.LessOrEqual(t, v, 1+1e-6)
				if tc.want == 0 {
					assert.GreaterOrEqual(t, v, tc.minSims)
				}
			}
			if tc.want == 1 { // the intruder is the new top direction
				assert.InDelta(t, 1/math.Sqrt(rows-k), sims[0], 0.05)
			}
		})
	}
	_, _, err := IntruderDimensions(toF32(&w0), toF32(&w0), rows, cols, rows+1, 0.5)
	assert.ErrorIs(t, err, errShape)
}
