package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
)

// roundBF16 is a toy compact form for the test: weights stored as bfloat16
// bits (engine/quant has the real ones; nn cannot import it).
type roundBF16 struct {
	o, i int
	bits []uint16
	uses *int
}

func (p roundBF16) Dims() (int, int) { return p.o, p.i }
func (p roundBF16) Widen(dst []float32) {
	*p.uses++
	for j, b := range p.bits {
		dst[j] = math.Float32frombits(uint32(b) << 16)
	}
}

// TestPackedLinearEqualsDense builds the same two-layer LoRA graph twice,
// once with dense weight nodes and once with packed weights holding the
// same values, and requires bit-identical loss and gradients (x, A, B):
// the packed op runs linear's math on the widened copy.
func TestPackedLinearEqualsDense(t *testing.T) {
	const B, T, H, O, r = 2, 3, 8, 6, 2
	rng := rand.New(rand.NewPCG(7, 8))
	vals := func(n int) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * 0.5)
		}
		return d
	}
	xs, a1, b1, a2, b2 := vals(B*T*H), vals(r*H), vals(H*r), vals(r*H), vals(O*r)
	packed := func(o, i int, uses *int) roundBF16 {
		p := roundBF16{o: o, i: i, bits: make([]uint16, o*i), uses: uses}
		for j := range p.bits {
			p.bits[j] = uint16(math.Float32bits(float32(rng.NormFloat64()*0.3)) >> 16)
		}
		return p
	}
	var uses int
	w1, w2 := packed(H, H, &uses), packed(O, H, &uses)
	feed := &Feed{B: B, T: T, Inputs: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range feed.Targets {
		feed.Targets[i] = int32(rng.IntN(O))
	}
	run := func(usePacked bool) (float64, [][]float32) {
		g := NewGraph[float32](feed)
		cp := func(d []float32) []float32 { return append([]float32(nil), d...) }
		x := g.Param("x", []int{B * T, H}, cp(xs), true)
		A1, B1 := g.Param("a1", []int{r, H}, cp(a1), true), g.Param("b1", []int{H, r}, cp(b1), true)
		A2, B2 := g.Param("a2", []int{r, H}, cp(a2), true), g.Param("b2", []int{O, r}, cp(b2), true)
		var y *G.Node
		if usePacked {
			y = g.PackedLinear(x, w1)
			y = g.PackedLoRALinear("l1", y, w1, A1, B1, 2)
			y = g.PackedLoRALinear("l2", y, w2, A2, B2, 0.5)
		} else {
			dense := func(name string, p roundBF16) *G.Node {
				d := make([]float32, p.o*p.i)
				p.Widen(d)
				return g.Param(name, []int{p.o, p.i}, d, false)
			}
			d1 := dense("w1", w1)
			y = g.Linear(x, d1)
			y = g.LoRALinear("l1", y, d1, A1, B1, 2)
			y = g.LoRALinear("l2", y, dense("w2", w2), A2, B2, 0.5)
		}
		wrt := []*G.Node{x, A1, B1, A2, B2}
		m, err := g.Compile(g.CrossEntropy(y), wrt...)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		loss, err := m.Run()
		if err != nil {
			t.Fatal(err)
		}
		var grads [][]float32
		for i := range wrt {
			d, err := m.Grad(i)
			if err != nil {
				t.Fatal(err)
			}
			grads = append(grads, append([]float32(nil), d...))
		}
		return loss, grads
	}
	l0, g0 := run(false)
	uses = 0
	l1, g1 := run(true)
	if l0 != l1 {
		t.Fatalf("loss %v packed, %v dense", l1, l0)
	}
	for i := range g0 {
		for j := range g0[i] {
			if math.Float32bits(g0[i][j]) != math.Float32bits(g1[i][j]) {
				t.Fatalf("gradient %d[%d]: %v packed, %v dense", i, j, g1[i][j], g0[i][j])
			}
		}
	}
	// Three forward widenings and three backward ones (each op needs dx).
	if uses != 6 {
		t.Errorf("weights widened %d times in one step, want 6", uses)
	}
}
