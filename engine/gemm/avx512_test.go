//go:build amd64

package gemm

import (
	"fmt"
	"math"
	"math/rand/v2"
	"testing"
)

// TestAVX512MatchesAVX2: the AVX-512 kernel replays the AVX2 kernel's
// per-element operations, so switching a machine's kernel changes no bit
// of any result. Checked on the architecture shapes (the bound against
// float64 is TestArchKernel's), on the products of a SmolLM2-135M step at
// T = 1024 (rank-16 LoRA products for the 12×16 kernel) and on edge tiles, all four transposes, with A in place
// and packed, on 1 and 2 threads.
func TestAVX512MatchesAVX2(t *testing.T) {
	if !hasAVX512 {
		t.Skip("this CPU has no AVX-512")
	}
	shapes := append([][3]int(nil), archShapes...)
	shapes = append(shapes,
		[3]int{1024, 576, 576}, [3]int{1024, 1536, 576}, [3]int{1024, 192, 576}, // forward
		[3]int{960, 64, 64}, [3]int{1024, 64, 1024}, // attention blocks
		[3]int{33, 65, 600}, [3]int{12, 32, 8}, [3]int{13, 31, 9}, [3]int{25, 97, 300},
		[3]int{1024, 16, 576}, [3]int{37, 16, 300}, [3]int{577, 15, 64}, [3]int{25, 9, 1000}) // 12×16 kernel
	rng := rand.New(rand.NewPCG(5, 12))
	scalars := [][2]float32{{1, 0}, {-0.5, 1.5}, {1, 1}, {0.125, 0}}
	for si, sh := range shapes {
		for tr := 0; tr < 4; tr++ {
			s := scalars[(si+tr)%len(scalars)]
			tc := gemmCase{tA: tr&1 != 0, tB: tr&2 != 0, m: sh[0], n: sh[1], k: sh[2], alpha: s[0], beta: s[1]}
			if (si+tr)%2 == 1 {
				tc.padA, tc.padB, tc.padC = 3, 1, 2
			}
			t.Run(fmt.Sprintf("%s%s_%dx%dx%d", tn(tc.tA), tn(tc.tB), tc.m, tc.n, tc.k), func(t *testing.T) {
				a, lda, b, ldb, c, ldc := tc.operands(rng)
				run := func(kernel string, threads int) []float32 {
					out := append([]float32(nil), c...)
					withKernel(t, kernel, func() {
						SgemmThreads(threads, tc.tA, tc.tB, tc.m, tc.n, tc.k, tc.alpha, a, lda, b, ldb, tc.beta, out, ldc)
					})
					return out
				}
				want := run("avx2", 1)
				for _, kn := range []string{"avx512", "avx512/packA"} {
					for _, threads := range []int{1, 2} {
						got := run(kn, threads)
						for i := range got {
							if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
								t.Fatalf("%s, %d threads: C[%d,%d] = %v, avx2 %v", kn, threads, i/ldc, i%ldc, got[i], want[i])
							}
						}
					}
				}
			})
		}
	}
}
