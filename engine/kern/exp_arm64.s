//go:build arm64

#include "textflag.h"

// Vector float32 exponential and the row operations of softmax, 4 lanes
// with NEON: the AVX2 kernels (exp_amd64.s) step for step, same clamps,
// same fused multiply-adds, same 2ⁿ split (see exp.go for the method and
// its error bounds). Rows whose length is not a multiple of 4 end in lanes
// loaded and stored one at a time, padded so that they add nothing, so
// every element goes through the same lane arithmetic wherever it sits.
//
// Go's arm64 assembler has no floating-point vector arithmetic besides
// VFMLA/VFMLS, so those instructions are emitted as WORDs by the macros
// below, in the Arm manual's operand order (destination first) on 4×32-bit
// lanes; the encodings were checked against GNU as.
#define FADD4(d, n, m) WORD $(0x4e20d400 | (m<<16) | (n<<5) | d)
#define FSUB4(d, n, m) WORD $(0x4ea0d400 | (m<<16) | (n<<5) | d)
#define FMUL4(d, n, m) WORD $(0x6e20dc00 | (m<<16) | (n<<5) | d)
#define FDIV4(d, n, m) WORD $(0x6e20fc00 | (m<<16) | (n<<5) | d)
#define FMAX4(d, n, m) WORD $(0x4e20f400 | (m<<16) | (n<<5) | d)
#define FMIN4(d, n, m) WORD $(0x4ea0f400 | (m<<16) | (n<<5) | d)
#define FCMGT4(d, n, m) WORD $(0x6ea0e400 | (m<<16) | (n<<5) | d)
#define FCMEQ4(d, n, m) WORD $(0x4e20e400 | (m<<16) | (n<<5) | d)
#define FADDP4(d, n, m) WORD $(0x6e20d400 | (m<<16) | (n<<5) | d)
#define FRINTN4(d, n) WORD $(0x4e218800 | (n<<5) | d)
#define FCVTZS4(d, n) WORD $(0x4ea1b800 | (n<<5) | d)
#define SSHR4_1(d, n) WORD $(0x4f3f0400 | (n<<5) | d)
#define FMAXV4(d, n) WORD $(0x6e30f800 | (n<<5) | d)
#define FADDP2S(d, n) WORD $(0x7e30d800 | (n<<5) | d)

// CONST sets every lane of V to the 32-bit pattern bits (clobbers R7).
#define CONST(bits, V) \
	MOVW $bits, R7; \
	VDUP R7, V.S4

// EXPCONSTS loads the constants the exponential keeps in registers:
// V16 log2(e), V17 C1, V18 C2, V19-V24 P0-P5, V25 1, V26 the largest x
// with finite e^x, V27 the smallest x with a normal e^x, V28 +Inf, V29 the
// exponent bias 127, V30 0, V31 −Inf.
#define EXPCONSTS \
	CONST(0x3fb8aa3b, V16); \
	CONST(0x3f318000, V17); \
	CONST(0xb95e8083, V18); \
	CONST(0x39506967, V19); \
	CONST(0x3ab743ce, V20); \
	CONST(0x3c088908, V21); \
	CONST(0x3d2aa9c1, V22); \
	CONST(0x3e2aaaaa, V23); \
	CONST(0x3f000000, V24); \
	CONST(0x3f800000, V25); \
	CONST(0x42b17217, V26); \
	CONST(0xc2aeac4f, V27); \
	CONST(0x7f800000, V28); \
	CONST(127, V29); \
	VEOR V30.B16, V30.B16, V30.B16; \
	CONST(0xff800000, V31)

// EXP_V0_TO_V3 sets V3 = e^V0 lane by lane, clobbering V1, V2, V4-V7:
// clamp x to [lo, hi], n = round(x·log2e), r = x − n·C1 − n·C2 (fused),
// y = P(r)·r² + r + 1 (Horner with fused steps), y·2^(n>>1)·2^(n−(n>>1))
// (each factor a normal float); then x > hi gives +Inf, x < lo gives 0 and
// NaN stays NaN.
#define EXP_V0_TO_V3 \
	FMIN4(1, 0, 26); \
	FMAX4(1, 1, 27); \
	FMUL4(2, 1, 16); \
	FRINTN4(2, 2); \
	VFMLS V17.S4, V2.S4, V1.S4; \
	VFMLS V18.S4, V2.S4, V1.S4; \
	VORR V20.B16, V20.B16, V3.B16; \
	VFMLA V1.S4, V19.S4, V3.S4; \
	VORR V21.B16, V21.B16, V4.B16; \
	VFMLA V1.S4, V3.S4, V4.S4; \
	VORR V22.B16, V22.B16, V3.B16; \
	VFMLA V1.S4, V4.S4, V3.S4; \
	VORR V23.B16, V23.B16, V4.B16; \
	VFMLA V1.S4, V3.S4, V4.S4; \
	VORR V24.B16, V24.B16, V3.B16; \
	VFMLA V1.S4, V4.S4, V3.S4; \
	FMUL4(4, 1, 1); \
	VORR V1.B16, V1.B16, V5.B16; \
	VFMLA V4.S4, V3.S4, V5.S4; \
	FADD4(3, 5, 25); \
	FCVTZS4(5, 2); \
	SSHR4_1(6, 5); \
	VSUB V6.S4, V5.S4, V5.S4; \
	VADD V29.S4, V6.S4, V6.S4; \
	VSHL $23, V6.S4, V6.S4; \
	VADD V29.S4, V5.S4, V5.S4; \
	VSHL $23, V5.S4, V5.S4; \
	FMUL4(3, 3, 6); \
	FMUL4(3, 3, 5); \
	FCMGT4(7, 0, 26); \
	VBIT V7.B16, V28.B16, V3.B16; \
	FCMGT4(7, 27, 0); \
	VBIT V7.B16, V30.B16, V3.B16; \
	FCMEQ4(7, 0, 0); \
	VBIF V7.B16, V0.B16, V3.B16

// func expAsm(n int, dst, src *float32)
TEXT ·expAsm(SB), NOSPLIT, $0-24
	MOVD n+0(FP), R0
	MOVD dst+8(FP), R1
	MOVD src+16(FP), R2
	LSR  $2, R0, R0
	CBZ  R0, expdone
	EXPCONSTS

exploop:
	VLD1.P 16(R2), [V0.S4]
	EXP_V0_TO_V3
	VST1.P [V3.S4], 16(R1)
	SUBS   $1, R0, R0
	BNE    exploop

expdone:
	RET

// func sigmoidAsm(n int, dst, src *float32)
TEXT ·sigmoidAsm(SB), NOSPLIT, $0-24
	MOVD n+0(FP), R0
	MOVD dst+8(FP), R1
	MOVD src+16(FP), R2
	LSR  $2, R0, R0
	CBZ  R0, sigdone
	EXPCONSTS
	CONST(0x80000000, V8)

sigloop:
	// 1/(1 + e^-x)
	VLD1.P 16(R2), [V0.S4]
	VEOR   V8.B16, V0.B16, V0.B16
	EXP_V0_TO_V3
	FADD4(3, 3, 25)
	FDIV4(3, 25, 3)
	VST1.P [V3.S4], 16(R1)
	SUBS   $1, R0, R0
	BNE    sigloop

sigdone:
	RET

// LOADTAIL loads the R4 (1 to 3) elements at R5 into the low lanes of V,
// which must hold the padding already; clobbers R5. DONE is a label
// unique to each use.
#define LOADTAIL(V, DONE) \
	VLD1.P 4(R5), V.S[0]; \
	CMP    $1, R4; \
	BEQ    DONE; \
	VLD1.P 4(R5), V.S[1]; \
	CMP    $2, R4; \
	BEQ    DONE; \
	VLD1   (R5), V.S[2]; \
DONE:

// STORETAIL stores the low R4 (1 to 3) lanes of V at R5; clobbers R5. DONE
// is a label unique to each use.
#define STORETAIL(V, DONE) \
	VST1.P V.S[0], 4(R5); \
	CMP    $1, R4; \
	BEQ    DONE; \
	VST1.P V.S[1], 4(R5); \
	CMP    $2, R4; \
	BEQ    DONE; \
	VST1   V.S[2], (R5); \
DONE:

// func softmaxRowAsm(x *float32, n int) (m, sum float32)
//
// Sets x[i] = e^(x[i]-m)/sum for i < n (n > 0), where m is the row's
// maximum and sum = Σ e^(x[i]-m), and returns m and sum. Lane j of the
// sums holds elements j, j+4, ...; the lanes are added in a fixed order,
// (0+1)+(2+3). Tail lanes past n are padded with −Inf, whose exponential
// adds exactly 0.
//
// Registers: R0 = x, R3 = full vectors, R4 = n mod 4, R6 = the tail.
TEXT ·softmaxRowAsm(SB), NOSPLIT, $0-24
	MOVD x+0(FP), R0
	MOVD n+8(FP), R1
	EXPCONSTS
	LSR  $2, R1, R3
	AND  $3, R1, R4
	ADD  R3<<4, R0, R6

	// Pass 1: the maximum.
	VORR V31.B16, V31.B16, V9.B16
	MOVD R0, R5
	MOVD R3, R2
	CBZ  R2, smaxtail

smaxloop:
	VLD1.P 16(R5), [V1.S4]
	FMAX4(9, 9, 1)
	SUBS   $1, R2, R2
	BNE    smaxloop

smaxtail:
	CBZ  R4, smaxreduce
	VORR V31.B16, V31.B16, V1.B16
	MOVD R6, R5
	LOADTAIL(V1, smaxtdone)
	FMAX4(9, 9, 1)

smaxreduce:
	FMAXV4(9, 9)
	FMOVS F9, m+16(FP)
	VDUP  V9.S[0], V9.S4

	// Pass 2: x = e^(x-m), summed.
	VEOR V10.B16, V10.B16, V10.B16
	MOVD R0, R5
	MOVD R3, R2
	CBZ  R2, sexptail

sexploop:
	VLD1   (R5), [V0.S4]
	FSUB4(0, 0, 9)
	EXP_V0_TO_V3
	VST1.P [V3.S4], 16(R5)
	FADD4(10, 10, 3)
	SUBS   $1, R2, R2
	BNE    sexploop

sexptail:
	CBZ  R4, ssum
	VORR V31.B16, V31.B16, V0.B16
	MOVD R6, R5
	LOADTAIL(V0, sexpldone)
	FSUB4(0, 0, 9)
	EXP_V0_TO_V3
	MOVD R6, R5
	STORETAIL(V3, sexpsdone)
	FADD4(10, 10, 3)

ssum:
	FADDP4(10, 10, 10)
	FADDP2S(10, 10)
	FMOVS F10, sum+20(FP)

	// Pass 3: x /= sum, as a multiply by 1/sum.
	VDUP V10.S[0], V10.S4
	FDIV4(8, 25, 10)
	MOVD R0, R5
	MOVD R3, R2
	CBZ  R2, sscaletail

sscaleloop:
	VLD1   (R5), [V0.S4]
	FMUL4(0, 0, 8)
	VST1.P [V0.S4], 16(R5)
	SUBS   $1, R2, R2
	BNE    sscaleloop

sscaletail:
	CBZ  R4, sdone
	MOVD R6, R5
	LOADTAIL(V0, sscldone)
	FMUL4(0, 0, 8)
	MOVD R6, R5
	STORETAIL(V0, sscsdone)

sdone:
	RET

// func softmaxBackRowAsm(p, d *float32, n int)
//
// Sets d[i] = p[i]·(d[i] - Σ_j p[j]·d[j]) for i < n: the gradient of a
// softmax row with probabilities p and incoming gradient d. Tail lanes
// past n are padded with zeros.
//
// Registers: R0 = p, R1 = d, R3 = full vectors, R4 = n mod 4, R6 and R8
// the tails of p and d.
TEXT ·softmaxBackRowAsm(SB), NOSPLIT, $0-24
	MOVD p+0(FP), R0
	MOVD d+8(FP), R1
	MOVD n+16(FP), R2
	LSR  $2, R2, R3
	AND  $3, R2, R4
	ADD  R3<<4, R0, R6
	ADD  R3<<4, R1, R8

	// The dot product.
	VEOR V10.B16, V10.B16, V10.B16
	MOVD R0, R5
	MOVD R1, R9
	MOVD R3, R2
	CBZ  R2, sdottail

sdotloop:
	VLD1.P 16(R5), [V0.S4]
	VLD1.P 16(R9), [V1.S4]
	VFMLA  V1.S4, V0.S4, V10.S4
	SUBS   $1, R2, R2
	BNE    sdotloop

sdottail:
	CBZ  R4, sdotsum
	VEOR V0.B16, V0.B16, V0.B16
	VEOR V1.B16, V1.B16, V1.B16
	MOVD R6, R5
	LOADTAIL(V0, sdtpdone)
	MOVD R8, R5
	LOADTAIL(V1, sdtddone)
	VFMLA V1.S4, V0.S4, V10.S4

sdotsum:
	FADDP4(10, 10, 10)
	FADDP2S(10, 10)
	VDUP V10.S[0], V9.S4

	// d = p·(d - dot)
	MOVD R0, R5
	MOVD R1, R9
	MOVD R3, R2
	CBZ  R2, sbacktail

sbackloop:
	VLD1.P 16(R5), [V1.S4]
	VLD1   (R9), [V0.S4]
	FSUB4(0, 0, 9)
	FMUL4(0, 0, 1)
	VST1.P [V0.S4], 16(R9)
	SUBS   $1, R2, R2
	BNE    sbackloop

sbacktail:
	CBZ  R4, sbdone
	MOVD R8, R5
	LOADTAIL(V0, sbtddone)
	MOVD R6, R5
	LOADTAIL(V1, sbtpdone)
	FSUB4(0, 0, 9)
	FMUL4(0, 0, 1)
	MOVD R8, R5
	STORETAIL(V0, sbtsdone)

sbdone:
	RET
