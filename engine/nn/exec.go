package nn

import (
	"fmt"
	"slices"
	"strings"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// executor runs a graph in topological order, calling each node's op on
// its children's values. It replaces gorgonia's TapeMachine, which
// allocates several small objects per instruction on every run (argument
// slices, boxed values, log formatting) and which a training step would
// otherwise pay hundreds of times. Every value an op returns is bound to
// its node, so Node.Value works as after a TapeMachine run; because ops
// return the same buffers run after run, binding happens once.
type executor[T Float] struct {
	c     kern.Cores
	steps []execStep[T]
	vals  []G.Value   // by position in the order
	pool  *bufPool[T] // nil: every op allocates its own buffers
}

type execStep[T Float] struct {
	node  *G.Node
	op    G.Op
	in    []int     // positions of the children's values
	args  []G.Value // argument slice, reused
	bound G.Value   // the value last bound to node
	// Ops of gorgonia's own write into the buffer of their first run. The
	// only ones in our graphs are the sums G.Grad inserts where a value
	// feeds several ops; those (sum) are done here, allocation-free.
	pre      G.UsePreallocDoer
	prealloc G.Value
	sum      bool
	sumIn    views[T] // the sum's output and operands
}

// newExecutor orders g's steps. With share, this package's ops place
// their output and gradient buffers in a bufPool, the values of keep (read
// after a run) living to the end.
func newExecutor[T Float](g *G.ExprGraph, c kern.Cores, share bool, keep ...*G.Node) (*executor[T], error) {
	sorted, err := G.Sort(g)
	if err != nil {
		return nil, fmt.Errorf("order graph: %w", err)
	}
	// Sort puts outputs first.
	pos := make(map[*G.Node]int, len(sorted))
	e := &executor[T]{c: c, vals: make([]G.Value, len(sorted))}
	for i := len(sorted) - 1; i >= 0; i-- {
		n := sorted[i]
		p := len(pos)
		pos[n] = p
		if n.Op() == nil { // a parameter or other bound input
			e.steps = append(e.steps, execStep[T]{node: n})
			continue
		}
		s := execStep[T]{node: n, op: n.Op()}
		for it := g.From(n.ID()); it.Next(); {
			c, ok := it.Node().(*G.Node)
			if !ok {
				return nil, fmt.Errorf("node %v: child of type %T", n, it.Node())
			}
			cp, ok := pos[c]
			if !ok {
				return nil, fmt.Errorf("node %v: child %v comes later in the order", n, c)
			}
			s.in = append(s.in, cp)
		}
		s.args = make([]G.Value, len(s.in))
		if _, ours := n.Op().(bufferOwner); !ours {
			s.pre, _ = n.Op().(G.UsePreallocDoer)
			// gorgonia's element-wise binary ops print as "+ false".
			name, _, _ := strings.Cut(n.Op().String(), " ")
			bin, ok := n.Op().(interface{ IsBinary() bool })
			s.sum = name == "+" && ok && bin.IsBinary() && len(s.in) == 2
		}
		e.steps = append(e.steps, s)
	}
	if share {
		e.share(keep)
	}
	return e, nil
}

// share gives the package's ops a bufPool that knows each buffer's last
// reader: the last step taking its node as an input, or the end for kept
// nodes and nodes no step reads.
func (e *executor[T]) share(keep []*G.Node) {
	last := make([]int, len(e.steps))
	for i := range last {
		last[i] = forever
	}
	for i, s := range e.steps {
		for _, p := range s.in {
			if last[p] == forever || last[p] < i {
				last[p] = i
			}
		}
	}
	for i, s := range e.steps {
		if slices.Contains(keep, s.node) {
			last[i] = forever
		}
	}
	e.pool = &bufPool[T]{ends: map[poolKey]int{}}
	for i, s := range e.steps {
		switch o := s.op.(type) {
		case *op[T]:
			o.pool = e.pool
			e.pool.ends[poolKey{o, -1}] = last[i]
		case *gradOp[T]:
			o.fwd.pool = e.pool
			e.pool.ends[poolKey{o.fwd, o.which}] = last[i]
		default:
			if s.sum { // gradient sums: their buffer too (see sumBuffer)
				e.pool.ends[poolKey{s.node, -1}] = last[i]
			}
		}
	}
}

// sumBuffer gives a gradient sum its buffer from the pool before its first
// run (gorgonia's op would allocate its own), shaped like its first
// operand when both are dense tensors of T of one shape; addInto then
// fills it as for a buffer of gorgonia's.
func (e *executor[T]) sumBuffer(s *execStep[T]) {
	x, ok1 := s.args[0].(*tensor.Dense)
	y, ok2 := s.args[1].(*tensor.Dense)
	if !ok1 || !ok2 || x.Dtype() != dtypeOf[T]() || y.Dtype() != x.Dtype() || !x.Shape().Eq(y.Shape()) {
		return
	}
	s.prealloc = e.pool.tensor(poolKey{s.node, -1}, x.Shape())
}

// bufferOwner marks this package's ops, which return the same output
// buffers on every run.
type bufferOwner interface{ ownsBuffers() }

func (o *op[T]) ownsBuffers()     {}
func (g *gradOp[T]) ownsBuffers() {}

// run executes every step once.
func (e *executor[T]) run() error { return e.runOnly(nil) }

// upTo marks the steps n depends on (n's included): the forward pass to n
// without the backward steps and other outputs. It reports false when n is
// not in the graph.
func (e *executor[T]) upTo(n *G.Node) ([]bool, bool) {
	need := make([]bool, len(e.steps))
	found := false
	for i := len(e.steps) - 1; i >= 0; i-- {
		if e.steps[i].node == n {
			need[i], found = true, true
		}
		if need[i] {
			for _, p := range e.steps[i].in {
				need[p] = true
			}
		}
	}
	return need, found
}

// runOnly executes the steps marked in only (every step when nil).
func (e *executor[T]) runOnly(only []bool) error {
	for i := range e.steps {
		if only != nil && !only[i] {
			continue
		}
		s := &e.steps[i]
		if s.op == nil {
			v := s.node.Value()
			if v == nil {
				return fmt.Errorf("%s has no value", s.node.Name())
			}
			e.vals[i] = v
			continue
		}
		for j, p := range s.in {
			s.args[j] = e.vals[p]
		}
		if e.pool != nil {
			e.pool.now = i
			if s.sum && s.prealloc == nil {
				e.sumBuffer(s)
			}
		}
		var v G.Value
		var err error
		if s.sum && s.prealloc != nil && s.addInto(e.c) {
			v = s.prealloc
		} else if s.pre != nil && s.prealloc != nil {
			v, err = s.pre.UsePreallocDo(s.prealloc, s.args...)
		} else {
			v, err = s.op.Do(s.args...)
			if s.pre != nil {
				s.prealloc = v
			}
		}
		if err != nil {
			return fmt.Errorf("%v: %w", s.op, err)
		}
		e.vals[i] = v
		if v != s.bound {
			if err := G.UnsafeLet(s.node, v); err != nil {
				return fmt.Errorf("%v: bind value: %w", s.op, err)
			}
			s.bound = v
		}
	}
	clear(e.vals) // hold no references between runs
	return nil
}

// addInto sets the sum's buffer to the sum of its arguments when all are
// dense tensors of T with one shape, and reports whether it did.
func (s *execStep[T]) addInto(c kern.Cores) bool {
	d, ok := s.prealloc.(*tensor.Dense)
	if !ok {
		return false
	}
	for _, a := range s.args {
		x, ok := a.(*tensor.Dense)
		if !ok || x.Dtype() != d.Dtype() || !x.Shape().Eq(d.Shape()) {
			return false
		}
	}
	dst, err1 := s.sumIn.get(0, d)
	x, err2 := s.sumIn.get(1, s.args[0])
	y, err3 := s.sumIn.get(2, s.args[1])
	if err1 != nil || err2 != nil || err3 != nil || len(x) != len(dst) || len(y) != len(dst) {
		return false
	}
	kern.Add(c, dst, x, y)
	return true
}
