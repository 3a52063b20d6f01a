package nn

import (
	"math"
	"slices"

	"gorgonia.org/tensor"
)

// bufPool places the output and gradient buffers of a graph's ops
// (Graph.ShareBuffers) so that buffers whose lifetimes do not overlap share
// memory. A lifetime is the span of steps, in the executor's fixed order,
// from the step that writes a buffer to the last step that reads it; every
// run executes the steps in that order (a partial run a subset of them), so
// two buffers that share memory are never both live. Buffers read after a
// run (the loss, the gradients a machine returns, hooks, outputs nobody in
// the graph reads) live to the end. Placement only decides where buffers
// are; every op computes what it did, so results are unchanged.
type bufPool[T Float] struct {
	now    int             // the step running
	ends   map[poolKey]int // the last step that reads each buffer
	chunks []*poolChunk[T]
}

// poolKey names a buffer: an op's output (which −1) or its gradient with
// respect to input which.
type poolKey struct {
	op    any
	which int
}

type poolChunk[T Float] struct {
	buf    []T
	placed []placement
}

// placement is a buffer at buf[off:off+n] live over steps from..to.
type placement struct{ off, n, from, to int }

// tensor returns a dense tensor of shape for key, placed in shared memory
// when the pool knows the key's lifetime, else newly allocated.
func (p *bufPool[T]) tensor(key poolKey, shape tensor.Shape) *tensor.Dense {
	shape = shape.Clone()
	if p == nil {
		return tensor.New(tensor.Of(dtypeOf[T]()), tensor.WithShape(shape...))
	}
	end, ok := p.ends[key]
	if !ok {
		return tensor.New(tensor.Of(dtypeOf[T]()), tensor.WithShape(shape...))
	}
	data := p.place(shape.TotalSize(), p.now, max(end, p.now))
	return tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
}

// place finds n values free over steps from..to: the lowest gap of a chunk
// among the placements live at any of those steps, or a new chunk.
func (p *bufPool[T]) place(n, from, to int) []T {
	for _, c := range p.chunks {
		if len(c.buf) < n {
			continue
		}
		var busy []placement
		for _, q := range c.placed {
			if q.from <= to && from <= q.to {
				busy = append(busy, q)
			}
		}
		slices.SortFunc(busy, func(a, b placement) int { return a.off - b.off })
		off := 0
		for _, q := range busy {
			if q.off-off >= n {
				break
			}
			off = max(off, q.off+q.n)
		}
		if off+n <= len(c.buf) {
			c.placed = append(c.placed, placement{off, n, from, to})
			return c.buf[off : off+n : off+n]
		}
	}
	c := &poolChunk[T]{buf: make([]T, n), placed: []placement{{0, n, from, to}}}
	p.chunks = append(p.chunks, c)
	return c.buf
}

// forever is the end of a buffer read after the run.
const forever = math.MaxInt
