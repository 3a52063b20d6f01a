package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// headLoss is Linear(x, W) followed by CrossEntropy, computed chunk rows
// at a time so the N×V logits are never held: at a 128k vocabulary the
// logits of 1,024 tokens alone are 0.5 GB in float32. As Liger and Unsloth
// do, the gradient is formed in the forward pass while each chunk's
// probabilities are at hand: dx (N×H) and, when W trains, dW (V×H) are
// kept and scaled by the incoming gradient in backward.
//
// Every row goes through the same kernels as the unchunked pair (the
// product's rows do not depend on how many rows it is given, the per-row
// losses are summed in row order), so the loss and dx are bit-identical to
// Linear + CrossEntropy when the incoming gradient is 1, as it is for a
// loss the graph differentiates. dW sums over rows chunk by chunk, so it
// equals the unchunked one to rounding only.
type headLoss[T Float] struct {
	c            kern.Cores
	feed         *Feed
	chunk        int
	needX, needW bool
	n, h, v      int
	count        int
	buf          []T // chunk×V logits, then probabilities, then dlogits
	rowLoss      []float64
	dx, dw       []T
	// A frozen head held compactly (PackedHeadLoss): W is no input and is
	// widened a block at a time (tableLogits, tableBack).
	p PackedTable
	s *scratch[T]
}

func (k *headLoss[T]) name() string { return "HeadLoss" }

func (k *headLoss[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if k.p != nil {
		o, i := k.p.Dims()
		in = append(in[:1:1], tensor.Shape{o, i})
	}
	if err := wantRank(k.name(), in, 2, 2); err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	if x[1] != w[1] {
		return nil, fmt.Errorf("%s: x %v and head %v disagree on the hidden size", k.name(), x, w)
	}
	k.n, k.h, k.v = x[0], x[1], w[0]
	return tensor.ScalarShape(), nil
}

func (k *headLoss[T]) forward(in [][]T, out []T) (float64, error) {
	x := in[0]
	var w []T
	if k.p == nil {
		w = in[1]
	}
	targets := k.feed.Targets
	if len(targets) != k.n {
		return 0, fmt.Errorf("feed has %d targets, want %d", len(targets), k.n)
	}
	k.count = 0
	for _, t := range targets {
		if t >= 0 {
			k.count++
		}
	}
	if cap(k.rowLoss) < k.n {
		k.rowLoss = make([]float64, k.n)
	}
	rows := k.rowLoss[:k.n]
	if k.needX {
		k.dx = grow(k.dx, k.n*k.h)
	}
	if k.needW {
		k.dw = grow(k.dw, k.v*k.h)
		clear(k.dw)
	}
	chunk := min(k.chunk, k.n)
	k.buf = grow(k.buf, chunk*k.v)
	var scale T
	if k.count > 0 {
		scale = T(1) / T(k.count) // CrossEntropy's dy/count with dy = 1
	}
	for r0 := 0; r0 < k.n; r0 += chunk {
		c := min(chunk, k.n-r0)
		logits := k.buf[:c*k.v]
		xs := x[r0*k.h : (r0+c)*k.h]
		if k.p != nil {
			tableLogits(k.c, k.s, k.p, c, xs, logits, k.v)
		} else {
			kern.Gemm(k.c, false, true, c, k.v, k.h, 1, xs, k.h, w, k.h, 0, logits, k.v)
		}
		// Probabilities overwrite the logits (each row is read first).
		if _, err := kern.CrossEntropyOn(k.c, logits, k.v, targets[r0:r0+c], logits, rows[r0:r0+c]); err != nil {
			return 0, err
		}
		if k.count == 0 || (!k.needX && !k.needW) {
			continue
		}
		kern.CrossEntropyBackOn(k.c, logits, k.v, targets[r0:r0+c], scale, logits)
		if k.needX && k.p != nil {
			tableBack(k.c, k.s, k.p, c, logits, k.dx[r0*k.h:(r0+c)*k.h], k.h)
		} else if k.needX {
			kern.Gemm(k.c, false, false, c, k.h, k.v, 1, logits, k.v, w, k.h, 0, k.dx[r0*k.h:(r0+c)*k.h], k.h)
		}
		if k.needW {
			kern.Gemm(k.c, true, false, k.v, k.h, c, 1, logits, k.v, xs, k.h, 1, k.dw, k.h)
		}
	}
	if k.count == 0 {
		if k.needX {
			clear(k.dx)
		}
		if k.needW {
			clear(k.dw)
		}
		return 0, nil
	}
	var total float64
	for _, l := range rows {
		total += l
	}
	return total / float64(k.count), nil
}

func (k *headLoss[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	for i, d := range [][]T{k.dx, k.dw} {
		if i >= len(g) || g[i] == nil {
			continue
		}
		if d == nil {
			return fmt.Errorf("%s: gradient %d was not formed in the forward pass", k.name(), i)
		}
		if dy[0] == 1 {
			copy(g[i], d)
			continue
		}
		for j, v := range d {
			g[i][j] = v * dy[0]
		}
	}
	return nil
}

func (k *headLoss[T]) overwrites(int) bool { return true }

// HeadLoss is CrossEntropy(Linear(x, w)) computed chunk rows at a time,
// without the N×V logits (see headLoss).
func (g *Graph[T]) HeadLoss(x, w *G.Node, chunk int) *G.Node {
	if g.err == nil && chunk <= 0 {
		g.err = fmt.Errorf("head loss: chunk of %d rows", chunk)
		return nil
	}
	if x == nil || w == nil {
		return g.apply(&headLoss[T]{}, 0, x, w) // reports the missing input
	}
	k := &headLoss[T]{c: g.cores(), feed: g.Feed, chunk: chunk, needX: g.requires[x], needW: g.requires[w]}
	return g.apply(k, 0, x, w)
}

// PackedHeadLoss is HeadLoss with the frozen table p as the head: the
// logits' columns and dx are computed a vocabulary block (a column slab)
// at a time, so neither the logits nor the head are ever whole in float32.
func (g *Graph[T]) PackedHeadLoss(x *G.Node, p PackedTable, chunk int) *G.Node {
	if g.err == nil && chunk <= 0 {
		g.err = fmt.Errorf("head loss: chunk of %d rows", chunk)
		return nil
	}
	k := &headLoss[T]{c: g.cores(), feed: g.Feed, chunk: chunk, p: p, s: g.packedScratch()}
	if x != nil {
		k.needX = g.requires[x]
	}
	return g.apply(k, 0, x)
}
