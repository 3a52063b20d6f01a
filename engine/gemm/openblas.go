//go:build openblas

package gemm

import "lens/engine/gemm/internal/cblas"

// external is OpenBLAS: go build -tags openblas, with Debian's
// libopenblas-dev installed. Sgemm and Dgemm check their arguments as in
// the default build and then call cblas_sgemm / cblas_dgemm in row-major
// order, which has exactly their semantics. OpenBLAS runs each call on its
// own thread pool (OPENBLAS_NUM_THREADS, all cores by default), and unlike
// lens's kernels its results depend on that number.
var external = &externalBLAS{name: "openblas", sgemm: cblas.Sgemm, dgemm: cblas.Dgemm}
