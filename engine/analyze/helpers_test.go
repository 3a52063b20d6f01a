package analyze

import (
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// randF32 returns n standard-normal float32 values times scale.
func randF32(rng *rand.Rand, n int, scale float64) []float32 {
	x := make([]float32, n)
	for i := range x {
		x[i] = float32(rng.NormFloat64() * scale)
	}
	return x
}

// randF64 returns n standard-normal values.
func randF64(rng *rand.Rand, n int) []float64 {
	x := make([]float64, n)
	for i := range x {
		x[i] = rng.NormFloat64()
	}
	return x
}

// toF32 flattens a dense matrix row-major into float32.
func toF32(m mat.Matrix) []float32 {
	r, c := m.Dims()
	out := make([]float32, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, float32(m.At(i, j)))
		}
	}
	return out
}

// toF64 flattens a dense matrix row-major.
func toF64(m mat.Matrix) []float64 {
	r, c := m.Dims()
	out := make([]float64, 0, r*c)
	for i := 0; i < r; i++ {
		for j := 0; j < c; j++ {
			out = append(out, m.At(i, j))
		}
	}
	return out
}

// randOrthonormal returns an n×k matrix with orthonormal columns.
func randOrthonormal(rng *rand.Rand, n, k int) *mat.Dense {
	g := mat.NewDense(n, k, randF64(rng, n*k))
	q, _, err := thinQR(g)
	if err != nil {
		panic(err)
	}
	return q
}

// maxAbsDiff returns max |a_i − b_i|.
func maxAbsDiff(a, b []float64) float64 {
	var d float64
	for i := range a {
		d = math.Max(d, math.Abs(a[i]-b[i]))
	}
	return d
}
