//go:build arm64

package kern

import "golang.org/x/sys/cpu"

// NEON is architectural on ARMv8-A; the check keeps the portable path as
// the fallback should a platform report otherwise.
var haveExpAsm = cpu.ARM64.HasASIMD

// expAsm sets dst[i] = e^src[i] for i < n, n a multiple of 8 (exp_arm64.s).
//
//go:noescape
func expAsm(n int, dst, src *float32)

// sigmoidAsm sets dst[i] = 1/(1 + e^−src[i]) for i < n, n a multiple of 8.
//
//go:noescape
func sigmoidAsm(n int, dst, src *float32)

// softmaxRowAsm sets x[i] = e^(x[i]-m)/sum for i < n (n > 0) and returns
// the row maximum m and sum = Σ e^(x[i]-m).
//
//go:noescape
func softmaxRowAsm(x *float32, n int) (m, sum float32)

// softmaxBackRowAsm sets d[i] = p[i]·(d[i] − Σ_j p[j]·d[j]) for i < n.
//
//go:noescape
func softmaxBackRowAsm(p, d *float32, n int)
