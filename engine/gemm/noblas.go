//go:build !openblas

package gemm

// external is nil: this build links no BLAS library (build with the
// openblas tag for OpenBLAS).
var external *externalBLAS
