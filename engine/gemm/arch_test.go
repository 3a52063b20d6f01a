package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"testing"
)

// archShapes covers the shape classes an architecture kernel must get
// right: tiny products (the direct loop and just above it), LoRA ranks
// (n ≤ 8, the narrow kernel, and m ≤ 8 for the rank's side of dW),
// tall-skinny and short-wide products, edge tiles in both directions, k
// not a multiple of the unrolling (4) nor of the k block (256), and
// products large enough to be split over threads.
var archShapes = [][3]int{
	// tiny
	{1, 1, 1}, {2, 3, 4}, {8, 8, 8}, {3, 5, 40}, {8, 12, 7},
	// LoRA ranks: x·Aᵀ (n = r), dy·B (k = r), dW of the rank side
	{300, 1, 64}, {300, 2, 65}, {97, 4, 130}, {517, 8, 96}, {64, 7, 33},
	{200, 96, 8}, {37, 50, 4}, {8, 300, 517}, {4, 77, 257},
	// tall-skinny, short-wide
	{1000, 12, 33}, {2000, 5, 17}, {13, 1000, 17}, {9, 61, 1},
	// edge tiles, k around the block and the unrolling
	{17, 25, 255}, {23, 13, 256}, {25, 37, 257}, {31, 23, 513}, {12, 8, 3},
	// split over threads (m·n·k ≥ 2·2¹⁹)
	{200, 300, 257}, {3000, 12, 100}, {13, 2000, 129}, {600, 8, 300},
}

// refBound computes, in float64, the exact C = alpha·op(A)·op(B) + beta·C
// (up to float64 rounding, far below float32's) and a bound on the error
// any float32 evaluation may make: each of the k products, the alpha and
// beta scalings and the final add round once, so the error is at most
// (k+3)·u·(|alpha|·Σ|a||b| + |beta|·|c|), u = 2⁻²⁴, whatever the
// summation order and fusing.
func refBound(tc gemmCase, a []float32, lda int, b []float32, ldb int, c []float32, ldc int) (want, bound []float64) {
	want = make([]float64, tc.m*tc.n)
	bound = make([]float64, tc.m*tc.n)
	const u = 1.0 / (1 << 24)
	g := float64(tc.k+3) * u * 1.001
	for i := 0; i < tc.m; i++ {
		for j := 0; j < tc.n; j++ {
			var s, abs float64
			for l := 0; l < tc.k; l++ {
				var av, bv float64
				if tc.tA {
					av = float64(a[l*lda+i])
				} else {
					av = float64(a[i*lda+l])
				}
				if tc.tB {
					bv = float64(b[j*ldb+l])
				} else {
					bv = float64(b[l*ldb+j])
				}
				s += av * bv
				abs += math.Abs(av * bv)
			}
			al, be := float64(tc.alpha), float64(tc.beta)
			w := al * s
			e := math.Abs(al) * abs
			if be != 0 {
				cv := float64(c[i*ldc+j])
				w += be * cv
				e += math.Abs(be * cv)
			}
			want[i*tc.n+j], bound[i*tc.n+j] = w, g*e
		}
	}
	return want, bound
}

// TestArchKernel checks the architecture kernel (AVX2 on amd64, NEON on
// arm64), reading A in place and packed, on every shape class and all four
// transpose combinations: against float64 within the rounding bound,
// against itself at 1 to 7 threads bit for bit, and on arm64 bit for bit
// against the generic kernel (the NEON kernel replays its fused
// operations; on amd64 the generic kernel is not fused and AVX2 is, so
// only the bound applies there).
func TestArchKernel(t *testing.T) {
	ak := archKernel()
	if ak == nil {
		t.Skip("no architecture kernel in this build")
	}
	scalars := [][2]float32{{1, 0}, {-0.5, 1.5}, {2, -1}}
	rng := rand.New(rand.NewPCG(21, 22))
	for si, sh := range archShapes {
		for tr := 0; tr < 4; tr++ {
			s := scalars[(si+tr)%len(scalars)]
			tc := gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: sh[0], n: sh[1], k: sh[2],
				alpha: s[0], beta: s[1]}
			if (si+tr)%2 == 1 {
				tc.padA, tc.padB, tc.padC = 3, 1, 2
			}
			t.Run(fmt.Sprintf("%s%s_%dx%dx%d", tn(tc.tA), tn(tc.tB), tc.m, tc.n, tc.k), func(t *testing.T) {
				checkArch(t, ak.name, tc, rng)
			})
		}
	}
}

func checkArch(t *testing.T, arch string, tc gemmCase, rng *rand.Rand) {
	a, lda, b, ldb, c, ldc := tc.operands(rng)
	want, bound := refBound(tc, a, lda, b, ldb, c, ldc)
	run := func(kernel string, threads int) []float32 {
		out := append([]float32(nil), c...)
		withKernel(t, kernel, func() {
			SgemmThreads(threads, tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, out, ldc)
		})
		return out
	}
	gen := run("generic", 1)
	for _, kn := range []string{arch, arch + "/packA"} {
		ref := run(kn, 1)
		for i := 0; i < tc.m; i++ {
			for j := 0; j < tc.n; j++ {
				got := float64(ref[i*ldc+j])
				w, e := want[i*tc.n+j], bound[i*tc.n+j]
				if !(math.Abs(got-w) <= e) {
					t.Fatalf("%s: C[%d,%d] = %v, float64 %v, error %.3g > bound %.3g",
						kn, i, j, got, w, math.Abs(got-w), e)
				}
			}
		}
		for i := range ref {
			if i%ldc >= tc.n || i/ldc >= tc.m {
				if math.Float32bits(ref[i]) != math.Float32bits(c[i]) {
					t.Fatalf("%s: wrote outside C at element %d", kn, i)
				}
			}
		}
		if runtime.GOARCH == "arm64" {
			for i := range ref {
				if math.Float32bits(ref[i]) != math.Float32bits(gen[i]) {
					t.Fatalf("%s: C[%d,%d] = %v, generic kernel %v (not bit-identical)",
						kn, i/ldc, i%ldc, ref[i], gen[i])
				}
			}
		}
		for _, threads := range []int{2, 3, 7} {
			got := run(kn, threads)
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("%s: %d threads: C[%d,%d] = %v, 1 thread %v",
						kn, threads, i/ldc, i%ldc, got[i], ref[i])
				}
			}
		}
	}
}
