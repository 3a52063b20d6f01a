package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
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

func (k *packedLinear[T]) forward(in [][]T, out []T) (float64, error) {
	w := k.s.widen(k.w)
	return k.l.forward(append([][]T{in[0], w}, in[1:]...), out)
}

func (k *packedLinear[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	var w []T
	if g[0] != nil { // only dx reads the weight
		w = k.s.widen(k.w)
	}
	return k.l.backward(append([][]T{in[0], w}, in[1:]...), out, dy, append([][]T{g[0], nil}, g[1:]...))
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
