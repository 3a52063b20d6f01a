//go:build arm64

#include "textflag.h"

// NEON micro-kernels for arm64. See gemm.go for the blocking scheme and
// gemm_arm64.go for the Go declarations. They mirror the AVX2 kernels
// (gemm_amd64.s): B micro-panels are packed (row l at b[nr*l : nr*l+nr]),
// A is read in place or packed with two strides (element (i, l) at
// a[i*rsa + l*csa]), each element of A is broadcast from memory (VLD1R,
// post-incremented by csa, so one pointer per row and no address
// arithmetic in the loop) and multiplied into a row of B with VFMLA.
//
// Rounding is the portable kernel's as the Go compiler builds it for arm64
// (kernel_generic.go: c += a·b fused into FMADDS, then t = beta·C and
// alpha·x + t fused): every accumulator lane is a chain of fused
// multiply-adds over l in order, and the epilogue computes
// alpha·x (+ fma with beta·C). Plain products are formed as fma(x, y, −0),
// which is exactly x·y, sign of zero included. So on arm64 this kernel and
// the generic one give bit-identical results.

// Zero a 4-lane accumulator.
#define ZERO(v) VEOR v.B16, v.B16, v.B16

// BSTORE writes alpha·acc + beta·C for one 4-lane vector at off(R11):
// V0 = alpha, V1 = beta, V2 = −0 in every lane; clobbers V3, V4.
#define BSTORE(acc, off) \
	FMOVQ off(R11), F3; \
	VORR V2.B16, V2.B16, V4.B16; \
	VFMLA V1.S4, V3.S4, V4.S4; \
	VFMLA V0.S4, acc.S4, V4.S4; \
	FMOVQ F4, off(R11)

// NSTORE writes alpha·acc at off(R11) (beta == 0: C is not read).
#define NSTORE(acc, off) \
	VORR V2.B16, V2.B16, V4.B16; \
	VFMLA V0.S4, acc.S4, V4.S4; \
	FMOVQ F4, off(R11)

// EPILOGUE_SETUP loads V0 = alpha, V1 = beta, V2 = −0 and leaves beta's bits
// without the sign in R13 (zero means beta == 0).
#define EPILOGUE_SETUP \
	FMOVS alpha+56(FP), F0; \
	VDUP V0.S[0], V0.S4; \
	FMOVS beta+60(FP), F1; \
	VDUP V1.S[0], V1.S4; \
	MOVW $0x80000000, R13; \
	VDUP R13, V2.S4; \
	MOVWU beta+60(FP), R13; \
	AND $0x7fffffff, R13, R13

// ---------------------------------------------------------------------------
// func sgemmKernel8x12(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)
//
// C[0:8, 0:12] = alpha·A·B + beta·C (C not read when beta == 0). Row r of
// the tile accumulates in V(8+3r), V(9+3r), V(10+3r) (columns 0-3, 4-7,
// 8-11); V0-V2 hold a row of B and V3-V6 broadcast elements of A.
//
// Registers: R1-R8 point at rows 0-7 of A, R9 = csa in bytes, R10 walks B,
// R11 points at C, R12 = ldc in bytes, R0 counts k.

// STEP8x12 is one k step: 3 loads of B, 8 broadcasts of A, 24 FMAs.
#define STEP8x12 \
	VLD1.P 48(R10), [V0.S4, V1.S4, V2.S4]; \
	VLD1R.P (R1)(R9), [V3.S4]; \
	VLD1R.P (R2)(R9), [V4.S4]; \
	VFMLA V0.S4, V3.S4, V8.S4; \
	VFMLA V1.S4, V3.S4, V9.S4; \
	VFMLA V2.S4, V3.S4, V10.S4; \
	VLD1R.P (R3)(R9), [V5.S4]; \
	VFMLA V0.S4, V4.S4, V11.S4; \
	VFMLA V1.S4, V4.S4, V12.S4; \
	VFMLA V2.S4, V4.S4, V13.S4; \
	VLD1R.P (R4)(R9), [V6.S4]; \
	VFMLA V0.S4, V5.S4, V14.S4; \
	VFMLA V1.S4, V5.S4, V15.S4; \
	VFMLA V2.S4, V5.S4, V16.S4; \
	VLD1R.P (R5)(R9), [V3.S4]; \
	VFMLA V0.S4, V6.S4, V17.S4; \
	VFMLA V1.S4, V6.S4, V18.S4; \
	VFMLA V2.S4, V6.S4, V19.S4; \
	VLD1R.P (R6)(R9), [V4.S4]; \
	VFMLA V0.S4, V3.S4, V20.S4; \
	VFMLA V1.S4, V3.S4, V21.S4; \
	VFMLA V2.S4, V3.S4, V22.S4; \
	VLD1R.P (R7)(R9), [V5.S4]; \
	VFMLA V0.S4, V4.S4, V23.S4; \
	VFMLA V1.S4, V4.S4, V24.S4; \
	VFMLA V2.S4, V4.S4, V25.S4; \
	VLD1R.P (R8)(R9), [V6.S4]; \
	VFMLA V0.S4, V5.S4, V26.S4; \
	VFMLA V1.S4, V5.S4, V27.S4; \
	VFMLA V2.S4, V5.S4, V28.S4; \
	VFMLA V0.S4, V6.S4, V29.S4; \
	VFMLA V1.S4, V6.S4, V30.S4; \
	VFMLA V2.S4, V6.S4, V31.S4

#define BROW12(a0, a1, a2) \
	BSTORE(a0, 0); \
	BSTORE(a1, 16); \
	BSTORE(a2, 32); \
	ADD R12, R11, R11

#define NROW12(a0, a1, a2) \
	NSTORE(a0, 0); \
	NSTORE(a1, 16); \
	NSTORE(a2, 32); \
	ADD R12, R11, R11

TEXT ·sgemmKernel8x12(SB), NOSPLIT, $0-64
	MOVD kc+0(FP), R0
	MOVD a+8(FP), R1
	MOVD rsa+16(FP), R13
	MOVD csa+24(FP), R9
	MOVD b+32(FP), R10
	MOVD c+40(FP), R11
	MOVD ldc+48(FP), R12
	LSL $2, R13
	LSL $2, R9
	LSL $2, R12
	ADD R13, R1, R2
	ADD R13, R2, R3
	ADD R13, R3, R4
	ADD R13, R4, R5
	ADD R13, R5, R6
	ADD R13, R6, R7
	ADD R13, R7, R8
	ZERO(V8)
	ZERO(V9)
	ZERO(V10)
	ZERO(V11)
	ZERO(V12)
	ZERO(V13)
	ZERO(V14)
	ZERO(V15)
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	ZERO(V20)
	ZERO(V21)
	ZERO(V22)
	ZERO(V23)
	ZERO(V24)
	ZERO(V25)
	ZERO(V26)
	ZERO(V27)
	ZERO(V28)
	ZERO(V29)
	ZERO(V30)
	ZERO(V31)
	// Four k steps per iteration, then the remaining k mod 4.
	LSR $2, R0, R14
	AND $3, R0, R0
	CBZ R14, k12tail

k12loop4:
	STEP8x12
	STEP8x12
	STEP8x12
	STEP8x12
	SUBS $1, R14, R14
	BNE k12loop4

k12tail:
	CBZ R0, k12done

k12loop1:
	STEP8x12
	SUBS $1, R0, R0
	BNE k12loop1

k12done:
	EPILOGUE_SETUP
	CBZ R13, k12nobeta
	BROW12(V8, V9, V10)
	BROW12(V11, V12, V13)
	BROW12(V14, V15, V16)
	BROW12(V17, V18, V19)
	BROW12(V20, V21, V22)
	BROW12(V23, V24, V25)
	BROW12(V26, V27, V28)
	BROW12(V29, V30, V31)
	RET

k12nobeta:
	NROW12(V8, V9, V10)
	NROW12(V11, V12, V13)
	NROW12(V14, V15, V16)
	NROW12(V17, V18, V19)
	NROW12(V20, V21, V22)
	NROW12(V23, V24, V25)
	NROW12(V26, V27, V28)
	NROW12(V29, V30, V31)
	RET

// ---------------------------------------------------------------------------
// func sgemmKernel12x8(kc int, a *float32, rsa, csa int, b, c *float32, ldc int, alpha, beta float32)
//
// C[0:12, 0:8] = alpha·A·B + beta·C (C not read when beta == 0), for narrow
// products (n ≤ 8). Row r accumulates in V(8+2r), V(9+2r); V0, V1 hold a
// row of B and V2-V7 broadcast elements of A.
//
// Registers: R1-R8 and R19-R22 point at rows 0-11 of A, R9 = csa in bytes,
// R10 walks B, R11 points at C, R12 = ldc in bytes, R0 counts k.

#define FMA2(x, c0, c1) \
	VFMLA V0.S4, x.S4, c0.S4; \
	VFMLA V1.S4, x.S4, c1.S4

// STEP12x8 is one k step: 2 loads of B, 12 broadcasts of A, 24 FMAs.
#define STEP12x8 \
	VLD1.P 32(R10), [V0.S4, V1.S4]; \
	VLD1R.P (R1)(R9), [V2.S4]; \
	VLD1R.P (R2)(R9), [V3.S4]; \
	VLD1R.P (R3)(R9), [V4.S4]; \
	FMA2(V2, V8, V9); \
	VLD1R.P (R4)(R9), [V5.S4]; \
	FMA2(V3, V10, V11); \
	VLD1R.P (R5)(R9), [V6.S4]; \
	FMA2(V4, V12, V13); \
	VLD1R.P (R6)(R9), [V7.S4]; \
	FMA2(V5, V14, V15); \
	VLD1R.P (R7)(R9), [V2.S4]; \
	FMA2(V6, V16, V17); \
	VLD1R.P (R8)(R9), [V3.S4]; \
	FMA2(V7, V18, V19); \
	VLD1R.P (R19)(R9), [V4.S4]; \
	FMA2(V2, V20, V21); \
	VLD1R.P (R20)(R9), [V5.S4]; \
	FMA2(V3, V22, V23); \
	VLD1R.P (R21)(R9), [V6.S4]; \
	FMA2(V4, V24, V25); \
	VLD1R.P (R22)(R9), [V7.S4]; \
	FMA2(V5, V26, V27); \
	FMA2(V6, V28, V29); \
	FMA2(V7, V30, V31)

#define BROW8(a0, a1) \
	BSTORE(a0, 0); \
	BSTORE(a1, 16); \
	ADD R12, R11, R11

#define NROW8(a0, a1) \
	NSTORE(a0, 0); \
	NSTORE(a1, 16); \
	ADD R12, R11, R11

TEXT ·sgemmKernel12x8(SB), NOSPLIT, $0-64
	MOVD kc+0(FP), R0
	MOVD a+8(FP), R1
	MOVD rsa+16(FP), R13
	MOVD csa+24(FP), R9
	MOVD b+32(FP), R10
	MOVD c+40(FP), R11
	MOVD ldc+48(FP), R12
	LSL $2, R13
	LSL $2, R9
	LSL $2, R12
	ADD R13, R1, R2
	ADD R13, R2, R3
	ADD R13, R3, R4
	ADD R13, R4, R5
	ADD R13, R5, R6
	ADD R13, R6, R7
	ADD R13, R7, R8
	ADD R13, R8, R19
	ADD R13, R19, R20
	ADD R13, R20, R21
	ADD R13, R21, R22
	ZERO(V8)
	ZERO(V9)
	ZERO(V10)
	ZERO(V11)
	ZERO(V12)
	ZERO(V13)
	ZERO(V14)
	ZERO(V15)
	ZERO(V16)
	ZERO(V17)
	ZERO(V18)
	ZERO(V19)
	ZERO(V20)
	ZERO(V21)
	ZERO(V22)
	ZERO(V23)
	ZERO(V24)
	ZERO(V25)
	ZERO(V26)
	ZERO(V27)
	ZERO(V28)
	ZERO(V29)
	ZERO(V30)
	ZERO(V31)
	LSR $2, R0, R14
	AND $3, R0, R0
	CBZ R14, k8tail

k8loop4:
	STEP12x8
	STEP12x8
	STEP12x8
	STEP12x8
	SUBS $1, R14, R14
	BNE k8loop4

k8tail:
	CBZ R0, k8done

k8loop1:
	STEP12x8
	SUBS $1, R0, R0
	BNE k8loop1

k8done:
	EPILOGUE_SETUP
	CBZ R13, k8nobeta
	BROW8(V8, V9)
	BROW8(V10, V11)
	BROW8(V12, V13)
	BROW8(V14, V15)
	BROW8(V16, V17)
	BROW8(V18, V19)
	BROW8(V20, V21)
	BROW8(V22, V23)
	BROW8(V24, V25)
	BROW8(V26, V27)
	BROW8(V28, V29)
	BROW8(V30, V31)
	RET

k8nobeta:
	NROW8(V8, V9)
	NROW8(V10, V11)
	NROW8(V12, V13)
	NROW8(V14, V15)
	NROW8(V16, V17)
	NROW8(V18, V19)
	NROW8(V20, V21)
	NROW8(V22, V23)
	NROW8(V24, V25)
	NROW8(V26, V27)
	NROW8(V28, V29)
	NROW8(V30, V31)
	RET
