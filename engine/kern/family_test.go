package kern

import (
	"math"
	"math/rand/v2"
	"testing"
)

func rnd64(rng *rand.Rand, n int) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = rng.NormFloat64()
	}
	return s
}

func dot64(a, b []float64) float64 {
	var s float64
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}

// fdCheck compares the analytic gradient g of f at x with central
// differences at every element.
func fdCheck(t *testing.T, name string, x, g []float64, f func() float64) {
	t.Helper()
	const h = 1e-6
	for i := range x {
		v := x[i]
		x[i] = v + h
		fp := f()
		x[i] = v - h
		fm := f()
		x[i] = v
		want := (fp - fm) / (2 * h)
		if math.Abs(g[i]-want) > 1e-6*math.Max(1, math.Abs(want)) {
			t.Fatalf("%s[%d]: analytic %.9g, finite difference %.9g", name, i, g[i], want)
		}
	}
}

// TestAttentionWindowScale checks the sliding window and the explicit
// scale against a direct softmax over the visible keys (forward), and the
// backward pass against finite differences, for windows shorter than,
// equal to and longer than T, with segments and blocks that cut them.
func TestAttentionWindowScale(t *testing.T) {
	defer func(b int) { AttnBlock = b }(AttnBlock)
	AttnBlock = 3
	rng := rand.New(rand.NewPCG(5, 5))
	for _, tc := range []struct {
		window int
		scale  float64
		seg    bool
	}{{1, 0, false}, {3, 0.3, false}, {4, 0, true}, {9, 0.7, false}, {20, 0, false}} {
		a := Attn{B: 2, T: 9, NH: 4, NKV: 2, D: 4, Window: tc.window, Scale: tc.scale}
		if tc.seg {
			a.Seg = []int32{0, 0, 0, 0, 0, 1, 1, 1, 1, 0, 0, 1, 1, 1, 1, 1, 1, 1}
		}
		scale := tc.scale
		if scale == 0 {
			scale = 1 / math.Sqrt(float64(a.D))
		}
		N := a.B * a.T
		q, k, v := rnd64(rng, N*a.NH*a.D), rnd64(rng, N*a.NKV*a.D), rnd64(rng, N*a.NKV*a.D)
		dout := rnd64(rng, len(q))
		out, P := make([]float64, len(q)), make([]float64, a.B*a.NH*a.T*a.T)
		Attention(Cores(2), a, q, k, v, out, P)
		// direct: query i of row b sees key j ≤ i with i−j < window, same segment
		for b := range a.B {
			for h := range a.NH {
				g := h / (a.NH / a.NKV)
				for i := range a.T {
					var s []float64
					var js []int
					for j := 0; j <= i; j++ {
						if i-j >= tc.window || (a.Seg != nil && a.Seg[b*a.T+j] != a.Seg[b*a.T+i]) {
							continue
						}
						var d float64
						for x := range a.D {
							d += q[(b*a.T+i)*a.NH*a.D+h*a.D+x] * k[(b*a.T+j)*a.NKV*a.D+g*a.D+x]
						}
						s = append(s, d*scale)
						js = append(js, j)
					}
					m := math.Inf(-1)
					for _, x := range s {
						m = math.Max(m, x)
					}
					var z float64
					for n := range s {
						s[n] = math.Exp(s[n] - m)
						z += s[n]
					}
					for x := range a.D {
						var o float64
						for n, j := range js {
							o += s[n] / z * v[(b*a.T+j)*a.NKV*a.D+g*a.D+x]
						}
						got := out[(b*a.T+i)*a.NH*a.D+h*a.D+x]
						if math.Abs(got-o) > 1e-12 {
							t.Fatalf("window %d: out[b%d h%d i%d] = %v, want %v", tc.window, b, h, i, got, o)
						}
					}
				}
			}
		}
		dq, dk, dv := make([]float64, len(q)), make([]float64, len(k)), make([]float64, len(v))
		ds := make([]float64, AttnScratchLen(Cores(2), a))
		AttentionBack(Cores(2), a, q, k, v, P, dout, dq, dk, dv, ds)
		loss := func() float64 {
			o, p := make([]float64, len(q)), make([]float64, len(P))
			Attention(Cores(2), a, q, k, v, o, p)
			return dot64(o, dout)
		}
		fdCheck(t, "dq", q, dq, loss)
		fdCheck(t, "dk", k, dk, loss)
		fdCheck(t, "dv", v, dv, loss)
	}
}

// TestFamilyKernelGradients checks GeGLU, Bias and Scale backward passes
// against finite differences, and GeGLU's forward against its formula.
func TestFamilyKernelGradients(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	c := Cores(2)
	n := 300
	g, u, dy := rnd64(rng, n), rnd64(rng, n), rnd64(rng, n)
	for i := range g {
		g[i] *= 3 // reach gelu's tails
	}
	y, th := make([]float64, n), make([]float64, n)
	GeGLU(c, g, u, y, th)
	for i := range g {
		x := g[i]
		want := 0.5 * x * (1 + math.Tanh(math.Sqrt(2/math.Pi)*(x+0.044715*x*x*x))) * u[i]
		if math.Abs(y[i]-want) > 1e-14 {
			t.Fatalf("GeGLU(%v) = %v, want %v", x, y[i], want)
		}
	}
	dg, du := make([]float64, n), make([]float64, n)
	GeGLUBack(c, g, u, th, dy, dg, du)
	geglu := func() float64 {
		o, tt := make([]float64, n), make([]float64, n)
		GeGLU(c, g, u, o, tt)
		return dot64(o, dy)
	}
	fdCheck(t, "GeGLU dg", g, dg, geglu)
	fdCheck(t, "GeGLU du", u, du, geglu)

	rows, w := 150, 7 // more than one RowChunk
	x, b, dyb := rnd64(rng, rows*w), rnd64(rng, w), rnd64(rng, rows*w)
	db := make([]float64, w)
	BiasBack(c, dyb, db, make([]float64, RMSNormPartLen(rows, w)))
	fdCheck(t, "Bias db", b, db, func() float64 {
		o := make([]float64, len(x))
		Bias(c, x, b, o)
		return dot64(o, dyb)
	})
	ys := make([]float64, len(x))
	Scale(c, x, ys, 2.5)
	for i := range x {
		if ys[i] != 2.5*x[i] {
			t.Fatalf("Scale[%d] = %v, want %v", i, ys[i], 2.5*x[i])
		}
	}
}

// TestRopeTableFreq checks that the default inverse frequencies give
// RopeTable's tables exactly.
func TestRopeTableFreq(t *testing.T) {
	for _, theta := range []float64{10000, 500000} {
		c0, s0 := RopeTable(33, 16, theta)
		c1, s1 := RopeTableFreq(33, 16, RopeInvFreq(16, theta))
		for i := range c0 {
			if c0[i] != c1[i] || s0[i] != s1[i] {
				t.Fatalf("theta %g: entry %d differs", theta, i)
			}
		}
	}
}
