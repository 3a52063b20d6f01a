//go:build amd64

#include "textflag.h"

// Cephes-style expf on 8 lanes (see exp.go). Constants are stored as rows
// of 8 copies so that every instruction can take them as a memory operand.
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
GLOBL expc<>(SB), RODATA|NOPTR, $480

// func expAsm(n int, dst, src *float32)
TEXT ·expAsm(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	SHRQ $3, CX
	JZ   expdone

exploop:
	VMOVUPS    (SI), Y0
	// Y0 = x. Clamp to [lo, hi], n = round(x·log2e), r = x - n·ln2.
	VMINPS     expc<>+320(SB), Y0, Y1
	VMAXPS     expc<>+352(SB), Y1, Y1
	VMULPS     expc<>+0(SB), Y1, Y2
	VROUNDPS   $0, Y2, Y2
	VFNMADD231PS expc<>+32(SB), Y2, Y1
	VFNMADD231PS expc<>+64(SB), Y2, Y1
	// y = poly(r)·r² + r + 1
	VMOVUPS    expc<>+96(SB), Y3
	VFMADD213PS expc<>+128(SB), Y1, Y3
	VFMADD213PS expc<>+160(SB), Y1, Y3
	VFMADD213PS expc<>+192(SB), Y1, Y3
	VFMADD213PS expc<>+224(SB), Y1, Y3
	VFMADD213PS expc<>+256(SB), Y1, Y3
	VMULPS     Y1, Y1, Y4
	VFMADD213PS Y1, Y4, Y3
	VADDPS     expc<>+288(SB), Y3, Y3
	// y·2^n1·2^n2 with n1 = n>>1, n2 = n-n1 (each factor a normal float).
	VCVTPS2DQ  Y2, Y5
	VPSRAD     $1, Y5, Y6
	VPSUBD     Y6, Y5, Y5
	VPADDD     expc<>+416(SB), Y6, Y6
	VPSLLD     $23, Y6, Y6
	VPADDD     expc<>+416(SB), Y5, Y5
	VPSLLD     $23, Y5, Y5
	VMULPS     Y6, Y3, Y3
	VMULPS     Y5, Y3, Y3
	// x > hi: +Inf; x < lo: 0; NaN: x.
	VCMPPS     $0x1e, expc<>+320(SB), Y0, Y7
	VBLENDVPS  Y7, expc<>+384(SB), Y3, Y3
	VCMPPS     $0x11, expc<>+352(SB), Y0, Y7
	VANDNPS    Y3, Y7, Y3
	VCMPPS     $0x03, Y0, Y0, Y7
	VBLENDVPS  Y7, Y0, Y3, Y3
	VMOVUPS    Y3, (DI)
	ADDQ       $32, SI
	ADDQ       $32, DI
	DECQ       CX
	JNZ        exploop

expdone:
	VZEROUPPER
	RET

// func sigmoidAsm(n int, dst, src *float32)
TEXT ·sigmoidAsm(SB), NOSPLIT, $0-24
	MOVQ n+0(FP), CX
	MOVQ dst+8(FP), DI
	MOVQ src+16(FP), SI
	SHRQ $3, CX
	JZ   sigdone
	VMOVUPS expc<>+288(SB), Y8

sigloop:
	// e^-x, then 1/(1 + e^-x).
	VMOVUPS    (SI), Y0
	VXORPS     expc<>+448(SB), Y0, Y0
	// Y0 = x. Clamp to [lo, hi], n = round(x·log2e), r = x - n·ln2.
	VMINPS     expc<>+320(SB), Y0, Y1
	VMAXPS     expc<>+352(SB), Y1, Y1
	VMULPS     expc<>+0(SB), Y1, Y2
	VROUNDPS   $0, Y2, Y2
	VFNMADD231PS expc<>+32(SB), Y2, Y1
	VFNMADD231PS expc<>+64(SB), Y2, Y1
	// y = poly(r)·r² + r + 1
	VMOVUPS    expc<>+96(SB), Y3
	VFMADD213PS expc<>+128(SB), Y1, Y3
	VFMADD213PS expc<>+160(SB), Y1, Y3
	VFMADD213PS expc<>+192(SB), Y1, Y3
	VFMADD213PS expc<>+224(SB), Y1, Y3
	VFMADD213PS expc<>+256(SB), Y1, Y3
	VMULPS     Y1, Y1, Y4
	VFMADD213PS Y1, Y4, Y3
	VADDPS     expc<>+288(SB), Y3, Y3
	// y·2^n1·2^n2 with n1 = n>>1, n2 = n-n1 (each factor a normal float).
	VCVTPS2DQ  Y2, Y5
	VPSRAD     $1, Y5, Y6
	VPSUBD     Y6, Y5, Y5
	VPADDD     expc<>+416(SB), Y6, Y6
	VPSLLD     $23, Y6, Y6
	VPADDD     expc<>+416(SB), Y5, Y5
	VPSLLD     $23, Y5, Y5
	VMULPS     Y6, Y3, Y3
	VMULPS     Y5, Y3, Y3
	// x > hi: +Inf; x < lo: 0; NaN: x.
	VCMPPS     $0x1e, expc<>+320(SB), Y0, Y7
	VBLENDVPS  Y7, expc<>+384(SB), Y3, Y3
	VCMPPS     $0x11, expc<>+352(SB), Y0, Y7
	VANDNPS    Y3, Y7, Y3
	VCMPPS     $0x03, Y0, Y0, Y7
	VBLENDVPS  Y7, Y0, Y3, Y3
	VADDPS     Y8, Y3, Y3
	VDIVPS     Y3, Y8, Y3
	VMOVUPS    Y3, (DI)
	ADDQ       $32, SI
	ADDQ       $32, DI
	DECQ       CX
	JNZ        sigloop

sigdone:
	VZEROUPPER
	RET
