package kern

import (
	"math"
	"math/rand/v2"
	"testing"
)

// expPaths runs f once per exp implementation available here.
func expPaths(t *testing.T, f func(t *testing.T)) {
	t.Run("portable", func(t *testing.T) {
		defer func(old bool) { noExpAsm = old }(noExpAsm)
		noExpAsm = true
		f(t)
	})
	if haveExpAsm {
		t.Run("avx2", f)
	}
}

// sweep returns n evenly spaced float32 values over [lo, hi] plus every
// float32 in [-2, 2] at a stride of 256 ulps (about 8M values).
func sweep(lo, hi float32, n int) []float32 {
	xs := make([]float32, 0, n+1<<23)
	for i := range n {
		xs = append(xs, lo+(hi-lo)*float32(i)/float32(n-1))
	}
	for b := math.Float32bits(2); b > 0; b -= 256 {
		f := math.Float32frombits(b)
		xs = append(xs, f, -f)
	}
	return xs
}

func TestExpfAccuracy(t *testing.T) {
	xs := sweep(expLo, expHi, 1<<22)
	expPaths(t, func(t *testing.T) {
		got := make([]float32, len(xs))
		expInto(got, xs)
		var worst float64
		var at float32
		for i, x := range xs {
			want := math.Exp(float64(x))
			if rel := math.Abs(float64(got[i])-want) / want; rel > worst {
				worst, at = rel, x
			}
		}
		t.Logf("max relative error %.3g at x = %v over %d points", worst, at, len(xs))
		if worst > 1e-7 {
			t.Errorf("max relative error %.3g at x = %v, want <= 1e-7", worst, at)
		}
	})
}

func TestExpfSpecialValues(t *testing.T) {
	inf := float32(math.Inf(1))
	nan := float32(math.NaN())
	next := func(x float32, dir float64) float32 { return math.Nextafter32(x, float32(dir)) }
	cases := []struct {
		x    float32
		want float32 // NaN: want NaN; -1: a finite positive value
	}{
		{0, 1},
		{float32(math.Copysign(0, -1)), 1},
		{inf, inf},
		{-inf, 0},
		{nan, nan},
		{89, inf},
		{1e30, inf},
		{next(expHi, 100), inf},
		{expHi, -1},
		{expLo, -1},
		{next(expLo, -100), 0},
		{-88, 0},
		{-104, 0},
		{-1e30, 0},
	}
	expPaths(t, func(t *testing.T) {
		for _, c := range cases {
			got := make([]float32, 1)
			expInto(got, []float32{c.x})
			switch {
			case c.want != c.want:
				if got[0] == got[0] {
					t.Errorf("exp(%v) = %v, want NaN", c.x, got[0])
				}
			case c.want == -1:
				if got[0] <= 0 || math.IsInf(float64(got[0]), 0) {
					t.Errorf("exp(%v) = %v, want finite positive", c.x, got[0])
				}
				want := math.Exp(float64(c.x))
				if rel := math.Abs(float64(got[0])-want) / want; rel > 1e-7 {
					t.Errorf("exp(%v) = %v, want %v (relative error %.3g)", c.x, got[0], want, rel)
				}
			case got[0] != c.want:
				t.Errorf("exp(%v) = %v, want %v", c.x, got[0], c.want)
			}
		}
		got := []float32{0}
		expInto(got, []float32{expLo})
		if float64(got[0]) < 0x1p-126 {
			t.Errorf("exp(expLo) = %v is not a normal float32", got[0])
		}
	})
}

// TestExpfPositionIndependent checks that an element's result does not
// depend on where it sits in a slice (vector body or tail) or on aliasing.
func TestExpfPositionIndependent(t *testing.T) {
	expPaths(t, func(t *testing.T) {
		for n := range 21 {
			xs := make([]float32, n)
			for i := range xs {
				xs[i] = float32(i)*1.37 - 9.1
			}
			got := make([]float32, n)
			expInto(got, xs)
			inPlace := append([]float32(nil), xs...)
			expInto(inPlace, inPlace)
			sig := make([]float32, n)
			sigmoidInto(sig, xs)
			for i, x := range xs {
				one, s := []float32{0}, []float32{0}
				expInto(one, []float32{x})
				sigmoidInto(s, []float32{x})
				if got[i] != one[0] || inPlace[i] != one[0] || sig[i] != s[0] {
					t.Fatalf("n=%d element %d: exp %v / in place %v / alone %v; sigmoid %v / alone %v", n, i, got[i], inPlace[i], one[0], sig[i], s[0])
				}
			}
		}
	})
}

func TestSigmoid(t *testing.T) {
	xs := sweep(-100, 100, 1<<20)
	expPaths(t, func(t *testing.T) {
		got := make([]float32, len(xs))
		sigmoidInto(got, xs)
		var worst float64
		for i, x := range xs {
			want := 1 / (1 + math.Exp(-float64(x)))
			if rel := math.Abs(float64(got[i])-want) / want; rel > worst && want > 0x1p-126 {
				worst = rel
			}
		}
		t.Logf("max relative error %.3g", worst)
		if worst > 3e-7 {
			t.Errorf("max relative error %.3g, want <= 3e-7", worst)
		}
		inf, nan := float32(math.Inf(1)), float32(math.NaN())
		s := make([]float32, 5)
		sigmoidInto(s, []float32{inf, -inf, nan, 200, -200})
		if s[0] != 1 || s[1] != 0 || s[2] == s[2] || s[3] != 1 || s[4] != 0 {
			t.Errorf("σ(+Inf, -Inf, NaN, 200, -200) = %v, want [1 0 NaN 1 0]", s)
		}
	})
}

func BenchmarkExp(b *testing.B) {
	xs := sweep(-20, 0, 1<<14)[:1<<14]
	dst := make([]float32, len(xs))
	b.Run("math.Exp", func(b *testing.B) {
		for b.Loop() {
			for i, x := range xs {
				dst[i] = float32(math.Exp(float64(x)))
			}
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
	b.Run("expInto", func(b *testing.B) {
		for b.Loop() {
			expInto(dst, xs)
		}
		b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*len(xs)), "ns/value")
	})
}

// TestSoftmaxRow compares the float32 row kernels with float64 references
// for lengths around the vector width, including rows with a masked tail.
func TestSoftmaxRow(t *testing.T) {
	rng := rand.New(rand.NewPCG(4, 4))
	expPaths(t, func(t *testing.T) {
		for _, n := range []int{1, 2, 7, 8, 9, 15, 16, 17, 31, 64, 100, 256} {
			x := make([]float32, n)
			d := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64() * 8)
				d[i] = float32(rng.NormFloat64())
			}
			ref := make([]float64, n)
			for i, v := range x {
				ref[i] = float64(v)
			}
			wm, ws := softmaxRow(ref)
			got := append([]float32(nil), x...)
			m, s := softmaxRow(got)
			if m != wm || math.Abs(s-ws) > 1e-6*ws {
				t.Fatalf("n=%d: max %v sum %v, want %v %v", n, m, s, wm, ws)
			}
			// x−m is rounded to float32, so a probability carries that
			// difference's relative error (about 1e-6 for |x−m| ~ 16).
			for i := range got {
				if diff := math.Abs(float64(got[i]) - ref[i]); diff > 2e-6*math.Max(ref[i], 1e-4) {
					t.Fatalf("n=%d: p[%d] = %v, want %v", n, i, got[i], ref[i])
				}
			}
			// Backward against float64 on the same probabilities.
			p64 := make([]float64, n)
			d64 := make([]float64, n)
			for i := range got {
				p64[i], d64[i] = float64(got[i]), float64(d[i])
			}
			softmaxBackRow(p64, d64)
			softmaxBackRow(got, d)
			for i := range d {
				if diff := math.Abs(float64(d[i]) - d64[i]); diff > 1e-6*math.Max(1, math.Abs(d64[i])) {
					t.Fatalf("n=%d: dS[%d] = %v, want %v", n, i, d[i], d64[i])
				}
			}
		}
	})
}
