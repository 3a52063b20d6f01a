package kern

import "lens/engine/gemm"

// Gemm computes C = alpha·op(A)·op(B) + beta·C in row-major layout, where
// op(A) is m×k and op(B) is k×n, split over c's workers; with beta = 0, C
// is not read. It is the single matrix-multiply entry point of every
// kernel; float32 goes to the packed SIMD kernel of engine/gemm, float64
// (gradient checks only) to gonum.
func Gemm[T Float](c Cores, tA, tB bool, m, n, k int, alpha T, a []T, lda int, b []T, ldb int, beta T, cm []T, ldc int) {
	if m == 0 || n == 0 {
		return
	}
	switch a := any(a).(type) {
	case []float32:
		gemm.SgemmThreads(c.Workers(), tA, tB, m, n, k, float32(alpha), a, lda, any(b).([]float32), ldb, float32(beta), any(cm).([]float32), ldc)
	case []float64:
		gemm.Dgemm(tA, tB, m, n, k, float64(alpha), a, lda, any(b).([]float64), ldb, float64(beta), any(cm).([]float64), ldc)
	}
}
