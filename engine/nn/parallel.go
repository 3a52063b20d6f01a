package nn

import (
	"runtime"

	"lens/engine/gemm"
)

// maxWorkers is the most chunks parallelFor splits work into.
func maxWorkers() int { return runtime.GOMAXPROCS(0) }

// parallelFor splits [0, n) into contiguous chunks of at least minChunk,
// at most one per CPU, and runs fn(w, lo, hi) on each concurrently, where
// w < maxWorkers() numbers the chunk (for per-worker scratch). Chunks write
// disjoint outputs, so results do not depend on the number of CPUs.
func parallelFor(n, minChunk int, fn func(w, lo, hi int)) {
	gemm.ParallelFor(n, minChunk, maxWorkers(), fn)
}
