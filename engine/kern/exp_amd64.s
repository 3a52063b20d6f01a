//go:build amd64

#include "textflag.h"

// Vector float32 exponential and the row operations of softmax, 8 lanes
// with AVX2 and FMA (see exp.go for the method and its error bounds).
// Constants are stored as rows of 8 copies so that instructions can take
// them as memory operands. Rows whose length is not a multiple of 8 end in
// a masked load and store (VMASKMOVPS), so every element goes through the
// same lanes arithmetic wherever it sits.

// Rows, in order: log2(e), ln2 in two parts (C1, C2), the polynomial
// P0..P5, 1, the largest x with finite e^x, the smallest x with a normal
// e^x, +Inf, the exponent bias 127, the sign bit, -Inf.
DATA expc<>+0(SB)/4, $0x3fb8aa3b
DATA expc<>+4(SB)/4, $0x3fb8aa3b
DATA expc<>+8(SB)/4, $0x3fb8aa3b
DATA expc<>+12(SB)/4, $0x3fb8aa3b
DATA expc<>+16(SB)/4, $0x3fb8aa3b
DATA expc<>+20(SB)/4, $0x3fb8aa3b
DATA expc<>+24(SB)/4, $0x3fb8aa3b
DATA expc<>+28(SB)/4, $0x3fb8aa3b
DATA expc<>+32(SB)/4, $0x3f318000
DATA expc<>+36(SB)/4, $0x3f318000
DATA expc<>+40(SB)/4, $0x3f318000
DATA expc<>+44(SB)/4, $0x3f318000
DATA expc<>+48(SB)/4, $0x3f318000
DATA expc<>+52(SB)/4, $0x3f318000
DATA expc<>+56(SB)/4, $0x3f318000
DATA expc<>+60(SB)/4, $0x3f318000
DATA expc<>+64(SB)/4, $0xb95e8083
DATA expc<>+68(SB)/4, $0xb95e8083
DATA expc<>+72(SB)/4, $0xb95e8083
DATA expc<>+76(SB)/4, $0xb95e8083
DATA expc<>+80(SB)/4, $0xb95e8083
DATA expc<>+84(SB)/4, $0xb95e8083
DATA expc<>+88(SB)/4, $0xb95e8083
DATA expc<>+92(SB)/4, $0xb95e8083
DATA expc<>+96(SB)/4, $0x39506967
DATA expc<>+100(SB)/4, $0x39506967
DATA expc<>+104(SB)/4, $0x39506967
DATA expc<>+108(SB)/4, $0x39506967
DATA expc<>+112(SB)/4, $0x39506967
DATA expc<>+116(SB)/4, $0x39506967
DATA expc<>+120(SB)/4, $0x39506967
DATA expc<>+124(SB)/4, $0x39506967
DATA expc<>+128(SB)/4, $0x3ab743ce
DATA expc<>+132(SB)/4, $0x3ab743ce
DATA expc<>+136(SB)/4, $0x3ab743ce
DATA expc<>+140(SB)/4, $0x3ab743ce
DATA expc<>+144(SB)/4, $0x3ab743ce
DATA expc<>+148(SB)/4, $0x3ab743ce
DATA expc<>+152(SB)/4, $0x3ab743ce
DATA expc<>+156(SB)/4, $0x3ab743ce
DATA expc<>+160(SB)/4, $0x3c088908
DATA expc<>+164(SB)/4, $0x3c088908
DATA expc<>+168(SB)/4, $0x3c088908
DATA expc<>+172(SB)/4, $0x3c088908
DATA expc<>+176(SB)/4, $0x3c088908
DATA expc<>+180(SB)/4, $0x3c088908
DATA expc<>+184(SB)/4, $0x3c088908
DATA expc<>+188(SB)/4, $0x3c088908
DATA expc<>+192(SB)/4, $0x3d2aa9c1
DATA expc<>+196(SB)/4, $0x3d2aa9c1
DATA expc<>+200(SB)/4, $0x3d2aa9c1
DATA expc<>+204(SB)/4, $0x3d2aa9c1
DATA expc<>+208(SB)/4, $0x3d2aa9c1
DATA expc<>+212(SB)/4, $0x3d2aa9c1
DATA expc<>+216(SB)/4, $0x3d2aa9c1
DATA expc<>+220(SB)/4, $0x3d2aa9c1
DATA expc<>+224(SB)/4, $0x3e2aaaaa
DATA expc<>+228(SB)/4, $0x3e2aaaaa
DATA expc<>+232(SB)/4, $0x3e2aaaaa
DATA expc<>+236(SB)/4, $0x3e2aaaaa
DATA expc<>+240(SB)/4, $0x3e2aaaaa
DATA expc<>+244(SB)/4, $0x3e2aaaaa
DATA expc<>+248(SB)/4, $0x3e2aaaaa
DATA expc<>+252(SB)/4, $0x3e2aaaaa
DATA expc<>+256(SB)/4, $0x3f000000
DATA expc<>+260(SB)/4, $0x3f000000
DATA expc<>+264(SB)/4, $0x3f000000
DATA expc<>+268(SB)/4, $0x3f000000
DATA expc<>+272(SB)/4, $0x3f000000
DATA expc<>+276(SB)/4, $0x3f000000
DATA expc<>+280(SB)/4, $0x3f000000
DATA expc<>+284(SB)/4, $0x3f000000
DATA expc<>+288(SB)/4, $0x3f800000
DATA expc<>+292(SB)/4, $0x3f800000
DATA expc<>+296(SB)/4, $0x3f800000
DATA expc<>+300(SB)/4, $0x3f800000
DATA expc<>+304(SB)/4, $0x3f800000
DATA expc<>+308(SB)/4, $0x3f800000
DATA expc<>+312(SB)/4, $0x3f800000
DATA expc<>+316(SB)/4, $0x3f800000
DATA expc<>+320(SB)/4, $0x42b17217
DATA expc<>+324(SB)/4, $0x42b17217
DATA expc<>+328(SB)/4, $0x42b17217
DATA expc<>+332(SB)/4, $0x42b17217
DATA expc<>+336(SB)/4, $0x42b17217
DATA expc<>+340(SB)/4, $0x42b17217
DATA expc<>+344(SB)/4, $0x42b17217
DATA expc<>+348(SB)/4, $0x42b17217
DATA expc<>+352(SB)/4, $0xc2aeac4f
DATA expc<>+356(SB)/4, $0xc2aeac4f
DATA expc<>+360(SB)/4, $0xc2aeac4f
DATA expc<>+364(SB)/4, $0xc2aeac4f
DATA expc<>+368(SB)/4, $0xc2aeac4f
DATA expc<>+372(SB)/4, $0xc2aeac4f
DATA expc<>+376(SB)/4, $0xc2aeac4f
DATA expc<>+380(SB)/4, $0xc2aeac4f
DATA expc<>+384(SB)/4, $0x7f800000
DATA expc<>+388(SB)/4, $0x7f800000
DATA expc<>+392(SB)/4, $0x7f800000
DATA expc<>+396(SB)/4, $0x7f800000
DATA expc<>+400(SB)/4, $0x7f800000
DATA expc<>+404(SB)/4, $0x7f800000
DATA expc<>+408(SB)/4, $0x7f800000
DATA expc<>+412(SB)/4, $0x7f800000
DATA expc<>+416(SB)/4, $0x0000007f
DATA expc<>+420(SB)/4, $0x0000007f
DATA expc<>+424(SB)/4, $0x0000007f
DATA expc<>+428(SB)/4, $0x0000007f
DATA expc<>+432(SB)/4, $0x0000007f
DATA expc<>+436(SB)/4, $0x0000007f
DATA expc<>+440(SB)/4, $0x0000007f
DATA expc<>+444(SB)/4, $0x0000007f
DATA expc<>+448(SB)/4, $0x80000000
DATA expc<>+452(SB)/4, $0x80000000
DATA expc<>+456(SB)/4, $0x80000000
DATA expc<>+460(SB)/4, $0x80000000
DATA expc<>+464(SB)/4, $0x80000000
DATA expc<>+468(SB)/4, $0x80000000
DATA expc<>+472(SB)/4, $0x80000000
DATA expc<>+476(SB)/4, $0x80000000
DATA expc<>+480(SB)/4, $0xff800000
DATA expc<>+484(SB)/4, $0xff800000
DATA expc<>+488(SB)/4, $0xff800000
DATA expc<>+492(SB)/4, $0xff800000
DATA expc<>+496(SB)/4, $0xff800000
DATA expc<>+500(SB)/4, $0xff800000
DATA expc<>+504(SB)/4, $0xff800000
DATA expc<>+508(SB)/4, $0xff800000
GLOBL expc<>(SB), RODATA|NOPTR, $512

// Eight all-ones lanes then eight zero lanes: the mask keeping the first r
// lanes starts at tailmask<>+(8-r)*4.
DATA tailmask<>+0(SB)/4, $0xffffffff
DATA tailmask<>+4(SB)/4, $0xffffffff
DATA tailmask<>+8(SB)/4, $0xffffffff
DATA tailmask<>+12(SB)/4, $0xffffffff
DATA tailmask<>+16(SB)/4, $0xffffffff
DATA tailmask<>+20(SB)/4, $0xffffffff
DATA tailmask<>+24(SB)/4, $0xffffffff
DATA tailmask<>+28(SB)/4, $0xffffffff
DATA tailmask<>+32(SB)/4, $0x00000000
DATA tailmask<>+36(SB)/4, $0x00000000
DATA tailmask<>+40(SB)/4, $0x00000000
DATA tailmask<>+44(SB)/4, $0x00000000
DATA tailmask<>+48(SB)/4, $0x00000000
DATA tailmask<>+52(SB)/4, $0x00000000
DATA tailmask<>+56(SB)/4, $0x00000000
DATA tailmask<>+60(SB)/4, $0x00000000
GLOBL tailmask<>(SB), RODATA|NOPTR, $64

// EXP_Y0_TO_Y3 sets Y3 = e^Y0 lane by lane, clobbering Y1, Y2, Y4-Y7:
// clamp x to [lo, hi], n = round(x·log2e), r = x - n·C1 - n·C2,
// y = P(r)·r² + r + 1, y·2^(n>>1)·2^(n-(n>>1)) (each factor a normal float);
// then x > hi gives +Inf, x < lo gives 0 and NaN stays NaN.
#define EXP_Y0_TO_Y3 \
	VMINPS       expc<>+320(SB), Y0, Y1 \
	VMAXPS       expc<>+352(SB), Y1, Y1 \
	VMULPS       expc<>+0(SB), Y1, Y2 \
	VROUNDPS     $0, Y2, Y2 \
	VFNMADD231PS expc<>+32(SB), Y2, Y1 \
	VFNMADD231PS expc<>+64(SB), Y2, Y1 \
	VMOVUPS      expc<>+96(SB), Y3 \
	VFMADD213PS  expc<>+128(SB), Y1, Y3 \
	VFMADD213PS  expc<>+160(SB), Y1, Y3 \
	VFMADD213PS  expc<>+192(SB), Y1, Y3 \
	VFMADD213PS  expc<>+224(SB), Y1, Y3 \
	VFMADD213PS  expc<>+256(SB), Y1, Y3 \
	VMULPS       Y1, Y1, Y4 \
	VFMADD213PS  Y1, Y4, Y3 \
	VADDPS       expc<>+288(SB), Y3, Y3 \
	VCVTPS2DQ    Y2, Y5 \
	VPSRAD       $1, Y5, Y6 \
	VPSUBD       Y6, Y5, Y5 \
	VPADDD       expc<>+416(SB), Y6, Y6 \
	VPSLLD       $23, Y6, Y6 \
	VPADDD       expc<>+416(SB), Y5, Y5 \
	VPSLLD       $23, Y5, Y5 \
	VMULPS       Y6, Y3, Y3 \
	VMULPS       Y5, Y3, Y3 \
	VCMPPS       $0x1e, expc<>+320(SB), Y0, Y7 \
	VBLENDVPS    Y7, expc<>+384(SB), Y3, Y3 \
	VCMPPS       $0x11, expc<>+352(SB), Y0, Y7 \
	VANDNPS      Y3, Y7, Y3 \
	VCMPPS       $0x03, Y0, Y0, Y7 \
	VBLENDVPS    Y7, Y0, Y3, Y3

// HSUM_Y_TO_X0 sets X0's lane 0 to the sum of Y's 8 lanes (X is Y's low
// half), in a fixed order; clobbers X1.
#define HSUM_Y_TO_X0(Y, X) \
	VEXTRACTF128 $1, Y, X1 \
	VADDPS       X1, X, X0 \
	VPERMILPS    $0x4e, X0, X1 \
	VADDPS       X1, X0, X0 \
	VPERMILPS    $0xb1, X0, X1 \
	VADDPS       X1, X0, X0

// TAILMASK loads into Y15 the mask of the first (CX & 7) lanes; clobbers AX.
#define TAILMASK \
	MOVQ CX, AX \
	ANDQ $7, AX \
	NEGQ AX \
	LEAQ tailmask<>+32(SB), R8 \
	VMOVUPS (R8)(AX*4), Y15

// func expAsm(n int, dst, src *float32)
TEXT ·expAsm(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	SHRQ $3, CX
	JZ   expdone

exploop:
	VMOVUPS (SI), Y0
	EXP_Y0_TO_Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     exploop

expdone:
	VZEROUPPER
	RET

// func sigmoidAsm(n int, dst, src *float32)
TEXT ·sigmoidAsm(SB), NOSPLIT, $0-24
	MOVQ    n+0(FP), CX
	MOVQ    dst+8(FP), DI
	MOVQ    src+16(FP), SI
	SHRQ    $3, CX
	JZ      sigdone
	VMOVUPS expc<>+288(SB), Y8

sigloop:
	// 1/(1 + e^-x)
	VMOVUPS (SI), Y0
	VXORPS  expc<>+448(SB), Y0, Y0
	EXP_Y0_TO_Y3
	VADDPS  Y8, Y3, Y3
	VDIVPS  Y3, Y8, Y3
	VMOVUPS Y3, (DI)
	ADDQ    $32, SI
	ADDQ    $32, DI
	DECQ    CX
	JNZ     sigloop

sigdone:
	VZEROUPPER
	RET

// func softmaxRowAsm(x *float32, n int) (m, sum float32)
//
// Sets x[i] = e^(x[i]-m)/sum for i < n (n > 0), where m is the row's
// maximum and sum = Σ e^(x[i]-m), and returns m and sum. Lane j of the
// sums holds elements j, j+8, ...; the lanes are added in a fixed order.
TEXT ·softmaxRowAsm(SB), NOSPLIT, $0-24
	MOVQ x+0(FP), SI
	MOVQ n+8(FP), CX
	TAILMASK
	MOVQ CX, DX
	ANDQ $-8, DX           // elements in full vectors
	LEAQ (SI)(DX*4), DI    // the tail

	// Pass 1: the maximum.
	VMOVUPS expc<>+480(SB), Y9
	MOVQ    SI, R9
	MOVQ    DX, BX
	SHRQ    $3, BX
	JZ      smaxtail

smaxloop:
	VMAXPS (R9), Y9, Y9
	ADDQ   $32, R9
	DECQ   BX
	JNZ    smaxloop

smaxtail:
	VMASKMOVPS (DI), Y15, Y1
	VBLENDVPS  Y15, Y1, Y9, Y1 // masked-off lanes keep the running max
	VMAXPS     Y1, Y9, Y9
	VEXTRACTF128 $1, Y9, X1
	VMAXPS     X1, X9, X9
	VPERMILPS  $0x4e, X9, X1
	VMAXPS     X1, X9, X9
	VPERMILPS  $0xb1, X9, X1
	VMAXPS     X1, X9, X9
	VMOVSS     X9, m+16(FP)
	VBROADCASTSS X9, Y9

	// Pass 2: x = e^(x-m), summed.
	VXORPS Y10, Y10, Y10
	MOVQ   SI, R9
	MOVQ   DX, BX
	SHRQ   $3, BX
	JZ     sexptail

sexploop:
	VMOVUPS (R9), Y0
	VSUBPS  Y9, Y0, Y0
	EXP_Y0_TO_Y3
	VMOVUPS Y3, (R9)
	VADDPS  Y3, Y10, Y10
	ADDQ    $32, R9
	DECQ    BX
	JNZ     sexploop

sexptail:
	VMASKMOVPS (DI), Y15, Y0
	VSUBPS     Y9, Y0, Y0
	EXP_Y0_TO_Y3
	VANDPS     Y15, Y3, Y3
	VMASKMOVPS Y3, Y15, (DI)
	VADDPS     Y3, Y10, Y10
	HSUM_Y_TO_X0(Y10, X10)
	VMOVSS     X0, sum+20(FP)

	// Pass 3: x /= sum, as a multiply by 1/sum.
	VMOVUPS      expc<>+288(SB), Y1
	VBROADCASTSS X0, Y0
	VDIVPS       Y0, Y1, Y8
	MOVQ         SI, R9
	MOVQ         DX, BX
	SHRQ         $3, BX
	JZ           sscaletail

sscaleloop:
	VMULPS  (R9), Y8, Y0
	VMOVUPS Y0, (R9)
	ADDQ    $32, R9
	DECQ    BX
	JNZ     sscaleloop

sscaletail:
	VMASKMOVPS (DI), Y15, Y0
	VMULPS     Y0, Y8, Y0
	VMASKMOVPS Y0, Y15, (DI)
	VZEROUPPER
	RET

// func softmaxBackRowAsm(p, d *float32, n int)
//
// Sets d[i] = p[i]·(d[i] - Σ_j p[j]·d[j]) for i < n: the gradient of a
// softmax row with probabilities p and incoming gradient d.
TEXT ·softmaxBackRowAsm(SB), NOSPLIT, $0-24
	MOVQ p+0(FP), SI
	MOVQ d+8(FP), DI
	MOVQ n+16(FP), CX
	TAILMASK
	MOVQ CX, DX
	ANDQ $-8, DX
	LEAQ (SI)(DX*4), R10   // tails
	LEAQ (DI)(DX*4), R11

	// The dot product.
	VXORPS Y10, Y10, Y10
	MOVQ   SI, R8
	MOVQ   DI, R9
	MOVQ   DX, BX
	SHRQ   $3, BX
	JZ     sdottail

sdotloop:
	VMOVUPS     (R8), Y0
	VFMADD231PS (R9), Y0, Y10
	ADDQ        $32, R8
	ADDQ        $32, R9
	DECQ        BX
	JNZ         sdotloop

sdottail:
	VMASKMOVPS  (R10), Y15, Y0
	VMASKMOVPS  (R11), Y15, Y1
	VFMADD231PS Y1, Y0, Y10
	HSUM_Y_TO_X0(Y10, X10)
	VBROADCASTSS X0, Y9

	// d = p·(d - dot)
	MOVQ SI, R8
	MOVQ DI, R9
	MOVQ DX, BX
	SHRQ $3, BX
	JZ   sbacktail

sbackloop:
	VMOVUPS (R9), Y0
	VSUBPS  Y9, Y0, Y0
	VMULPS  (R8), Y0, Y0
	VMOVUPS Y0, (R9)
	ADDQ    $32, R8
	ADDQ    $32, R9
	DECQ    BX
	JNZ     sbackloop

sbacktail:
	VMASKMOVPS (R11), Y15, Y0
	VMASKMOVPS (R10), Y15, Y1
	VSUBPS     Y9, Y0, Y0
	VMULPS     Y1, Y0, Y0
	VMASKMOVPS Y0, Y15, (R11)
	VZEROUPPER
	RET
