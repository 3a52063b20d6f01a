//go:build !amd64

package gemm

// archKernel returns the architecture-specific kernel; there is none here.
func archKernel() *microKernel { return nil }
