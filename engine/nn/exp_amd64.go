//go:build amd64

package nn

import "golang.org/x/sys/cpu"

var haveExpAsm = cpu.X86.HasAVX2 && cpu.X86.HasFMA

// expAsm sets dst[i] = e^src[i] for i < n, n a multiple of 8 (exp_amd64.s).
//
//go:noescape
func expAsm(n int, dst, src *float32)

// sigmoidAsm sets dst[i] = 1/(1 + e^−src[i]) for i < n, n a multiple of 8.
//
//go:noescape
func sigmoidAsm(n int, dst, src *float32)
