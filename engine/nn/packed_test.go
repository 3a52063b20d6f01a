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
// the packed op runs linear's math on the widened copy, whole or (a
// PackedTable) in slabs of W's rows forward and of its columns backward,
// under 64 columns wide and cut at multiples of 64.
func TestPackedLinearEqualsDense(t *testing.T) {
	defer func(b int) { linearBlock = b }(linearBlock)
	for _, tc := range []struct {
		name          string
		B, T, H, O, r int
		block         int // linearBlock; 0: a Packed that widens whole
	}{
		{"whole", 2, 3, 8, 6, 2, 0},
		{"one slab", 2, 3, 8, 6, 2, 1 << 20},
		{"narrow slabs", 2, 9, 96, 150, 4, 3000},
		{"aligned slabs", 1, 40, 200, 150, 3, 150 * 70},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.block > 0 {
				linearBlock = tc.block
			}
			packedLinearEqualsDense(t, tc.B, tc.T, tc.H, tc.O, tc.r, tc.block > 0)
		})
	}
}

func packedLinearEqualsDense(t *testing.T, B, T, H, O, r int, table bool) {
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
	var uses, widest int
	w1, w2 := packed(H, H, &uses), packed(O, H, &uses)
	asPacked := func(p roundBF16) Packed {
		if table {
			return tableBF16{p, &widest}
		}
		return p
	}
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
			y = g.PackedLinear(x, asPacked(w1))
			y = g.PackedLoRALinear("l1", y, asPacked(w1), A1, B1, 2)
			y = g.PackedLoRALinear("l2", y, asPacked(w2), A2, B2, 0.5)
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
	if !table && uses != 6 {
		t.Errorf("weights widened %d times in one step, want 6", uses)
	}
	if table && (uses != 0 || widest > max(linearBlock, 16*max(H, O))+8*max(H, O)) {
		t.Errorf("%d whole widenings, %d values widened at once: want slabs of about %d", uses, widest, linearBlock)
	}
}

// tableBF16 is roundBF16 with the row and column widening of PackedTable;
// widest records the most values one call widened.
type tableBF16 struct {
	roundBF16
	widest *int
}

func (p tableBF16) WidenRows(r0, r1 int, dst []float32) {
	*p.widest = max(*p.widest, (r1-r0)*p.i)
	for j, b := range p.bits[r0*p.i : r1*p.i] {
		dst[j] = math.Float32frombits(uint32(b) << 16)
	}
}

func (p tableBF16) WidenCols(c0, c1 int, dst []float32) {
	*p.widest = max(*p.widest, p.o*(c1-c0))
	w := c1 - c0
	for r := range p.o {
		for j := range w {
			dst[r*w+j] = math.Float32frombits(uint32(p.bits[r*p.i+c0+j]) << 16)
		}
	}
}

// TestPackedTableEqualsDense: a token embedding and head held as a
// PackedTable (tied, and untied), widened a few hundred values at a time,
// give bit-identical loss, logits and gradients to dense nodes holding the
// same values, with the whole head (PackedHead) and in chunks
// (PackedHeadLoss), and never widen more than a block.
func TestPackedTableEqualsDense(t *testing.T) {
	defer func(b int) { tableBlock = b }(tableBlock)
	// Vocabulary blocks of 53 rows; column slabs of 16, the last one 24
	// (an 8-wide rest is merged).
	tableBlock = 3010
	const B, T, H, V = 2, 20, 56, 301
	rng := rand.New(rand.NewPCG(3, 4))
	vals := func(n int, s float64) []float32 {
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * s)
		}
		return d
	}
	var widest int
	table := func() tableBF16 {
		p := tableBF16{roundBF16{o: V, i: H, bits: make([]uint16, V*H), uses: new(int)}, &widest}
		for j := range p.bits {
			p.bits[j] = uint16(math.Float32bits(float32(rng.NormFloat64())) >> 16)
		}
		return p
	}
	emb, head := table(), table()
	ws := vals(H*H, 0.2)
	feed := &Feed{B: B, T: T, Inputs: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range feed.Targets {
		feed.Inputs[i], feed.Targets[i] = int32(rng.IntN(V)), int32(rng.IntN(V))
	}
	feed.Targets[5] = -100
	type result struct {
		loss          float64
		logits, grad  []float32
		widest, chunk int
	}
	run := func(packed, tied bool, chunk int) result {
		widest = 0
		g := NewGraph[float32](feed)
		w := g.Param("w", []int{H, H}, append([]float32(nil), ws...), true)
		hd := head
		if tied {
			hd = emb
		}
		dense := func(name string, p tableBF16) *G.Node {
			d := make([]float32, V*H)
			p.Widen(d)
			return g.Param(name, []int{V, H}, d, false)
		}
		var x, e *G.Node
		if packed {
			x = g.PackedEmbed("embed", emb)
		} else {
			e = dense("embed", emb)
			x = g.Embed(e)
		}
		x = g.Linear(x, w)
		var loss, logits *G.Node
		switch {
		case packed && chunk > 0:
			loss = g.PackedHeadLoss(x, hd, chunk)
		case packed:
			logits = g.PackedHead(x, hd)
		default:
			hn := e
			if !tied {
				hn = dense("head", hd)
			}
			if chunk > 0 {
				loss = g.HeadLoss(x, hn, chunk)
			} else {
				logits = g.Linear(x, hn)
			}
		}
		if logits != nil {
			loss = g.CrossEntropy(logits)
		}
		m, err := g.Compile(loss, w)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		l, err := m.Run()
		if err != nil {
			t.Fatal(err)
		}
		r := result{loss: l, widest: widest}
		if logits != nil {
			d, _ := Data[float32](logits)
			r.logits = append([]float32(nil), d...)
		}
		d, err := m.Grad(0)
		if err != nil {
			t.Fatal(err)
		}
		r.grad = append([]float32(nil), d...)
		return r
	}
	same := func(a, b []float32) bool {
		if len(a) != len(b) {
			return false
		}
		for i := range a {
			if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
				return false
			}
		}
		return true
	}
	for _, c := range []struct {
		tied  bool
		chunk int
	}{{false, 0}, {true, 0}, {false, 7}, {true, 16}, {true, 64}} {
		d, p := run(false, c.tied, c.chunk), run(true, c.tied, c.chunk)
		if d.loss != p.loss {
			t.Errorf("tied %v chunk %d: loss %v packed, %v dense", c.tied, c.chunk, p.loss, d.loss)
		}
		if !same(d.logits, p.logits) {
			t.Errorf("tied %v chunk %d: logits differ", c.tied, c.chunk)
		}
		if !same(d.grad, p.grad) {
			t.Errorf("tied %v chunk %d: gradient of w differs", c.tied, c.chunk)
		}
		if p.widest > max(tableBlock, 16*V)+8*V {
			t.Errorf("tied %v chunk %d: %d values widened at once, block is %d", c.tied, c.chunk, p.widest, tableBlock)
		}
		if p.widest == 0 {
			t.Errorf("tied %v chunk %d: the packed table was never widened", c.tied, c.chunk)
		}
	}
}
