package kern

import "math"

// Fast float32 exponential for softmax (attention, cross-entropy) and SiLU.
//
// The method is Cephes's expf: n = round(x·log₂e), r = x − n·ln2 (ln2 split
// in two so that n·C1 is exact), e^r from a degree-7 polynomial, and the
// result scaled by 2ⁿ built in the exponent bits. Its maximum relative error
// over the normal range is about 1e-7 (TestExpf measures it against
// math.Exp). Results that would be subnormal (x < ln of the smallest normal
// float32, about −87.34) are 0, x above ln(MaxFloat32) gives +Inf, and NaN
// stays NaN. On amd64 with AVX2 and FMA, slices go through an 8-lane
// assembly kernel (exp_amd64.s); every element, tails included, takes the
// same path, so results do not depend on a slice's length or alignment.

const (
	expLog2e = 1.44269504088896341
	expC1    = 0.693359375
	expC2    = -2.12194440e-4
	expP0    = 1.9875691500e-4
	expP1    = 1.3981999507e-3
	expP2    = 8.3334519073e-3
	expP3    = 4.1665795894e-2
	expP4    = 1.6666665459e-1
	expP5    = 5.0000001201e-1
)

var (
	// expHi is the largest float32 whose exponential is finite.
	expHi = math.Float32frombits(0x42B17217) // 88.72283
	// expLo is the smallest float32 whose exponential is a normal float32.
	expLo = math.Float32frombits(0xC2AEAC4F) // -87.33654
)

// expf is the portable scalar version of the kernel.
func expf(x float32) float32 {
	switch {
	case x != x:
		return x
	case x > expHi:
		return float32(math.Inf(1))
	case x < expLo:
		return 0
	}
	n := float32(math.RoundToEven(float64(x * expLog2e)))
	r := x - n*expC1
	r -= n * expC2
	y := float32(expP0)
	y = y*r + expP1
	y = y*r + expP2
	y = y*r + expP3
	y = y*r + expP4
	y = y*r + expP5
	y = y*(r*r) + r
	y += 1
	// 2ⁿ as two factors, each a normal float32 for n in [−126, 128].
	ni := int32(n)
	n1 := ni >> 1
	n2 := ni - n1
	return y * math.Float32frombits(uint32(n1+127)<<23) * math.Float32frombits(uint32(n2+127)<<23)
}

// expInto sets dst[i] = e^src[i]; dst and src may be the same slice.
func expInto(dst, src []float32) {
	src = src[:len(dst)]
	if !haveExpAsm || noExpAsm {
		for i, v := range src {
			dst[i] = expf(v)
		}
		return
	}
	n8 := len(dst) / 8 * 8
	if n8 > 0 {
		expAsm(n8, &dst[0], &src[0])
	}
	if n8 < len(dst) {
		var buf [8]float32
		copy(buf[:], src[n8:])
		expAsm(8, &buf[0], &buf[0])
		copy(dst[n8:], buf[:])
	}
}

// sigmoidInto sets dst[i] = 1/(1 + e^−src[i]); dst and src may be the
// same slice.
func sigmoidInto(dst, src []float32) {
	src = src[:len(dst)]
	if !haveExpAsm || noExpAsm {
		for i, v := range src {
			dst[i] = 1 / (1 + expf(-v))
		}
		return
	}
	n8 := len(dst) / 8 * 8
	if n8 > 0 {
		sigmoidAsm(n8, &dst[0], &src[0])
	}
	if n8 < len(dst) {
		var buf [8]float32
		copy(buf[:], src[n8:])
		sigmoidAsm(8, &buf[0], &buf[0])
		copy(dst[n8:], buf[:])
	}
}

// noExpAsm forces the portable path (tests).
var noExpAsm = false

// sigmoidSlice sets dst[i] = σ(src[i]) in T.
func sigmoidSlice[T Float](dst, src []T) {
	switch d := any(dst).(type) {
	case []float32:
		sigmoidInto(d, any(src).([]float32))
	case []float64:
		s := any(src).([]float64)
		for i, v := range s[:len(d)] {
			d[i] = 1 / (1 + math.Exp(-v))
		}
	}
}

// softmaxRow sets x to softmax(x) in place and returns the row's maximum m
// and Σ e^(x[i]−m) (for a log-sum-exp). float32 rows take the vector
// kernel; float64 rows (gradient checks) use math.Exp and float64 sums.
func softmaxRow[T Float](x []T) (m, sum float64) {
	if len(x) == 0 {
		return 0, 0
	}
	switch x := any(x).(type) {
	case []float32:
		if haveExpAsm && !noExpAsm {
			m, s := softmaxRowAsm(&x[0], len(x))
			return float64(m), float64(s)
		}
		mx := x[0]
		for _, v := range x[1:] {
			if v > mx {
				mx = v
			}
		}
		var s float32
		for i, v := range x {
			x[i] = expf(v - mx)
			s += x[i]
		}
		inv := 1 / s
		for i := range x {
			x[i] *= inv
		}
		return float64(mx), float64(s)
	case []float64:
		mx := x[0]
		for _, v := range x[1:] {
			mx = max(mx, v)
		}
		var s float64
		for i, v := range x {
			x[i] = math.Exp(v - mx)
			s += x[i]
		}
		inv := 1 / s
		for i := range x {
			x[i] *= inv
		}
		return mx, s
	}
	return 0, 0
}

// softmaxBackRow sets d[i] = p[i]·(d[i] − Σ_j p[j]·d[j]): the gradient of
// a softmax row with output p, given the gradient d of its output.
func softmaxBackRow[T Float](p, d []T) {
	d = d[:len(p)]
	if len(p) == 0 {
		return
	}
	if p32, ok := any(p).([]float32); ok && haveExpAsm && !noExpAsm {
		softmaxBackRowAsm(&p32[0], &any(d).([]float32)[0], len(p))
		return
	}
	var dot T
	for j, v := range p {
		dot += v * d[j]
	}
	for j, v := range p {
		d[j] = v * (d[j] - dot)
	}
}
