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
// Buffers are allocated by the op wrapper, once per run shape, and reused by
// every later run: out has outShape's size and each non-nil grads[i] has
// input i's size. grads[i] is zeroed before backward unless the kernel
// implements overwriter and says it assigns every element of it, so
// kernels may accumulate into the others. A kernel whose outShape is scalar
// returns its value from forward and receives the incoming gradient as
// dout[0].
type kernel[T Float] interface {
	name() string
	outShape(in []tensor.Shape) (tensor.Shape, error)
	forward(in [][]T, out []T) (float64, error)
	backward(in [][]T, out, dout []T, grads [][]T) error
}

// overwriter is implemented by kernels whose backward assigns every element
// of some gradients rather than adding to them; those buffers are not
// zeroed before the call (zeroing costs a pass over memory per run).
type overwriter interface{ overwrites(i int) bool }

var opIDs atomic.Int64

// op adapts a kernel to gorgonia's SDOp. Every node gets its own op value
// (with a unique id, so gorgonia never merges two nodes) because kernels keep
// forward state, such as attention probabilities, for their backward pass.
//
// An op owns its output and gradient buffers: they are allocated by the
// first run and reused by every later run of the same shapes, so a training
// step allocates no tensors. A value read from a node (Data, Machine.Grad)
// is therefore valid until the next run of its machine.
type op[T Float] struct {
	id      int64
	k       kernel[T]
	inDims  []int
	outDims int // 0: scalar
	need    []bool
	pool    *bufPool[T] // places out and the gradients; nil: allocate

	// Forward: input views, the input shapes out was sized for, and out.
	fwdIn    views[T]
	inShapes []tensor.Shape
	out      *tensor.Dense
	outData  []T
	scalar   G.Value // the scalar output (a *G.F32 or *G.F64), reused

	// Backward, filled by the first gradient node of each run.
	bwdIn views[T]
	grads [][]T
	gradT []*tensor.Dense
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
		if dtypeOf[T]() != tensor.Float32 {
			return nil, fmt.Errorf("float32 scalar, want %v", dtypeOf[T]())
		}
		return []T{T(float32(*v))}, nil
	case *G.F64:
		if dtypeOf[T]() != tensor.Float64 {
			return nil, fmt.Errorf("float64 scalar, want %v", dtypeOf[T]())
		}
		return []T{T(float64(*v))}, nil
	}
	return nil, fmt.Errorf("unsupported value %T", v)
}

// views caches the []T views of the values an op reads. Reading a tensor's
// data goes through reflection and allocates, and an op receives the same
// tensors run after run (parameters, other ops' reused outputs), so a view
// is rebuilt only when the tensor or its backing array changes.
type views[T Float] struct {
	vals []G.Value
	ptrs []uintptr
	data [][]T
	one  [][1]T // backing for scalar values
}

func (v *views[T]) grow(n int) {
	v.vals = append(v.vals, make([]G.Value, n-len(v.vals))...)
	v.ptrs = append(v.ptrs, make([]uintptr, n-len(v.ptrs))...)
	v.data = append(v.data, make([][]T, n-len(v.data))...)
	v.one = append(v.one, make([][1]T, n-len(v.one))...)
}

// get returns the data of val as value i.
func (v *views[T]) get(i int, val G.Value) ([]T, error) {
	if i >= len(v.data) {
		v.grow(i + 1)
	}
	switch x := val.(type) {
	case *tensor.Dense:
		if v.vals[i] == val && v.ptrs[i] == x.Uintptr() && len(v.data[i]) == x.DataSize() {
			return v.data[i], nil
		}
		d, err := dataOf[T](x)
		if err != nil {
			return nil, err
		}
		v.vals[i], v.ptrs[i], v.data[i] = val, x.Uintptr(), d
		return d, nil
	case *G.F32:
		if dtypeOf[T]() != tensor.Float32 {
			return nil, fmt.Errorf("float32 scalar, want %v", dtypeOf[T]())
		}
		v.vals[i] = nil
		v.one[i][0] = T(float32(*x))
		v.data[i] = v.one[i][:]
		return v.data[i], nil
	case *G.F64:
		if dtypeOf[T]() != tensor.Float64 {
			return nil, fmt.Errorf("float64 scalar, want %v", dtypeOf[T]())
		}
		v.vals[i] = nil
		v.one[i][0] = T(float64(*x))
		v.data[i] = v.one[i][:]
		return v.data[i], nil
	}
	return nil, fmt.Errorf("unsupported value %T", val)
}

// load returns the data of every value in vals, reusing the slice of
// slices it returned last time.
func (v *views[T]) load(name string, vals []G.Value) ([][]T, error) {
	if len(vals) > len(v.data) {
		v.grow(len(vals))
	}
	for i, val := range vals {
		if _, err := v.get(i, val); err != nil {
			return nil, fmt.Errorf("%s input %d: %w", name, i, err)
		}
	}
	return v.data[:len(vals)], nil
}

func scalarValue[T Float](v float64) G.Value {
	if dtypeOf[T]() == tensor.Float64 {
		return G.NewF64(v)
	}
	return G.NewF32(float32(v))
}

// sameShapes reports whether vals have the shapes out was sized for.
func (o *op[T]) sameShapes(vals []G.Value) bool {
	if len(o.inShapes) != len(vals) {
		return false
	}
	for i, v := range vals {
		if !v.Shape().Eq(o.inShapes[i]) {
			return false
		}
	}
	return true
}

func (o *op[T]) Do(vals ...G.Value) (G.Value, error) {
	n := len(o.inDims)
	if len(vals) < n {
		return nil, fmt.Errorf("%s: %d inputs, want %d", o.k.name(), len(vals), n)
	}
	in, err := o.fwdIn.load(o.k.name(), vals[:n])
	if err != nil {
		return nil, err
	}
	if !o.sameShapes(vals[:n]) {
		shapes := make([]tensor.Shape, n)
		for i := range shapes {
			shapes[i] = vals[i].Shape().Clone()
		}
		shape, err := o.k.outShape(shapes)
		if err != nil {
			return nil, err
		}
		o.inShapes = shapes
		if o.outDims > 0 {
			o.out = o.pool.tensor(poolKey{o, -1}, shape)
			o.outData = o.out.Data().([]T)
		}
	}
	if o.outDims == 0 {
		v, err := o.k.forward(in, nil)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", o.k.name(), err)
		}
		switch s := o.scalar.(type) {
		case *G.F32:
			*s = G.F32(v)
		case *G.F64:
			*s = G.F64(v)
		default:
			o.scalar = scalarValue[T](v)
		}
		return o.scalar, nil
	}
	if _, err := o.k.forward(in, o.outData); err != nil {
		return nil, fmt.Errorf("%s: %w", o.k.name(), err)
	}
	return o.out, nil
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
	all, err := o.bwdIn.load(o.k.name(), vals[:n+2])
	if err != nil {
		return nil, err
	}
	in, dout := all[:n], all[n+1]
	var out []T
	if o.outDims > 0 {
		out = all[n]
	}
	if o.grads == nil || !sameShapes(vals[:n], o.gradT, o.need) {
		o.grads = make([][]T, n)
		o.gradT = make([]*tensor.Dense, n)
		for i := range n {
			if o.need[i] {
				t := o.pool.tensor(poolKey{o, i}, vals[i].Shape())
				o.gradT[i] = t
				o.grads[i] = t.Data().([]T)
			}
		}
	}
	ow, _ := o.k.(overwriter)
	for i, g := range o.grads {
		if g != nil && (ow == nil || !ow.overwrites(i)) {
			clear(g)
		}
	}
	if err := o.k.backward(in, out, dout, o.grads); err != nil {
		return nil, fmt.Errorf("%s backward: %w", o.k.name(), err)
	}
	return o.gradValue(g.which), nil
}

// sameShapes reports whether the gradient buffers gradT fit the inputs vals.
func sameShapes(vals []G.Value, gradT []*tensor.Dense, need []bool) bool {
	for i, v := range vals {
		if need[i] && !v.Shape().Eq(gradT[i].Shape()) {
			return false
		}
	}
	return true
}
