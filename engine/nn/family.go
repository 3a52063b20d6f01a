package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// Ops that model families add to the Llama block, each a thin wrapper of
// its kern kernel.

// bias is x + b on every row (x N×O, b O).
type bias[T Float] struct {
	c    kern.Cores
	part []T
}

func (k *bias[T]) name() string { return "Bias" }
func (k *bias[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 1); err != nil {
		return nil, err
	}
	if in[0][1] != in[1][0] {
		return nil, fmt.Errorf("Bias: x %v and bias %v disagree", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (k *bias[T]) forward(in [][]T, out []T) (float64, error) {
	kern.Bias(k.c, in[0], in[1], out)
	return 0, nil
}
func (k *bias[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	if g[0] != nil {
		copy(g[0], dy)
	}
	if g[1] != nil {
		k.part = grow(k.part, kern.RMSNormPartLen(len(dy)/len(in[1]), len(in[1])))
		kern.BiasBack(k.c, dy, g[1], k.part)
	}
	return nil
}
func (k *bias[T]) overwrites(int) bool { return true }

// scale is s·x.
type scale[T Float] struct {
	c kern.Cores
	s T
}

func (k *scale[T]) name() string { return "Scale" }
func (k *scale[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("Scale: %d inputs, want 1", len(in))
	}
	return in[0].Clone(), nil
}
func (k *scale[T]) forward(in [][]T, out []T) (float64, error) {
	kern.Scale(k.c, in[0], out, k.s)
	return 0, nil
}
func (k *scale[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	kern.Scale(k.c, dy, g[0], k.s)
	return nil
}
func (k *scale[T]) overwrites(int) bool { return true }

// geglu is gelu_tanh(g)·u.
type geglu[T Float] struct {
	c  kern.Cores
	th []T
}

func (k *geglu[T]) name() string { return "GeGLU" }
func (k *geglu[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 2); err != nil {
		return nil, err
	}
	if !in[0].Eq(in[1]) {
		return nil, fmt.Errorf("GeGLU: gate %v and up %v differ", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (k *geglu[T]) forward(in [][]T, out []T) (float64, error) {
	k.th = grow(k.th, len(out))
	kern.GeGLU(k.c, in[0], in[1], out, k.th)
	return 0, nil
}
func (k *geglu[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	kern.GeGLUBack(k.c, in[0], in[1], k.th, dy, g[0], g[1])
	return nil
}
func (k *geglu[T]) overwrites(int) bool { return true }

// headNorm is RMSNorm over every len(w)-wide slice of the rows of x (one
// head each when x is N×heads·d and w is d), scaled by w + offset: Qwen3's
// q/k norms (offset 0) and Gemma's (1 + w) norms (offset 1).
type headNorm[T Float] struct {
	c      kern.Cores
	eps    float64
	offset T
	wo     []T // w + offset
	rinv   []T
	part   []T
}

func (k *headNorm[T]) name() string { return "HeadRMSNorm" }
func (k *headNorm[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 1); err != nil {
		return nil, err
	}
	if in[1][0] == 0 || in[0][1]%in[1][0] != 0 {
		return nil, fmt.Errorf("HeadRMSNorm: x %v does not split into slices of weight %v", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (k *headNorm[T]) weight(w []T) []T {
	k.wo = grow(k.wo, len(w))
	for i, v := range w {
		k.wo[i] = v + k.offset
	}
	return k.wo
}
func (k *headNorm[T]) forward(in [][]T, out []T) (float64, error) {
	k.rinv = grow(k.rinv, len(in[0])/len(in[1]))
	kern.RMSNorm(k.c, in[0], k.weight(in[1]), k.eps, out, k.rinv)
	return 0, nil
}
func (k *headNorm[T]) backward(in [][]T, out, dout []T, g [][]T) error {
	k.part = grow(k.part, kern.RMSNormPartLen(len(in[0])/len(in[1]), len(in[1])))
	kern.RMSNormBack(k.c, in[0], k.weight(in[1]), k.rinv, dout, g[0], g[1], k.part)
	return nil
}
func (k *headNorm[T]) overwrites(int) bool { return true }

// Bias is x + b on every row of x (N×O, b O).
func (g *Graph[T]) Bias(x, b *G.Node) *G.Node { return g.apply(&bias[T]{c: g.cores()}, 2, x, b) }

// Scale is s·x.
func (g *Graph[T]) Scale(x *G.Node, s float64) *G.Node {
	return g.apply(&scale[T]{c: g.cores(), s: T(s)}, x.Dims(), x)
}

// GeGLU is gelu_pytorch_tanh(gate)·up.
func (g *Graph[T]) GeGLU(gate, up *G.Node) *G.Node {
	return g.apply(&geglu[T]{c: g.cores()}, 2, gate, up)
}

// HeadRMSNorm normalises each len(w)-wide slice of the rows of x and scales
// it by w + offset: per-head q/k norms when w is one head wide, Gemma's
// (1 + w) norm with offset 1.
func (g *Graph[T]) HeadRMSNorm(x, w *G.Node, eps, offset float64) *G.Node {
	return g.apply(&headNorm[T]{c: g.cores(), eps: eps, offset: T(offset)}, 2, x, w)
}

// WindowedAttention is Attention with a sliding window (a query sees
// itself and the window−1 keys before it; 0 for none) and scale as the
// factor of q·kᵀ (0 for 1/√d).
func (g *Graph[T]) WindowedAttention(layer int, q, k, v *G.Node, nh, nkv, d, window int, scale float64) *G.Node {
	a := &attention[T]{c: g.cores(), d: kern.Attn{B: g.Feed.B, T: g.Feed.T, NH: nh, NKV: nkv, D: d, Window: window, Scale: scale,
		Recompute: g.Recompute}, feed: g.Feed}
	if !g.Recompute { // recomputed probabilities are never all held
		g.Attn[layer] = &AttnProbe[T]{a}
	}
	return g.apply(a, 2, q, k, v)
}
