package gemm

// kernelGeneric is the portable micro-kernel, mr×nr = 4×4 (16 accumulators
// plus 8 operands: they stay in registers on architectures with 32 FP
// registers such as arm64). It expects a packed A micro-panel (rsa = 1,
// csa = 4).
func kernelGeneric(kc int, a []float32, rsa, csa int, b, c []float32, ldc int, alpha, beta float32) {
	if rsa != 1 || csa != 4 {
		panic("gemm: generic kernel needs a packed A panel")
	}
	var (
		c00, c01, c02, c03 float32
		c10, c11, c12, c13 float32
		c20, c21, c22, c23 float32
		c30, c31, c32, c33 float32
	)
	a = a[:4*kc]
	b = b[:4*kc]
	for l := 0; l < kc; l++ {
		aa := a[4*l : 4*l+4 : 4*l+4]
		bb := b[4*l : 4*l+4 : 4*l+4]
		a0, a1, a2, a3 := aa[0], aa[1], aa[2], aa[3]
		b0, b1, b2, b3 := bb[0], bb[1], bb[2], bb[3]
		c00 += a0 * b0
		c01 += a0 * b1
		c02 += a0 * b2
		c03 += a0 * b3
		c10 += a1 * b0
		c11 += a1 * b1
		c12 += a1 * b2
		c13 += a1 * b3
		c20 += a2 * b0
		c21 += a2 * b1
		c22 += a2 * b2
		c23 += a2 * b3
		c30 += a3 * b0
		c31 += a3 * b1
		c32 += a3 * b2
		c33 += a3 * b3
	}
	store4(c[0*ldc:0*ldc+4], c00, c01, c02, c03, alpha, beta)
	store4(c[1*ldc:1*ldc+4], c10, c11, c12, c13, alpha, beta)
	store4(c[2*ldc:2*ldc+4], c20, c21, c22, c23, alpha, beta)
	store4(c[3*ldc:3*ldc+4], c30, c31, c32, c33, alpha, beta)
}

// store4 writes alpha·x + beta·c to one row of a tile (c is not read when
// beta == 0).
func store4(c []float32, x0, x1, x2, x3, alpha, beta float32) {
	c = c[:4]
	if beta == 0 {
		c[0] = alpha * x0
		c[1] = alpha * x1
		c[2] = alpha * x2
		c[3] = alpha * x3
		return
	}
	c[0] = alpha*x0 + beta*c[0]
	c[1] = alpha*x1 + beta*c[1]
	c[2] = alpha*x2 + beta*c[2]
	c[3] = alpha*x3 + beta*c[3]
}
