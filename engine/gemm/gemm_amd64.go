//go:build amd64

package gemm

import "golang.org/x/sys/cpu"

// The AVX2+FMA micro-kernels (gemm_amd64.s). For the A micro-panel with
// element (i, l) at a[i*rsa + l*csa] and the packed B micro-panel b (row l
// at b[nr*l : nr*l+nr]) they compute
//
//	C[0:mr, 0:nr] = alpha·A·B + beta·C
//
// with C's row stride ldc (in elements); C is not read when beta == 0.

//go:noescape
func sgemmKernel6x16(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

//go:noescape
func sgemmKernel12x8(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

// packBT16 and packBT8 (gemm_amd64.s) write src[j*ldb + l] to
// dst[l*w + j] for j < w, l < 8·kb8, with w = 16 and 8.

//go:noescape
func packBT16(kb8 int, src *float32, ldb int, dst *float32)

//go:noescape
func packBT8(kb8 int, src *float32, ldb int, dst *float32)

// sdot3x4 (gemm_amd64.s) sets out[4*i+j] to the dot product of
// a[i*lda : i*lda+8*k8] and b[j*ldb : j*ldb+8*k8] for i < 3, j < 4.
//
//go:noescape
func sdot3x4(k8 int, a *float32, lda int, b *float32, ldb int, out *[12]float32)

// dot3x4AVX2 is the dotKernel for amd64: see dotKernel.
func dot3x4AVX2(k int, a []float32, lda int, b []float32, ldb int, out *[12]float32) {
	k8 := k / 8 * 8
	_ = a[2*lda+k-1]
	_ = b[3*ldb+k-1]
	if k8 > 0 {
		sdot3x4(k8/8, &a[0], lda, &b[0], ldb, out)
	} else {
		*out = [12]float32{}
	}
	dotTail(k8, k, a, lda, b, ldb, out)
}

func kernelAVX2x16(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	// Bounds checks for the memory the assembly touches.
	_ = a[5*rsa+(kc-1)*csa]
	_ = b[16*kc-1]
	_ = c[5*ldc+15]
	sgemmKernel6x16(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

func kernelAVX2x8(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[11*rsa+(kc-1)*csa]
	_ = b[8*kc-1]
	_ = c[11*ldc+7]
	sgemmKernel12x8(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

// packPanelT16 packs a full 16-column panel of op(B) = Bᵀ: it writes
// b[j*ldb + l] to dst[l*16 + j] for j < 16, l < kb.
func packPanelT16(dst, b []float32, ldb, kb int) {
	_ = dst[16*kb-1]
	_ = b[15*ldb+kb-1]
	k8 := kb / 8 * 8
	if k8 > 0 {
		packBT16(k8/8, &b[0], ldb, &dst[0])
	}
	packTailT(dst, b, ldb, k8, kb, 16)
}

// packPanelT8 is packPanelT16 for 8-column panels.
func packPanelT8(dst, b []float32, ldb, kb int) {
	_ = dst[8*kb-1]
	_ = b[7*ldb+kb-1]
	k8 := kb / 8 * 8
	if k8 > 0 {
		packBT8(k8/8, &b[0], ldb, &dst[0])
	}
	packTailT(dst, b, ldb, k8, kb, 8)
}

// packTailT packs columns l in [k0, kb) of a transposed nr-column panel.
func packTailT(dst, b []float32, ldb, k0, kb, nr int) {
	for j := 0; j < nr; j++ {
		src := b[j*ldb+k0 : j*ldb+kb]
		for l, v := range src {
			dst[(k0+l)*nr+j] = v
		}
	}
}

var avx2Narrow = &microKernel{
	name: "avx2",
	mr:   12, nr: 8,
	mc: 144, kc: 256, nc: 4080,
	fn:      kernelAVX2x8,
	strided: true,
	packBT:  packPanelT8,
}

var avx2Kernel = &microKernel{
	name: "avx2",
	mr:   6, nr: 16,
	mc: 144, kc: 256, nc: 4080,
	fn:      kernelAVX2x16,
	strided: true,
	packBT:  packPanelT16,
	narrow:  avx2Narrow,
}

// sgemmKernel12x32 (gemm512_amd64.s) is the AVX-512 micro-kernel: the
// same contract as sgemmKernel6x16, and bit-identical results, with twice
// the vector width and twice the rows per tile.
//
//go:noescape
func sgemmKernel12x32(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

// sgemmKernel12x16 (gemm512_amd64.s) is sgemmKernel12x32 for 16-column
// tiles, bit-identical to sgemmKernel6x16.
//
//go:noescape
func sgemmKernel12x16(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)

// packBT8s (gemm512_amd64.s) writes src[j*ldb + l] to dst[l*lds + j] for
// j < 8, l < 8·kb8.
//
//go:noescape
func packBT8s(kb8 int, src *float32, ldb int, dst *float32, lds int)

func kernelAVX512x32(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[11*rsa+(kc-1)*csa]
	_ = b[32*kc-1]
	_ = c[11*ldc+31]
	sgemmKernel12x32(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

func kernelAVX512x16(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	_ = a[11*rsa+(kc-1)*csa]
	_ = b[16*kc-1]
	_ = c[11*ldc+15]
	sgemmKernel12x16(kc, &a[0], rsa, csa, &b[0], &c[0], ldc, alpha, beta)
}

// packPanelT32 packs a full 32-column panel of op(B) = Bᵀ, eight columns
// at a time.
func packPanelT32(dst, b []float32, ldb, kb int) {
	_ = dst[32*kb-1]
	_ = b[31*ldb+kb-1]
	k8 := kb / 8 * 8
	if k8 > 0 {
		for j := 0; j < 32; j += 8 {
			packBT8s(k8/8, &b[j*ldb], ldb, &dst[j], 32)
		}
	}
	packTailT(dst, b, ldb, k8, kb, 32)
}

// avx512Kernel is used where the CPU has AVX-512 (Zen 4 and 5, Intel since
// Skylake-SP): twice the flops per instruction of avx2Kernel with the same
// results. mc, kc and nc are avx2Kernel's (kc must stay 256: the k
// blocking fixes the summation order), rounded to the tile.
var avx512Kernel = &microKernel{
	name: "avx512",
	mr:   12, nr: 32,
	mc: 144, kc: 256, nc: 4096,
	fn:      kernelAVX512x32,
	strided: true,
	packBT:  packPanelT32,
	narrow:  avx512x16,
	alt:     avx2Kernel,
}

// avx512x16 takes the products with 8 < n ≤ 16 (LoRA's x·Aᵀ at rank 16),
// where a 32-wide tile would mostly multiply padding: one ZMM per row, twice
// the rows of avx2Kernel.
var avx512x16 = &microKernel{
	name: "avx512",
	mr:   12, nr: 16,
	mc: 144, kc: 256, nc: 4080,
	fn:      kernelAVX512x16,
	strided: true,
	packBT:  packPanelT16,
	narrow:  avx2Narrow,
}

var (
	hasAVX2   = cpu.X86.HasAVX2 && cpu.X86.HasFMA
	hasAVX512 = hasAVX2 && cpu.X86.HasAVX512F && cpu.X86.HasAVX512VL
)

func archKernel() *microKernel {
	switch {
	case hasAVX512:
		return avx512Kernel
	case hasAVX2:
		return avx2Kernel
	}
	return nil
}

func archDot() func(k int, a []float32, lda int, b []float32, ldb int, out *[12]float32) {
	if hasAVX2 {
		return dot3x4AVX2
	}
	return nil
}
