package kern

import (
	"runtime"

	"lens/engine/gemm"
)

// Float is the element type of every kernel: float32 for training,
// float64 for finite-difference gradient checks.
type Float interface{ ~float32 | ~float64 }

// Cores is how many goroutines a kernel splits its work over; 0 means
// runtime.GOMAXPROCS. A trainer that runs several graphs at once (one per
// shard of the batch) gives each its share of the CPUs. Kernels split work
// so that results do not depend on it.
type Cores int

// Workers is the number of goroutines c stands for.
func (c Cores) Workers() int {
	if c > 0 {
		return int(c)
	}
	return runtime.GOMAXPROCS(0)
}

// ParallelFor splits [0, n) into contiguous chunks of at least minChunk,
// at most one per worker, and runs fn(w, lo, hi) on each concurrently,
// where w < min(n, c.Workers()) numbers the chunk (for per-worker scratch).
// Chunks write disjoint outputs, so results do not depend on the number of
// CPUs.
func (c Cores) ParallelFor(n, minChunk int, fn func(w, lo, hi int)) {
	gemm.ParallelFor(n, minChunk, c.Workers(), fn)
}
