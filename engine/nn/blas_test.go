package nn

import (
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// TestGorgoniaUsesLensBLAS: gorgonia's own products go through engine/gemm
// and agree with gonum's for every transpose.
func TestGorgoniaUsesLensBLAS(t *testing.T) {
	_, ok := G.WhichBLAS().(lensBLAS)
	require.True(t, ok, "gorgonia's BLAS is %T", G.WhichBLAS())
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 {
		x := make([]float32, n)
		for i := range x {
			x[i] = float32(rng.NormFloat64())
		}
		return x
	}
	m, n, k := 37, 29, 53
	for _, tA := range []blas.Transpose{blas.NoTrans, blas.Trans} {
		for _, tB := range []blas.Transpose{blas.NoTrans, blas.Trans} {
			lda, ldb := k, n
			if tA == blas.Trans {
				lda = m
			}
			if tB == blas.Trans {
				ldb = k
			}
			a, b, c := fill(m*k), fill(k*n), fill(m*n)
			want := append([]float32(nil), c...)
			gonum.Implementation{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, 2, want, n)
			lensBLAS{}.Sgemm(tA, tB, m, n, k, 0.5, a, lda, b, ldb, 2, c, n)
			for i := range c {
				require.InDelta(t, want[i], c[i], 1e-4, "tA %v tB %v [%d]", tA, tB, i)
			}
		}
	}
	// A graph of gorgonia's built-in ops: its Mul is the product above.
	g := G.NewGraph()
	av, bv := fill(6*4), fill(4*5)
	x := G.NewMatrix(g, tensor.Float32, G.WithShape(6, 4), G.WithValue(tensor.New(tensor.WithShape(6, 4), tensor.WithBacking(av))))
	y := G.NewMatrix(g, tensor.Float32, G.WithShape(4, 5), G.WithValue(tensor.New(tensor.WithShape(4, 5), tensor.WithBacking(bv))))
	z, err := G.Mul(x, y)
	require.NoError(t, err)
	vm := G.NewTapeMachine(g)
	defer vm.Close()
	require.NoError(t, vm.RunAll())
	got := z.Value().Data().([]float32)
	for i := range 6 {
		for j := range 5 {
			var s float32
			for p := range 4 {
				s += av[i*4+p] * bv[p*5+j]
			}
			require.InDelta(t, s, got[i*5+j], 1e-5)
		}
	}
}
