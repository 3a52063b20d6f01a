package gemm

import (
	"flag"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"gonum.org/v1/gonum/blas"
)

// kernels returns the kernel configurations to test on this machine: the
// generic kernel and, where available, the architecture kernel reading A in
// place (its default) and with A always packed, and the external BLAS in
// builds that link one.
func kernels() []string {
	ks := []string{"generic"}
	if k := archKernel(); k != nil {
		ks = append(ks, k.name, k.name+"/packA")
	}
	if external != nil {
		ks = append(ks, external.name)
	}
	return ks
}

func withKernel(t testing.TB, name string, f func()) {
	t.Helper()
	base, packA := strings.CutSuffix(name, "/packA")
	restore, ok := setKernel(base)
	defer restore()
	if !ok {
		t.Skipf("kernel %s not available", name)
	}
	defer func(old bool) { forcePackA = old }(forcePackA)
	forcePackA = packA
	if Kernel() != base {
		t.Fatalf("Kernel() = %q after setKernel(%q)", Kernel(), base)
	}
	f()
}

func randSlice(rng *rand.Rand, n int) []float32 {
	s := make([]float32, n)
	for i := range s {
		s[i] = float32(rng.NormFloat64())
	}
	return s
}

type gemmCase struct {
	tA, tB           bool
	m, n, k          int
	padA, padB, padC int // extra leading-dimension elements
	alpha, beta      float32
	nanC             bool
}

func (tc gemmCase) String() string {
	return fmt.Sprintf("tA=%v,tB=%v,m=%d,n=%d,k=%d,pad=%d/%d/%d,alpha=%g,beta=%g,nan=%v",
		tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.padA, tc.padB, tc.padC, tc.alpha, tc.beta, tc.nanC)
}

// operands builds A, B, C (with strides) for a case.
func (tc gemmCase) operands(rng *rand.Rand) (a []float32, lda int, b []float32, ldb int, c []float32, ldc int) {
	ar, ac := tc.m, tc.k
	if tc.tA {
		ar, ac = tc.k, tc.m
	}
	br, bc := tc.k, tc.n
	if tc.tB {
		br, bc = tc.n, tc.k
	}
	lda = max(1, ac+tc.padA)
	ldb = max(1, bc+tc.padB)
	ldc = max(1, tc.n+tc.padC)
	a = randSlice(rng, max(0, (ar-1)*lda+ac))
	b = randSlice(rng, max(0, (br-1)*ldb+bc))
	c = randSlice(rng, max(0, (tc.m-1)*ldc+tc.n))
	if tc.nanC {
		for i := range c {
			c[i] = float32(math.NaN())
		}
	}
	return
}

func trans(t bool) blas.Transpose {
	if t {
		return blas.Trans
	}
	return blas.NoTrans
}

func checkCase(t *testing.T, tc gemmCase, rng *rand.Rand) {
	t.Helper()
	a, lda, b, ldb, c, ldc := tc.operands(rng)
	want := append([]float32(nil), c...)
	// The reference: gonum on a copy of C (padding included, so that
	// writes outside C are caught below).
	impl.Sgemm(trans(tc.tA), trans(tc.tB), tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, want, ldc)
	got := append([]float32(nil), c...)
	Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, got, ldc)

	// Relative tolerance ~1e-5·k (operands are standard normals, so sums
	// are O(√k); summation orders differ from gonum's).
	tol := 4e-5 * float64(max(tc.k, 1))
	for i := range got {
		row, col := i/ldc, i%ldc
		inside := tc.m > 0 && row < tc.m && col < tc.n
		g, w := float64(got[i]), float64(want[i])
		if !inside {
			if math.Float32bits(got[i]) != math.Float32bits(c[i]) {
				t.Fatalf("%v: wrote outside C at (%d,%d): %v -> %v", tc, row, col, c[i], got[i])
			}
			continue
		}
		if math.IsNaN(g) || math.Abs(g-w) > tol*math.Max(1, math.Abs(w)) {
			t.Fatalf("%v: C[%d,%d] = %v, want %v", tc, row, col, g, w)
		}
	}
}

func TestSgemmAgainstGonum(t *testing.T) {
	sizes := []int{0, 1, 3, 7, 8, 16, 17, 33, 129}
	scalars := [][2]float32{{1, 0}, {1, 1}, {-0.5, -0.5}, {0, 1}, {0, 0}, {0.5, 1}, {1, -0.5}}
	for _, kn := range kernels() {
		t.Run(kn, func(t *testing.T) {
			withKernel(t, kn, func() {
				rng := rand.New(rand.NewPCG(1, 2))
				for _, tA := range []bool{false, true} {
					for _, tB := range []bool{false, true} {
						for _, m := range sizes {
							for _, n := range sizes {
								for _, k := range sizes {
									s := scalars[rng.IntN(len(scalars))]
									tc := gemmCase{tA: tA, tB: tB, m: m, n: n, k: k,
										alpha: s[0], beta: s[1]}
									if rng.IntN(3) == 0 {
										tc.padA, tc.padB, tc.padC = rng.IntN(5), rng.IntN(5), rng.IntN(5)
									}
									checkCase(t, tc, rng)
								}
							}
						}
					}
				}
			})
		})
	}
}

func TestSgemmScalarsAndNaN(t *testing.T) {
	for _, kn := range kernels() {
		t.Run(kn, func(t *testing.T) {
			withKernel(t, kn, func() {
				rng := rand.New(rand.NewPCG(3, 4))
				for _, alpha := range []float32{0, 1, -0.5, 2} {
					for _, beta := range []float32{0, 1, -0.5} {
						for _, nan := range []bool{false, true} {
							if nan && beta != 0 {
								continue
							}
							for _, tA := range []bool{false, true} {
								for _, tB := range []bool{false, true} {
									for _, sh := range [][3]int{{37, 45, 29}, {129, 33, 300}, {6, 16, 5}, {5, 3, 2}} {
										checkCase(t, gemmCase{tA: tA, tB: tB, m: sh[0], n: sh[1], k: sh[2],
											padA: 3, padB: 1, padC: 2, alpha: alpha, beta: beta, nanC: nan}, rng)
									}
								}
							}
						}
					}
				}
			})
		})
	}
}

// modelShapes are the shapes the transformer uses.
var modelShapes = []gemmCase{
	// forward x·Wᵀ
	{tB: true, m: 2048, n: 128, k: 128},
	{tB: true, m: 2048, n: 344, k: 128},
	{tB: true, m: 2048, n: 128, k: 344},
	{tB: true, m: 2048, n: 512, k: 512},
	{tB: true, m: 2048, n: 1376, k: 512},
	{tB: true, m: 2048, n: 512, k: 1376},
	// backward dx = dy·W
	{m: 2048, n: 512, k: 1376},
	{m: 2048, n: 128, k: 344},
	// dW = dyᵀ·x
	{tA: true, m: 1376, n: 512, k: 2048},
	{tA: true, m: 128, n: 344, k: 2048},
	// attention per head
	{tB: true, m: 128, n: 128, k: 32, padA: 96, padB: 96},
	{m: 128, n: 32, k: 128, padB: 96, padC: 96},
	{tA: true, m: 128, n: 32, k: 128, padA: 0, padB: 96},
	// LoRA
	{tB: true, m: 2048, n: 8, k: 512},
	{m: 2048, n: 512, k: 8},
	{tA: true, m: 64, n: 512, k: 2048},
	{tB: true, m: 2048, n: 4, k: 344},
	{m: 2048, n: 1376, k: 16},
	{m: 2048, n: 4, k: 1376},
	{tA: true, m: 1376, n: 8, k: 2048},
}

func TestSgemmModelShapes(t *testing.T) {
	for _, kn := range kernels() {
		t.Run(kn, func(t *testing.T) {
			withKernel(t, kn, func() {
				rng := rand.New(rand.NewPCG(5, 6))
				for i, tc := range modelShapes {
					if kn == "generic" && tc.m*tc.n*tc.k > 1<<26 {
						continue // slow, and the driver is the same
					}
					if testing.Short() && tc.m*tc.n*tc.k > 1<<24 {
						continue // -short: under emulation (TestArchKernel covers the classes)
					}
					tc.alpha, tc.beta = 1, 0
					if i%2 == 1 {
						tc.alpha, tc.beta = -0.5, 1
					}
					checkCase(t, tc, rng)
				}
			})
		})
	}
}

// TestSgemmDeterministic checks that repeated calls, and calls under
// different GOMAXPROCS, give bit-identical results (for OpenBLAS only
// repeated calls: its results depend on how C is split).
func TestSgemmDeterministic(t *testing.T) {
	for _, kn := range kernels() {
		t.Run(kn, func(t *testing.T) {
			withKernel(t, kn, func() {
				rng := rand.New(rand.NewPCG(7, 8))
				for _, tc := range []gemmCase{
					{tB: true, m: 517, n: 301, k: 700, alpha: 1, beta: 0.5},
					{tA: true, m: 97, n: 1030, k: 513, alpha: -0.5, beta: 0},
					{m: 1000, n: 20, k: 600, alpha: 1, beta: 1},
					{tB: true, m: 1001, n: 3, k: 515, alpha: 2, beta: -0.5}, // dot path
					{tA: true, m: 700, n: 7, k: 300, alpha: 1, beta: 0},     // narrow kernel
				} {
					a, lda, b, ldb, c, ldc := tc.operands(rng)
					run := func(procs int) []float32 {
						old := runtime.GOMAXPROCS(procs)
						defer runtime.GOMAXPROCS(old)
						out := append([]float32(nil), c...)
						Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, out, ldc)
						return out
					}
					ref := run(1)
					procsList := []int{1, 2, 3, 4, 7}
					if testing.Short() {
						procsList = []int{3} // -short: under emulation
					}
					for _, procs := range procsList {
						if external != nil && kn == external.name {
							// OpenBLAS's blocks of C depend on the split:
							// only repeated calls at one GOMAXPROCS agree.
							ref = run(procs)
						}
						for rep := 0; rep < 2; rep++ {
							got := run(procs)
							for i := range got {
								if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
									t.Fatalf("%v: GOMAXPROCS=%d rep %d: element %d differs: %v vs %v",
										tc, procs, rep, i, got[i], ref[i])
								}
							}
						}
					}
				}
			})
		})
	}
}

func TestSgemmPanics(t *testing.T) {
	mustPanic := func(name, want string, f func()) {
		t.Helper()
		defer func() {
			r := recover()
			if r != want {
				t.Errorf("%s: panic %v, want %q", name, r, want)
			}
		}()
		f()
	}
	a := make([]float32, 12)
	mustPanic("m<0", mLT0, func() { Sgemm(false, false, -1, 2, 2, 1, a, 2, a, 2, 0, a, 2) })
	mustPanic("lda", badLdA, func() { Sgemm(false, false, 2, 2, 3, 1, a, 2, a, 2, 0, a, 2) })
	mustPanic("ldb", badLdB, func() { Sgemm(false, true, 2, 2, 3, 1, a, 3, a, 2, 0, a, 2) })
	mustPanic("ldc", badLdC, func() { Sgemm(false, false, 2, 3, 2, 1, a, 2, a, 3, 0, a, 2) })
	mustPanic("shortC", shortC, func() { Sgemm(false, false, 4, 4, 2, 1, a, 2, a, 4, 0, a[:10], 4) })
}

func TestSgemmNoAllocs(t *testing.T) {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	rng := rand.New(rand.NewPCG(9, 10))
	for _, sh := range [][3]int{{64, 48, 40}, {100, 8, 64}, {100, 4, 64}, {5, 5, 5}} {
		m, n, k := sh[0], sh[1], sh[2]
		a, b, c := randSlice(rng, m*k), randSlice(rng, k*n), make([]float32, m*n)
		Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		allocs := testing.AllocsPerRun(50, func() {
			Sgemm(false, true, m, n, k, 1, a, k, b, k, 0, c, n)
		})
		if allocs > 0 {
			t.Errorf("%dx%dx%d: Sgemm allocates %v times per call", m, n, k, allocs)
		}
	}
}

func TestDgemm(t *testing.T) {
	a := []float64{1, 2, 3, 4, 5, 6} // 2×3
	b := []float64{1, 0, 0, 1, 1, 1} // 3×2
	c := []float64{9, 9, 9, 9}
	Dgemm(false, false, 2, 2, 3, 1, a, 3, b, 2, 0, c, 2)
	want := []float64{4, 5, 10, 11}
	for i := range c {
		if c[i] != want[i] {
			t.Fatalf("Dgemm = %v, want %v", c, want)
		}
	}
}

var benchPackA = flag.Bool("packa", false, "benchmark with A always packed")

func BenchmarkSgemm(b *testing.B) {
	defer func(old bool) { forcePackA = old }(forcePackA)
	forcePackA = *benchPackA
	for _, tc := range modelShapes {
		name := fmt.Sprintf("%s%s_%dx%dx%d", tn(tc.tA), tn(tc.tB), tc.m, tc.n, tc.k)
		rng := rand.New(rand.NewPCG(11, 12))
		tc.alpha, tc.beta = 1, 0
		a, lda, bb, ldb, c, ldc := tc.operands(rng)
		flops := 2 * float64(tc.m) * float64(tc.n) * float64(tc.k)
		// lens's kernel for this machine and, in -tags openblas builds,
		// OpenBLAS.
		kns := []string{genericKernel.name}
		if k := archKernel(); k != nil {
			kns[0] = k.name
		}
		if external != nil {
			kns = append(kns, external.name)
		}
		for _, kn := range kns {
			b.Run(name+"/"+kn, func(b *testing.B) {
				withKernel(b, kn, func() {
					for b.Loop() {
						Sgemm(tc.tA, tc.tB, tc.m, tc.n, tc.k, 1, a, lda, bb, ldb, 0, c, ldc)
					}
				})
				b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
			})
		}
		b.Run(name+"/gonum", func(b *testing.B) {
			for b.Loop() {
				impl.Sgemm(trans(tc.tA), trans(tc.tB), tc.m, tc.n, tc.k, 1, a, lda, bb, ldb, 0, c, ldc)
			}
			b.ReportMetric(flops*float64(b.N)/b.Elapsed().Seconds()/1e9, "GFLOP/s")
		})
	}
}

func tn(t bool) string {
	if t {
		return "T"
	}
	return "N"
}

// TestKernelChoice checks what Kernel reports after Use (what cmd/lens
// does with LENS_GEMM) against the build.
func TestKernelChoice(t *testing.T) {
	def := "generic"
	switch {
	case external != nil:
		def = external.name
	case archKernel() != nil:
		def = archKernel().name
	}
	type tc struct {
		name, want string
		ok         bool
	}
	cases := []tc{{"", def, true}, {"generic", "generic", true}, {"nonsense", def, false}}
	if k := archKernel(); k != nil {
		cases = append(cases, tc{k.name, k.name, true})
	}
	if external != nil {
		cases = append(cases, tc{external.name, external.name, true})
	} else {
		cases = append(cases, tc{"openblas", def, false})
	}
	defer Use("")
	for _, c := range cases {
		if err := Use(""); err != nil {
			t.Fatal(err)
		}
		err := Use(c.name)
		if (err == nil) != c.ok {
			t.Errorf("Use(%q) = %v, want ok=%v", c.name, err, c.ok)
		}
		if got := Kernel(); got != c.want {
			t.Errorf("after Use(%q): Kernel() = %q, want %q", c.name, got, c.want)
		}
	}
}

// TestMeter: the meter counts each call's flops, and concurrent calls'
// time once (the union of their intervals, at most the wall time).
func TestMeter(t *testing.T) {
	const n = 192
	a, b := make([]float32, n*n), make([]float32, n*n)
	c1, c2 := make([]float32, n*n), make([]float32, n*n)
	StartMeter()
	start := time.Now()
	var wg sync.WaitGroup
	for _, c := range [][]float32{c1, c2} {
		wg.Go(func() {
			for range 5 {
				Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
			}
		})
	}
	wg.Wait()
	wall := time.Since(start)
	Sgemm(false, true, 4, 5, 6, 1, a, 6, b, 6, 0, c1, 5)
	busy, flops := StopMeter()
	if want := 10*2*float64(n*n*n) + 2*4*5*6; flops != want {
		t.Fatalf("flops %g, want %g", flops, want)
	}
	if busy <= 0 || busy > wall+time.Millisecond {
		t.Fatalf("busy %v outside (0, wall %v]", busy, wall)
	}
	Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c1, n)
	if b2, f2 := StopMeter(); b2 != busy || f2 != flops {
		t.Fatalf("a stopped meter moved: %v %g", b2, f2)
	}
}
