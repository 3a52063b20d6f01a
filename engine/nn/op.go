package nn

import (
	"fmt"
	"hash"
	"hash/fnv"
	"sync/atomic"

	"github.com/chewxy/hm"
	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"
)

// kernel is one differentiable function with a hand-written backward pass.
// Buffers are allocated by the op wrapper: out has outShape's size and each
// non-nil grads[i] is zeroed and has input i's size, so kernels may
// accumulate into it. A kernel whose outShape is scalar returns its value
// from forward and receives the incoming gradient as dout[0].
type kernel[T Float] interface {
	name() string
	outShape(in []tensor.Shape) (tensor.Shape, error)
	forward(in [][]T, out []T) (float64, error)
	backward(in [][]T, out, dout []T, grads [][]T) error
}

var opIDs atomic.Int64

// op adapts a kernel to gorgonia's SDOp. Every node gets its own op value
// (with a unique id, so gorgonia never merges two nodes) because kernels keep
// forward state, such as attention probabilities, for their backward pass.
type op[T Float] struct {
	id      int64
	k       kernel[T]
	inDims  []int
	outDims int // 0: scalar
	need    []bool
	// Filled by the first gradient node of each run.
	shapes []tensor.Shape
	grads  [][]T
	gradT  []*tensor.Dense
}

func (o *op[T]) gradValue(i int) G.Value { return o.gradT[i] }

func dtypeOf[T Float]() tensor.Dtype {
	var z T
	if _, ok := any(z).(float64); ok {
		return tensor.Float64
	}
	return tensor.Float32
}

func typeOf[T Float](dims int) hm.Type {
	if dims == 0 {
		return dtypeOf[T]()
	}
	return G.TensorType{Dims: dims, Of: dtypeOf[T]()}
}

func (o *op[T]) Arity() int { return len(o.inDims) }
func (o *op[T]) Type() hm.Type {
	ts := make([]hm.Type, 0, len(o.inDims)+1)
	for _, d := range o.inDims {
		ts = append(ts, typeOf[T](d))
	}
	return hm.NewFnType(append(ts, typeOf[T](o.outDims))...)
}
func (o *op[T]) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	shapes := make([]tensor.Shape, len(in))
	for i, d := range in {
		s, ok := d.(tensor.Shape)
		if !ok {
			return nil, fmt.Errorf("%s: input %d has no shape", o.k.name(), i)
		}
		shapes[i] = s
	}
	return o.k.outShape(shapes)
}
func (o *op[T]) ReturnsPtr() bool      { return false }
func (o *op[T]) CallsExtern() bool     { return false }
func (o *op[T]) OverwritesInput() int  { return -1 }
func (o *op[T]) WriteHash(h hash.Hash) { fmt.Fprintf(h, "%s#%d", o.k.name(), o.id) }
func (o *op[T]) Hashcode() uint32      { return hashOf(o) }
func (o *op[T]) String() string        { return o.k.name() }
func (o *op[T]) DiffWRT(n int) []bool  { return o.need }

func hashOf(o interface{ WriteHash(hash.Hash) }) uint32 {
	h := fnv.New32a()
	o.WriteHash(h)
	return h.Sum32()
}

func dataOf[T Float](v G.Value) ([]T, error) {
	switch v := v.(type) {
	case *tensor.Dense:
		d, ok := v.Data().([]T)
		if !ok {
			return nil, fmt.Errorf("tensor of %v, want %v", v.Dtype(), dtypeOf[T]())
		}
		return d, nil
	case *G.F32:
		return any([]float32{float32(*v)}).([]T), nil
	case *G.F64:
		return any([]float64{float64(*v)}).([]T), nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

func (o *op[T]) inputs(vals []G.Value) ([][]T, error) {
	if len(vals) < len(o.inDims) {
		return nil, fmt.Errorf("%s: %d inputs, want %d", o.k.name(), len(vals), len(o.inDims))
	}
	in := make([][]T, len(o.inDims))
	for i := range o.inDims {
		d, err := dataOf[T](vals[i])
		if err != nil {
			return nil, fmt.Errorf("%s input %d: %w", o.k.name(), i, err)
		}
		in[i] = d
	}
	return in, nil
}

func scalarValue[T Float](v float64) G.Value {
	if dtypeOf[T]() == tensor.Float64 {
		return G.NewF64(v)
	}
	return G.NewF32(float32(v))
}

func (o *op[T]) Do(vals ...G.Value) (G.Value, error) {
	in, err := o.inputs(vals)
	if err != nil {
		return nil, err
	}
	shapes := make([]tensor.Shape, len(in))
	for i := range in {
		shapes[i] = vals[i].Shape()
	}
	shape, err := o.k.outShape(shapes)
	if err != nil {
		return nil, err
	}
	if o.outDims == 0 {
		v, err := o.k.forward(in, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.k.name(), err)
		}
		return scalarValue[T](v), nil
	}
	out := tensor.New(tensor.Of(dtypeOf[T]()), tensor.WithShape(shape...))
	if _, err := o.k.forward(in, out.Data().([]T)); err != nil {
		return nil, fmt.Errorf("%s: %w", o.k.name(), err)
	}
	return out, nil
}

// SymDiff returns one gradient node per input. The first needed input's
// node runs the kernel's backward for all inputs at once; the others take
// that node as their only input (which orders them after it) and hand out
// the gradients it stored.
func (o *op[T]) SymDiff(inputs G.Nodes, output, grad *G.Node) (G.Nodes, error) {
	ret := make(G.Nodes, len(inputs))
	var first *G.Node
	for i, need := range o.need {
		if !need {
			continue
		}
		g := &gradOp[T]{id: opIDs.Add(1), fwd: o, which: i, first: first == nil, dims: o.inDims[i], shape: inputs[i].Shape().Clone()}
		var err error
		if first == nil {
			args := append(append(G.Nodes{}, inputs...), output, grad)
			first, err = G.ApplyOp(g, args...)
			ret[i] = first
		} else {
			ret[i], err = G.ApplyOp(g, first)
		}
		if err != nil {
			return nil, fmt.Errorf("%s gradient %d: %w", o.k.name(), i, err)
		}
	}
	return ret, nil
}

// gradOp is the gradient of a forward op with respect to input which.
type gradOp[T Float] struct {
	id    int64
	fwd   *op[T]
	which int
	first bool
	dims  int
	shape tensor.Shape
}

func (g *gradOp[T]) Arity() int {
	if g.first {
		return len(g.fwd.inDims) + 2
	}
	return 1
}
func (g *gradOp[T]) Type() hm.Type {
	if !g.first {
		return hm.NewFnType(typeOf[T](g.fwd.inDims[g.firstIndex()]), typeOf[T](g.dims))
	}
	ts := make([]hm.Type, 0, len(g.fwd.inDims)+3)
	for _, d := range g.fwd.inDims {
		ts = append(ts, typeOf[T](d))
	}
	ts = append(ts, typeOf[T](g.fwd.outDims), typeOf[T](g.fwd.outDims), typeOf[T](g.dims))
	return hm.NewFnType(ts...)
}
func (g *gradOp[T]) firstIndex() int {
	for i, n := range g.fwd.need {
		if n {
			return i
		}
	}
	return -1
}
func (g *gradOp[T]) InferShape(in ...G.DimSizer) (tensor.Shape, error) {
	return g.shape.Clone(), nil
}
func (g *gradOp[T]) ReturnsPtr() bool     { return false }
func (g *gradOp[T]) CallsExtern() bool    { return false }
func (g *gradOp[T]) OverwritesInput() int { return -1 }
func (g *gradOp[T]) WriteHash(h hash.Hash) {
	fmt.Fprintf(h, "d%s/d%d#%d", g.fwd.k.name(), g.which, g.id)
}
func (g *gradOp[T]) Hashcode() uint32 { return hashOf(g) }
func (g *gradOp[T]) String() string   { return fmt.Sprintf("d%s/d%d", g.fwd.k.name(), g.which) }

func (g *gradOp[T]) Do(vals ...G.Value) (G.Value, error) {
	o := g.fwd
	if !g.first {
		if o.grads == nil || o.grads[g.which] == nil {
			return nil, fmt.Errorf("%s gradient %d: backward has not run", o.k.name(), g.which)
		}
		return o.gradValue(g.which), nil
	}
	n := len(o.inDims)
	in, err := o.inputs(vals[:n])
	if err != nil {
		return nil, err
	}
	var out []T
	if o.outDims > 0 {
		if out, err = dataOf[T](vals[n]); err != nil {
			return nil, err
		}
	}
	dout, err := dataOf[T](vals[n+1])
	if err != nil {
		return nil, fmt.Errorf("%s incoming gradient: %w", o.k.name(), err)
	}
	o.shapes = make([]tensor.Shape, n)
	o.grads = make([][]T, n)
	o.gradT = make([]*tensor.Dense, n)
	for i := range n {
		o.shapes[i] = vals[i].Shape().Clone()
		if o.need[i] {
			t := tensor.New(tensor.Of(dtypeOf[T]()), tensor.WithShape(o.shapes[i]...))
			o.gradT[i] = t
			o.grads[i] = t.Data().([]T)
		}
	}
	if err := o.k.backward(in, out, dout, o.grads); err != nil {
		return nil, fmt.Errorf("%s backward: %w", o.k.name(), err)
	}
	return o.gradValue(g.which), nil
}
