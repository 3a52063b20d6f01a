package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
)

// TestHeadLossEqualsUnchunked compares HeadLoss with Linear + CrossEntropy
// on the same values: the loss and dx bit for bit at every chunk size
// (one row, uneven, whole, larger than the batch), with ignored targets;
// dW (a trainable head) to float32 rounding.
func TestHeadLossEqualsUnchunked(t *testing.T) {
	for _, sz := range []struct{ B, T, H, V int }{{2, 5, 16, 37}, {2, 40, 300, 700}} {
		headLossCase(t, sz.B, sz.T, sz.H, sz.V)
	}
}

func headLossCase(t *testing.T, B, T, H, V int) {
	rng := rand.New(rand.NewPCG(9, 10))
	vals := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64())
		}
		return d
	}
	xs, ws := vals(B*T*H), vals(V*H)
	feed := &Feed{B: B, T: T, Inputs: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range feed.Targets {
		feed.Targets[i] = int32(rng.IntN(V))
	}
	feed.Targets[3], feed.Targets[7] = -100, -100
	run := func(chunk int, trainW bool) (float64, []float32, []float32) {
		g := NewGraph[float32](feed)
		x := g.Param("x", []int{B * T, H}, append([]float32(nil), xs...), true)
		w := g.Param("w", []int{V, H}, append([]float32(nil), ws...), trainW)
		var loss *G.Node
		if chunk == 0 {
			loss = g.CrossEntropy(g.Linear(x, w))
		} else {
			loss = g.HeadLoss(x, w, chunk)
		}
		wrt := []*G.Node{x}
		if trainW {
			wrt = append(wrt, w)
		}
		m, err := g.Compile(loss, wrt...)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		l, err := m.Run()
		if err != nil {
			t.Fatal(err)
		}
		dx, _ := m.Grad(0)
		var dw []float32
		if trainW {
			d, _ := m.Grad(1)
			dw = append(dw, d...)
		}
		return l, append([]float32(nil), dx...), dw
	}
	for _, trainW := range []bool{false, true} {
		l0, dx0, dw0 := run(0, trainW)
		for _, chunk := range []int{1, 3, 7, 32, B * T, 2 * B * T} {
			l, dx, dw := run(chunk, trainW)
			if l != l0 {
				t.Fatalf("chunk %d: loss %v, unchunked %v", chunk, l, l0)
			}
			for i := range dx0 {
				if math.Float32bits(dx[i]) != math.Float32bits(dx0[i]) {
					t.Fatalf("chunk %d: dx[%d] = %v, unchunked %v", chunk, i, dx[i], dx0[i])
				}
			}
			for i := range dw0 {
				if d := math.Abs(float64(dw[i] - dw0[i])); d > 1e-6*(1+math.Abs(float64(dw0[i]))) {
					t.Fatalf("chunk %d: dW[%d] = %v, unchunked %v", chunk, i, dw[i], dw0[i])
				}
			}
		}
	}
}
