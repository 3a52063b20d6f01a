package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// Pieces that let a caller run a model as separate graphs (activation
// checkpointing): a graph that ends in the residual stream takes the
// gradient of its output from the caller (Seed), and a machine can run
// just the forward steps to one node (Forward) and take new values for
// its parameters between runs (Bind).

// seed is a scalar whose gradient with respect to its input y is a given
// buffer dy (times the incoming gradient): the backward pass of a graph
// cut at y then continues as if the rest of the model were above it. Its
// value is 0; it is not a loss.
type seed[T Float] struct{ dy []T }

func (k *seed[T]) name() string { return "Seed" }
func (k *seed[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if len(in) != 1 {
		return nil, fmt.Errorf("Seed: %d inputs, want 1", len(in))
	}
	return tensor.ScalarShape(), nil
}
func (k *seed[T]) forward(in [][]T, out []T) (float64, error) { return 0, nil }
func (k *seed[T]) backward(in [][]T, out, dout []T, g [][]T) error {
	if len(k.dy) != len(g[0]) {
		return fmt.Errorf("Seed: output gradient has %d values, want %d", len(k.dy), len(g[0]))
	}
	if dout[0] == 1 { // the graph's own seed: dy exactly
		copy(g[0], k.dy)
		return nil
	}
	for i, v := range k.dy {
		g[0][i] = v * dout[0]
	}
	return nil
}
func (k *seed[T]) overwrites(int) bool { return true }

// Seed is a scalar node whose gradient with respect to y is dy, read at
// each backward run: compiling a graph with Seed(out, dy) as its loss
// back-propagates the caller's gradient dy of out.
func (g *Graph[T]) Seed(y *G.Node, dy []T) *G.Node {
	return g.apply(&seed[T]{dy: dy}, 0, y)
}

// Forward runs only the steps n depends on: the forward pass to n, with
// no backward steps. n's value (Data) is valid until the next run.
func (m *Machine[T]) Forward(n *G.Node) error {
	if m.upTo == nil {
		m.upTo = map[*G.Node][]bool{}
	}
	only, ok := m.upTo[n]
	if !ok {
		var found bool
		if only, found = m.ex.upTo(n); !found {
			return fmt.Errorf("forward to %v: node is not in the machine's graph", n)
		}
		m.upTo[n] = only
	}
	return m.ex.runOnly(only)
}

// Binding is a value for a parameter node (see Bind), made once and bound
// at each switch.
type Binding struct {
	n *G.Node
	v G.Value
}

// NewBinding wraps data as a value for the parameter node n, which must
// have been made by Param with as many values.
func NewBinding[T Float](n *G.Node, data []T) (Binding, error) {
	shape := n.Shape()
	if shape.TotalSize() != len(data) {
		return Binding{}, fmt.Errorf("bind %s: shape %v needs %d values, have %d", n.Name(), shape, shape.TotalSize(), len(data))
	}
	return Binding{n: n, v: tensor.New(tensor.WithShape(shape.Clone()...), tensor.WithBacking(data))}, nil
}

// Bind makes the node read b's data from the next run on (no copy), so
// one graph can run over the weights of several layers in turn.
func (b Binding) Bind() error {
	if err := G.UnsafeLet(b.n, b.v); err != nil {
		return fmt.Errorf("bind %s: %w", b.n.Name(), err)
	}
	return nil
}
