package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// Packed is a frozen 2-D weight (out×in) held in a compact form (NF4
// codes, bfloat16) that widens to float32 on demand. Widen must write
// out·in values and may be called concurrently by several graphs.
type Packed interface {
	Dims() (out, in int)
	Widen(dst []float32)
}

// scratch is a graph's one widening buffer: ops run one at a time, so every
// packed linear of a graph widens into the same memory, and only one
// module's weight is ever held in float32 at once.
type scratch[T Float] struct {
	w   []T
	f32 []float32 // staging for float64 graphs
}

func (s *scratch[T]) widen(p Packed) []T {
	o, i := p.Dims()
	n := o * i
	s.w = grow(s.w, n)
	if w, ok := any(s.w).([]float32); ok {
		p.Widen(w)
		return s.w
	}
	s.f32 = grow(s.f32, n)
	p.Widen(s.f32)
	for j, v := range s.f32 {
		s.w[j] = T(v)
	}
	return s.w
}

// packedLinear is linear with its weight widened from a Packed per use
// (forward, and backward when dx is needed) instead of read from a node.
// Inputs are x (and A, B with LoRA); the math is linear's, on the same
// widened values, so results equal a dense weight holding them bit for bit.
type packedLinear[T Float] struct {
	l *linear[T]
	w Packed
	s *scratch[T]
}

func (k *packedLinear[T]) name() string { return "Packed" + k.l.name() }

func (k *packedLinear[T]) full(in []tensor.Shape) []tensor.Shape {
	o, i := k.w.Dims()
	out := []tensor.Shape{in[0], {o, i}}
	return append(out, in[1:]...)
}

func (k *packedLinear[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if len(in) == 0 {
		return nil, fmt.Errorf("%s: no input", k.name())
	}
	return k.l.outShape(k.full(in))
}

// A PackedTable weight is widened in slabs of linearBlock values (see
// slabLogits and slabBack: the same sums as one product with the whole
// weight), any other Packed whole.
func (k *packedLinear[T]) forward(in [][]T, out []T) (float64, error) {
	t, ok := k.w.(PackedTable)
	if !ok {
		w := k.s.widen(k.w)
		return k.l.forward(append([][]T{in[0], w}, in[1:]...), out)
	}
	slabLogits(k.l.c, k.s, t, k.l.n, in[0], out, k.l.o, linearBlock)
	return 0, k.l.addLoRA(append([][]T{in[0], nil}, in[1:]...), out)
}

func (k *packedLinear[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	g = append([][]T{g[0], nil}, g[1:]...)
	t, ok := k.w.(PackedTable)
	if !ok {
		var w []T
		if g[0] != nil { // only dx reads the weight
			w = k.s.widen(k.w)
		}
		return k.l.backward(append([][]T{in[0], w}, in[1:]...), out, dy, g)
	}
	if g[0] != nil {
		slabBack(k.l.c, k.s, t, k.l.n, dy, g[0], k.l.in, linearBlock)
	}
	return k.l.loraBack(append([][]T{in[0], nil}, in[1:]...), dy, g)
}

func (k *packedLinear[T]) overwrites(int) bool { return true }

func (g *Graph[T]) packedScratch() *scratch[T] {
	if g.scratch == nil {
		g.scratch = &scratch[T]{}
	}
	return g.scratch
}

// PackedLinear is x·Wᵀ with W widened from w at each use.
func (g *Graph[T]) PackedLinear(x *G.Node, w Packed) *G.Node {
	return g.apply(&packedLinear[T]{l: &linear[T]{c: g.cores()}, w: w, s: g.packedScratch()}, 2, x)
}

// PackedLoRALinear is LoRALinear with W widened from w at each use.
func (g *Graph[T]) PackedLoRALinear(module string, x *G.Node, w Packed, a, b *G.Node, scale float64) *G.Node {
	l := &linear[T]{c: g.cores(), lora: true, scale: T(scale), feed: g.Feed, mask: module}
	n := g.apply(&packedLinear[T]{l: l, w: w, s: g.packedScratch()}, 2, x, a, b)
	g.LoRA[module] = &LoRAProbe[T]{l}
	return n
}

// PackedTable is a frozen V×H table (the token embedding, the head) in a
// compact form whose rows and column slabs widen separately, so that no op
// holds the whole table in float32: at a 128k vocabulary and hidden 2048
// it is 1 GB. WidenRows writes rows r0..r1 (row-major); WidenCols writes
// columns c0..c1 of every row (V×(c1-c0), row-major).
type PackedTable interface {
	Packed
	WidenRows(r0, r1 int, dst []float32)
	WidenCols(c0, c1 int, dst []float32)
}

// tableBlock is how many values a table widens at once (32 MB in float32).
// A variable so tests can cut small tables into several blocks.
var tableBlock = 1 << 23

// linearBlock is how many values a packed linear weight widens at once
// (4 MB in float32; a 2048×8192 weight is 64 MB). A variable for tests.
var linearBlock = 1 << 20

// quantBlock is the NF4 block (quant.BlockSize): column slabs of at least
// this many are cut at its multiples, so each slab widens whole blocks.
const quantBlock = 64

// spanEnd is the end of the part of 0..n starting at at, about size long.
// A last part of 8 or fewer is merged into this one: products that narrow
// take another gemm kernel (see engine/gemm), whose rounding may differ.
func spanEnd(at, n, size int) int {
	e := min(n, at+max(size, 16))
	if n-e <= 8 {
		e = n
	}
	return e
}

func (s *scratch[T]) rows(p PackedTable, r0, r1 int) []T {
	_, in := p.Dims()
	n := (r1 - r0) * in
	s.w = grow(s.w, n)
	if w, ok := any(s.w).([]float32); ok {
		p.WidenRows(r0, r1, w)
		return s.w
	}
	s.f32 = grow(s.f32, n)
	p.WidenRows(r0, r1, s.f32)
	for j, v := range s.f32 {
		s.w[j] = T(v)
	}
	return s.w
}

func (s *scratch[T]) cols(p PackedTable, c0, c1 int) []T {
	out, _ := p.Dims()
	n := out * (c1 - c0)
	s.w = grow(s.w, n)
	if w, ok := any(s.w).([]float32); ok {
		p.WidenCols(c0, c1, w)
		return s.w
	}
	s.f32 = grow(s.f32, n)
	p.WidenCols(c0, c1, s.f32)
	for j, v := range s.f32 {
		s.w[j] = T(v)
	}
	return s.w
}

// tableLogits writes x (rows×H) · Wᵀ into out (rows×V, row stride ldo),
// one block of vocabulary rows of W at a time. Each block is a set of
// whole columns of the product, computed by the same gemm kernel over the
// same k = H, so out equals one product with the whole W bit for bit.
func tableLogits[T Float](c kern.Cores, s *scratch[T], p PackedTable, rows int, x, out []T, ldo int) {
	slabLogits(c, s, p, rows, x, out, ldo, tableBlock)
}

// slabLogits is tableLogits widening about block values at a time.
func slabLogits[T Float](c kern.Cores, s *scratch[T], p PackedTable, rows int, x, out []T, ldo, block int) {
	v, h := p.Dims()
	for v0 := 0; v0 < v; {
		v1 := spanEnd(v0, v, block/h)
		kern.Gemm(c, false, true, rows, v1-v0, h, 1, x, h, s.rows(p, v0, v1), h, 0, out[v0:], ldo)
		v0 = v1
	}
}

// tableBack writes dy (rows×V) · W into dx (rows×H, row stride ldx), one
// slab of W's columns at a time: whole columns of dx, each summed over the
// full vocabulary as one product with the whole W sums it (cutting the
// vocabulary instead would change the order of the sums).
func tableBack[T Float](c kern.Cores, s *scratch[T], p PackedTable, rows int, dy, dx []T, ldx int) {
	slabBack(c, s, p, rows, dy, dx, ldx, tableBlock)
}

// slabBack is tableBack widening about block values at a time.
func slabBack[T Float](c kern.Cores, s *scratch[T], p PackedTable, rows int, dy, dx []T, ldx, block int) {
	v, h := p.Dims()
	size := block / v
	if size >= quantBlock {
		size -= size % quantBlock
	}
	for h0 := 0; h0 < h; {
		h1 := spanEnd(h0, h, size)
		kern.Gemm(c, false, false, rows, h1-h0, v, 1, dy, v, s.cols(p, h0, h1), h1-h0, 0, dx[h0:], ldx)
		h0 = h1
	}
}

// packedEmbed is embed reading rows of a PackedTable: the table is frozen,
// so there is no gradient. Its one input is a placeholder node (ops have
// inputs); the rows come from the feed's token ids.
type packedEmbed[T Float] struct {
	feed *Feed
	p    PackedTable
	row  []float32 // staging for float64 graphs
}

func (k *packedEmbed[T]) name() string { return "PackedEmbed" }

func (k *packedEmbed[T]) outShape([]tensor.Shape) (tensor.Shape, error) {
	_, h := k.p.Dims()
	return tensor.Shape{k.feed.N(), h}, nil
}

func (k *packedEmbed[T]) forward(_ [][]T, out []T) (float64, error) {
	if len(k.feed.Inputs) != k.feed.N() {
		return 0, fmt.Errorf("feed has %d inputs, want %d", len(k.feed.Inputs), k.feed.N())
	}
	v, h := k.p.Dims()
	for n, id := range k.feed.Inputs {
		if id < 0 || int(id) >= v {
			return 0, fmt.Errorf("token id %d at position %d outside vocabulary of %d", id, n, v)
		}
		dst := out[n*h : (n+1)*h]
		if d, ok := any(dst).([]float32); ok {
			k.p.WidenRows(int(id), int(id)+1, d)
			continue
		}
		k.row = grow(k.row, h)
		k.p.WidenRows(int(id), int(id)+1, k.row)
		for j, x := range k.row {
			dst[j] = T(x)
		}
	}
	return 0, nil
}

func (k *packedEmbed[T]) backward([][]T, []T, []T, [][]T) error { return nil }

// PackedEmbed looks up the feed's token ids in the frozen table p. name
// labels the op's placeholder input.
func (g *Graph[T]) PackedEmbed(name string, p PackedTable) *G.Node {
	anchor := g.Param(name, []int{1}, make([]T, 1), false)
	return g.apply(&packedEmbed[T]{feed: g.Feed, p: p}, 2, anchor)
}

// packedHead is x·Wᵀ for a frozen PackedTable W (the logits of a head held
// compactly), widened a block at a time forward and backward.
type packedHead[T Float] struct {
	c kern.Cores
	p PackedTable
	s *scratch[T]
}

func (k *packedHead[T]) name() string { return "PackedHead" }

func (k *packedHead[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2); err != nil {
		return nil, err
	}
	v, h := k.p.Dims()
	if in[0][1] != h {
		return nil, fmt.Errorf("%s: x %v and head %d×%d disagree on the hidden size", k.name(), in[0], v, h)
	}
	return tensor.Shape{in[0][0], v}, nil
}

func (k *packedHead[T]) forward(in [][]T, out []T) (float64, error) {
	v, h := k.p.Dims()
	tableLogits(k.c, k.s, k.p, len(in[0])/h, in[0], out, v)
	return 0, nil
}

func (k *packedHead[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	if g[0] != nil {
		_, h := k.p.Dims()
		tableBack(k.c, k.s, k.p, len(in[0])/h, dy, g[0], h)
	}
	return nil
}

func (k *packedHead[T]) overwrites(int) bool { return true }

// PackedHead is x·Wᵀ with the frozen table p as W, never widened whole.
func (g *Graph[T]) PackedHead(x *G.Node, p PackedTable) *G.Node {
	return g.apply(&packedHead[T]{c: g.cores(), p: p, s: g.packedScratch()}, 2, x)
}
