//go:build !amd64 && !arm64

package gemm

// archKernel returns the architecture-specific kernel; there is none here.
func archKernel() *microKernel { return nil }

// archDot returns the architecture's dot-product kernel; there is none here.
func archDot() func(k int, a []float32, lda int, b []float32, ldb int, out *[12]float32) {
	return nil
}
