package gemm

import (
	"math"
	"math/rand/v2"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// TestSgemmParallelNoAllocs checks that products split over several
// goroutines (the plain and the dot-product path) allocate nothing once the
// pools are warm.
func TestSgemmParallelNoAllocs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(4))
	rng := rand.New(rand.NewPCG(3, 4))
	for _, sh := range [][3]int{{512, 256, 256}, {2048, 4, 256}, {64, 1024, 128}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
		Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		allocs := testing.AllocsPerRun(20, func() {
			Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("%dx%dx%d: parallel Sgemm allocates %v times per call", m, n, k, allocs)
		}
	}
}

var visits []atomic.Int32

func visit(w, lo, hi int) {
	for i := lo; i < hi; i++ {
		visits[i].Add(1)
	}
}

func TestParallelFor(t *testing.T) {
	for _, tc := range []struct{ n, minChunk, workers, wantParts int }{
		{0, 1, 4, 1},
		{1, 1, 4, 1},
		{10, 1, 4, 4},   // chunks of 3: 3+3+3+1
		{10, 4, 4, 2},   // at most n/minChunk = 2 workers
		{10, 100, 4, 1}, // too little work to split
		{1000, 1, 2, 2}, // the machine's 2 cores
		{7, 1, 7, 7},    // one element each
		{100, 16, 3, 3}, // chunks of 34
		{1 << 16, 1 << 14, 8, 4},
	} {
		visits = make([]atomic.Int32, tc.n)
		var parts atomic.Int32
		maxW := int32(-1)
		var bad atomic.Bool
		ParallelFor(tc.n, tc.minChunk, tc.workers, func(w, lo, hi int) {
			parts.Add(1)
			if w < 0 || w >= tc.workers || lo > hi {
				bad.Store(true)
			}
			for {
				old := atomic.LoadInt32(&maxW)
				if int32(w) <= old || atomic.CompareAndSwapInt32(&maxW, old, int32(w)) {
					break
				}
			}
			visit(w, lo, hi)
		})
		if bad.Load() {
			t.Errorf("%+v: a chunk had a bad worker index or range", tc)
		}
		if int(parts.Load()) != tc.wantParts || int(maxW) != tc.wantParts-1 {
			t.Errorf("%+v: %d parts, highest index %d; want %d parts", tc, parts.Load(), maxW, tc.wantParts)
		}
		for i := range visits {
			if v := visits[i].Load(); v != 1 {
				t.Fatalf("%+v: element %d visited %d times", tc, i, v)
			}
		}
	}
	// With a function value that captures nothing, a call allocates nothing.
	visits = make([]atomic.Int32, 1<<12)
	ParallelFor(len(visits), 1, 2, visit)
	if allocs := testing.AllocsPerRun(20, func() { ParallelFor(len(visits), 1, 2, visit) }); allocs > 0 {
		t.Errorf("ParallelFor allocates %v times per call", allocs)
	}
}

// TestNestedParallel runs parallel products inside ParallelFor chunks (as
// attention does) with fewer workers than chunks: a worker waiting for its
// nested parts must not starve the queue.
func TestNestedParallel(t *testing.T) {
	for _, procs := range []int{2, 3, 8} {
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			const m, n, k, heads = 256, 256, 64, 16
			rng := rand.New(rand.NewPCG(5, 6))
			a, b := randSlice(rng, heads*m*k), randSlice(rng, k*n)
			got, want := make([]float32, heads*m*n), make([]float32, heads*m*n)
			for h := range heads {
				impl.Sgemm(trans(false), trans(false), m, n, k, 1, a[h*m*k:], k, b, n, 0, want[h*m*n:], n)
			}
			done := make(chan struct{})
			go func() {
				ParallelFor(heads, 1, procs, func(_, lo, hi int) {
					for h := lo; h < hi; h++ {
						Sgemm(false, false, m, n, k, 1, a[h*m*k:], k, b, n, 0, got[h*m*n:], n)
					}
				})
				close(done)
			}()
			select {
			case <-done:
			case <-time.After(30 * time.Second):
				t.Fatalf("GOMAXPROCS=%d: nested parallel products did not finish (deadlock)", procs)
			}
			for i := range got {
				if d := math.Abs(float64(got[i] - want[i])); d > 1e-3 {
					t.Fatalf("GOMAXPROCS=%d: element %d = %v, want %v", procs, i, got[i], want[i])
				}
			}
		}()
	}
}
