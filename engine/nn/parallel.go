package nn

import (
	"runtime"

	"lens/engine/gemm"
)

// cores is how many goroutines one graph's kernels split their work over;
// 0 means runtime.GOMAXPROCS. A trainer that runs several graphs at once
// (one per shard of the batch) gives each its share of the CPUs
// (Graph.Cores). Kernels split work so that results do not depend on it.
type cores int

func (c cores) workers() int {
	if c > 0 {
		return int(c)
	}
	return runtime.GOMAXPROCS(0)
}

// parallelFor splits [0, n) into contiguous chunks of at least minChunk,
// at most one per worker, and runs fn(w, lo, hi) on each concurrently,
// where w < c.workers() numbers the chunk (for per-worker scratch). Chunks
// write disjoint outputs, so results do not depend on the number of CPUs.
func (c cores) parallelFor(n, minChunk int, fn func(w, lo, hi int)) {
	gemm.ParallelFor(n, minChunk, c.workers(), fn)
}
