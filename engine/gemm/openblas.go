//go:build openblas

package gemm

import "lens/engine/gemm/internal/cblas"

// external is OpenBLAS: go build -tags openblas, with Debian's
// libopenblas-dev installed. Sgemm and Dgemm check their arguments as in
// the default build and then call cblas_sgemm / cblas_dgemm in row-major
// order, which has exactly their semantics.
//
// OpenBLAS is set to one thread: lens splits a product over its own
// workers (externalParallel), so that products made concurrently (the
// attention heads) do not oversubscribe the cores with OpenBLAS's
// spinning threads. OpenBLAS does not promise that a block of C comes out
// the same whatever the split; TestSgemmDeterministic checks it here.
var external = &externalBLAS{name: "openblas", sgemm: cblas.Sgemm, dgemm: cblas.Dgemm}

func init() { cblas.SetThreads(1) }
