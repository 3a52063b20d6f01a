package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
)

// TestSeedForwardBind checks the pieces a checkpointed step is made of on
// y = x·Wᵀ + x (a residual, so x's gradient is a sum): Forward computes y
// and runs no backward step; Seed(y, dy) back-propagates dy, giving
// dW = dyᵀ·x and dx = dy·W + dy as computed here in float64; Bind makes the
// same machine run over other weights.
func TestSeedForwardBind(t *testing.T) {
	const N, In = 5, 4
	rng := rand.New(rand.NewPCG(3, 4))
	fill := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return d
	}
	g := NewGraph[float32](&Feed{B: 1, T: N})
	xd, w1, w2, dy := fill(N*In), fill(In*In), fill(In*In), fill(N*In)
	x := g.Param("x", []int{N, In}, xd, true)
	w := g.Param("w", []int{In, In}, w1, true)
	y := g.Add(g.Linear(x, w), x)
	m, err := g.Compile(g.Seed(y, dy), w, x)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	want := func(wd []float32) (yv, dw, dx []float64) {
		yv, dw, dx = make([]float64, N*In), make([]float64, In*In), make([]float64, N*In)
		for n := range N {
			for o := range In {
				s := float64(xd[n*In+o])
				for i := range In {
					s += float64(xd[n*In+i]) * float64(wd[o*In+i])
					dw[o*In+i] += float64(dy[n*In+o]) * float64(xd[n*In+i])
					dx[n*In+i] += float64(dy[n*In+o]) * float64(wd[o*In+i])
				}
				yv[n*In+o] = s
				dx[n*In+o] += float64(dy[n*In+o])
			}
		}
		return
	}
	near := func(what string, want []float64, got []float32) {
		t.Helper()
		if len(got) != len(want) {
			t.Fatalf("%s: %d values, want %d", what, len(got), len(want))
		}
		for i := range want {
			if math.Abs(want[i]-float64(got[i])) > 1e-5*(1+math.Abs(want[i])) {
				t.Fatalf("%s[%d] = %v, want %v", what, i, got[i], want[i])
			}
		}
	}
	for _, wd := range [][]float32{w1, w2} {
		if &wd[0] == &w2[0] {
			b, err := NewBinding(w, w2)
			if err != nil {
				t.Fatal(err)
			}
			if err := b.Bind(); err != nil {
				t.Fatal(err)
			}
		}
		yv, dw, dx := want(wd)
		if err := m.Forward(y); err != nil {
			t.Fatal(err)
		}
		got, err := Data[float32](y)
		if err != nil {
			t.Fatal(err)
		}
		near("forward y", yv, got)
		if m.Grads[0].Value() != nil && &wd[0] == &w1[0] {
			t.Fatal("Forward ran a backward step")
		}
		if _, err := m.Run(); err != nil {
			t.Fatal(err)
		}
		gw, err := m.Grad(0)
		if err != nil {
			t.Fatal(err)
		}
		gx, err := m.Grad(1)
		if err != nil {
			t.Fatal(err)
		}
		near("dW", dw, gw)
		near("dx", dx, gx)
	}
	if _, err := NewBinding(w, make([]float32, 3)); err == nil {
		t.Fatal("a binding of the wrong size was accepted")
	}
	if err := m.Forward(G.NewScalar(G.NewGraph(), G.Float32)); err == nil {
		t.Fatal("Forward to a node of another graph did not fail")
	}
}
