//go:build arm64

package kern

import (
	"math"
	"testing"
)

// TestExpNEONMatchesPortable: the NEON kernels replay expf's operations
// as the Go compiler builds them for arm64 (it fuses y*r + p and
// x − n*c into FMADD/FMSUB, as the kernel's VFMLA/VFMLS do), so exp and
// sigmoid agree with the portable path bit for bit, special values
// included.
func TestExpNEONMatchesPortable(t *testing.T) {
	if !haveExpAsm {
		t.Skip("no NEON")
	}
	xs := sweep(-110, 110, 1<<20)
	inf, nan := float32(math.Inf(1)), float32(math.NaN())
	xs = append(xs, 0, float32(math.Copysign(0, -1)), inf, -inf, nan, expHi, expLo,
		math.Nextafter32(expHi, 100), math.Nextafter32(expLo, -100))
	run := func(portable bool, f func(dst, src []float32)) []float32 {
		defer func(old bool) { noExpAsm = old }(noExpAsm)
		noExpAsm = portable
		out := make([]float32, len(xs))
		f(out, xs)
		return out
	}
	for _, k := range []struct {
		name string
		f    func(dst, src []float32)
	}{{"exp", expInto}, {"sigmoid", sigmoidInto}} {
		want, got := run(true, k.f), run(false, k.f)
		for i := range xs {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) && !(got[i] != got[i] && want[i] != want[i]) {
				t.Fatalf("%s(%v): NEON %v, portable %v", k.name, xs[i], got[i], want[i])
			}
		}
	}
}
