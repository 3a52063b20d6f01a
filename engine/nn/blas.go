package nn

import (
	"gonum.org/v1/gonum/blas"
	"gonum.org/v1/gonum/blas/gonum"
	G "gorgonia.org/gorgonia"

	"lens/engine/gemm"
)

// gorgonia's own matrix products (its Mul op and gorgonia.org/tensor's
// matmul, used by graphs built from gorgonia's built-in ops) go through
// the BLAS given to gorgonia.Use, gonum's pure-Go one by default. lens's
// ops call engine/gemm directly; this routes gorgonia's products there too,
// so a graph mixing built-in ops gets the same kernel and build tag
// (AVX2 assembly, or OpenBLAS with -tags openblas).
func init() { G.Use(lensBLAS{}) }

// lensBLAS is gonum's BLAS with the matrix products replaced by
// engine/gemm's (row-major, like gonum's).
type lensBLAS struct{ gonum.Implementation }

func trans(t blas.Transpose) bool { return t != blas.NoTrans }

func (lensBLAS) Sgemm(tA, tB blas.Transpose, m, n, k int, alpha float32, a []float32, lda int, b []float32, ldb int, beta float32, c []float32, ldc int) {
	gemm.Sgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}

func (lensBLAS) Dgemm(tA, tB blas.Transpose, m, n, k int, alpha float64, a []float64, lda int, b []float64, ldb int, beta float64, c []float64, ldc int) {
	gemm.Dgemm(trans(tA), trans(tB), m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
}
