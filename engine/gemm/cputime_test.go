//go:build linux

package gemm

import (
	"flag"
	"fmt"
	"math/rand/v2"
	"runtime"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

var (
	cpuTime    = flag.Bool("cputime", false, "run TestCPUTime: single-thread GFLOP/s measured in thread CPU time")
	tuneKC     = flag.Int("kc", 0, "override kc of the active kernel")
	tuneMC     = flag.Int("mc", 0, "override mc of the active kernel")
	tuneShapes = flag.String("shapes", "", "only shapes whose name contains this")
	tuneShape  = flag.String("shape", "", "measure this shape instead: tA,tB,m,n,k (e.g. NT,2048,8,512)")
)

func threadCPU() time.Duration {
	var ts unix.Timespec
	if err := unix.ClockGettime(unix.CLOCK_THREAD_CPUTIME_ID, &ts); err != nil {
		panic(err)
	}
	return time.Duration(ts.Nano())
}

// TestCPUTime reports single-threaded GFLOP/s from the thread's CPU time,
// which is robust against other processes competing for the cores. It is
// a tuning aid: go test -run CPUTime -cputime -v.
func TestCPUTime(t *testing.T) {
	if !*cpuTime {
		t.Skip("enable with -cputime")
	}
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	saved := *active
	defer func() { *active = saved }()
	if *tuneKC > 0 {
		active.kc = *tuneKC
	}
	if *tuneMC > 0 {
		active.mc = *tuneMC
	}
	shapes := modelShapes
	if *tuneShape != "" {
		var ts string
		var tc gemmCase
		if _, err := fmt.Sscanf(*tuneShape, "%2s,%d,%d,%d", &ts, &tc.m, &tc.n, &tc.k); err != nil {
			t.Fatal(err)
		}
		tc.tA, tc.tB = ts[0] == 'T', ts[1] == 'T'
		shapes = []gemmCase{tc}
	}
	for _, tc := range shapes {
		name := fmt.Sprintf("%s%s_%dx%dx%d", tn(tc.tA), tn(tc.tB), tc.m, tc.n, tc.k)
		if !strings.Contains(name, *tuneShapes) {
			continue
		}
		rng := rand.New(rand.NewPCG(11, 12))
		a, lda, bb, ldb, c, ldc := tc.operands(rng)
		flops := 2 * float64(tc.m) * float64(tc.n) * float64(tc.k)
		reps := max(3, int(1e9/flops))
		best := map[bool]float64{}
		for round := 0; round < 5; round++ {
			for _, pa := range []bool{false, true} {
				forcePackA = pa
				start := threadCPU()
				for r := 0; r < reps; r++ {
					Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, a, lda, bb, ldb, 0, c, ldc)
				}
				g := flops * float64(reps) / (threadCPU() - start).Seconds() / 1e9
				best[pa] = max(best[pa], g)
			}
		}
		forcePackA = false
		fmt.Printf("%s\tinplaceA %.1f\tpackedA %.1f GFLOP/s\n", name, best[false], best[true])
	}
}

// TestKernelPeak measures the micro-kernel alone on L1-resident panels.
func TestKernelPeak(t *testing.T) {
	if !*cpuTime {
		t.Skip("enable with -cputime")
	}
	if archKernel() == nil {
		t.Skip("no arch kernel")
	}
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	rng := rand.New(rand.NewPCG(1, 1))
	// The architecture kernel, its alternatives and the narrower kernels
	// of each.
	seen := map[*microKernel]bool{}
	var all []*microKernel
	for a := archKernel(); a != nil; a = a.alt {
		for k := a; k != nil; k = k.narrow {
			if !seen[k] {
				seen[k] = true
				all = append(all, k)
			}
		}
	}
	for _, k := range all {
		for _, kc := range []int{32, 128, 256, 384} {
			a := randSlice(rng, kc*k.mr)
			b := randSlice(rng, kc*k.nr)
			c := make([]float32, k.mr*k.nr)
			reps := int(2e9 / float64(2*kc*k.mr*k.nr))
			best := 0.0
			for round := 0; round < 5; round++ {
				start := threadCPU()
				for r := 0; r < reps; r++ {
					k.fn(kc, a, 1, k.mr, b, c, k.nr, 1, 1)
				}
				best = max(best, float64(2*kc*k.mr*k.nr*reps)/(threadCPU()-start).Seconds()/1e9)
			}
			fmt.Printf("kernel %s %d×%d kc=%d: %.1f GFLOP/s\n", k.name, k.mr, k.nr, kc, best)
		}
	}
}
