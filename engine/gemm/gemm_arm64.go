//go:build arm64

package gemm

import "golang.org/x/sys/cpu"

// The NEON micro-kernels (gemm_arm64.s). For the A micro-panel with element
// (i, l) at a[i*rsa + l*csa] and the packed B micro-panel b (row l at
// b[nr*l : nr*l+nr]) they compute
//
//	C[0:mr, 0:nr] = alpha·A·B + beta·C
//
// with C's row stride ldc (in elements); C is not read when beta == 0.
// Their arithmetic is the generic kernel's, operation for operation, as the
// Go compiler builds it for arm64 (see gemm_arm64.s), so the two give
// bit-identical products on arm64 (TestArchMatchesGeneric).

//go:noescape
func sgemmKernel8x12(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernel12x8(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

func kernelNEONx12(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	// Bounds checks for the memory the assembly touches.
	_ = a[7*rsa+(kc-1)*csa]
	_ = b[12*kc-1]
	_ = c[7*ldc+11]
	sgemmKernel8x12(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

func kernelNEONx8(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[11*rsa+(kc-1)*csa]
	_ = b[8*kc-1]
	_ = c[11*ldc+7]
	sgemmKernel12x8(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

// The k block matches the generic kernel's: kcBlock then cuts k the same
// way, which the bit-for-bit agreement with it needs. mc and nc are
// multiples of mr and nr sized like the AVX2 kernel's (A block ~144 KB for
// L2, B panel 12 KB per k-row block in L1).
var neonNarrow = &microKernel{
	name: "neon",
	mr:   12, nr: 8,
	mc: 144, kc: 256, nc: 4080,
	fn:      kernelNEONx8,
	strided: true,
}

var neonKernel = &microKernel{
	name: "neon",
	mr:   8, nr: 12,
	mc: 144, kc: 256, nc: 4080,
	fn:      kernelNEONx12,
	strided: true,
	narrow:  neonNarrow,
}

// ASIMD is part of every ARMv8-A core Go runs on; the check keeps the
// generic kernel as the fallback should a platform report otherwise.
var hasNEON = cpu.ARM64.HasASIMD

func archKernel() *microKernel {
	if hasNEON {
		return neonKernel
	}
	return nil
}

// archDot returns nil: with no dot-product kernel, n ≤ 4 products take the
// narrow micro-kernel, which keeps every arm64 path bit-identical to the
// generic kernel.
func archDot() func(k int, a []float32, lda int, b []float32, ldb int, out *[12]float32) {
	return nil
}
