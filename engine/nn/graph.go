package nn

import (
	"fmt"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// Graph is a gorgonia expression graph under construction. It tracks which
// nodes depend on trainable parameters, so every op asks gorgonia only for
// the gradients that lead to one (frozen base weights get none), and it
// remembers named activations and kernels for collectors. Building stops at
// the first error, which Err reports.
type Graph[T Float] struct {
	G        *G.ExprGraph
	Feed     *Feed
	requires map[*G.Node]bool
	err      error

	// Hooks maps TransformerLens-style hook names to activation nodes.
	Hooks map[string]*G.Node
	// LoRA maps a module name to its LoRA kernel, for the path's hidden
	// activation drop(x)·Aᵀ.
	LoRA map[string]*LoRAProbe[T]
	// Attn maps a layer index to its attention kernel, for the pattern.
	Attn map[int]*AttnProbe[T]

	// Cores caps how many goroutines the graph's ops split their work
	// over (0: runtime.GOMAXPROCS). Set it before adding ops. Results do
	// not depend on it.
	Cores int

	// HeadChunk, when positive, makes model.Build compute the head and
	// the loss HeadChunk rows at a time (HeadLoss): no N×V logits node.
	HeadChunk int

	// Recompute makes kernels keep no large state that their backward
	// pass can recompute bit for bit with the forward's code: attention's
	// probabilities (kern.Attn's Recompute; the graph's Attn then has no
	// probes) and SwiGLU's sigmoids. Checkpointed block graphs set it: they
	// would otherwise hold B·heads×T×T and N×intermediate values per
	// block. Set it before adding ops.
	Recompute bool

	// ShareBuffers lets ops whose buffers are never live at once share
	// memory (a liveness pass over the executor's order; see bufPool).
	// After Run only the loss, the gradients and the hooks keep their
	// values; after Machine.Forward(n), n's too (no later step runs). Set
	// it before Compile.
	ShareBuffers bool

	scratch *scratch[T] // the widening buffer of packed weights
}

// LoRAProbe reads the LoRA path's middle activation after a forward run.
type LoRAProbe[T Float] struct{ k *linear[T] }

// Hidden returns drop(x)·Aᵀ (N×r) from the last forward run.
func (p *LoRAProbe[T]) Hidden() []T { return p.k.h }

// Scale returns the LoRA scaling s.
func (p *LoRAProbe[T]) Scale() T { return p.k.scale }

// AttnProbe reads attention probabilities after a forward run.
type AttnProbe[T Float] struct{ k *attention[T] }

// Probs returns the probabilities (B·heads×T×T) from the last forward run.
func (p *AttnProbe[T]) Probs() []T { return p.k.P }

// Float is the element type of a graph: float32, or float64 for gradient
// checks.
type Float = kern.Float

// RopeTable is kern.RopeTable: the cos and sin tables of RoPE.
func RopeTable(seqLen, headDim int, theta float64) (cos, sin []float32) {
	return kern.RopeTable(seqLen, headDim, theta)
}

// NewGraph starts a graph over a feed of fixed batch shape.
func NewGraph[T Float](feed *Feed) *Graph[T] {
	return &Graph[T]{
		G: G.NewGraph(), Feed: feed, requires: map[*G.Node]bool{},
		Hooks: map[string]*G.Node{}, LoRA: map[string]*LoRAProbe[T]{}, Attn: map[int]*AttnProbe[T]{},
	}
}

func (g *Graph[T]) cores() kern.Cores { return kern.Cores(g.Cores) }

// Err returns the first error met while building.
func (g *Graph[T]) Err() error { return g.err }

// Param adds a parameter node backed by data (no copy: updating data in
// place updates the graph's value).
func (g *Graph[T]) Param(name string, shape []int, data []T, trainable bool) *G.Node {
	if g.err != nil {
		return nil
	}
	size := 1
	for _, d := range shape {
		size *= d
	}
	if size != len(data) {
		g.err = fmt.Errorf("parameter %s: shape %v needs %d values, have %d", name, shape, size, len(data))
		return nil
	}
	t := tensor.New(tensor.WithShape(shape...), tensor.WithBacking(data))
	n := G.NewTensor(g.G, dtypeOf[T](), len(shape), G.WithShape(shape...), G.WithValue(t), G.WithName(name))
	g.requires[n] = trainable
	return n
}

// Hook names an activation node.
func (g *Graph[T]) Hook(name string, n *G.Node) *G.Node {
	if n != nil {
		g.Hooks[name] = n
	}
	return n
}

func (g *Graph[T]) apply(k kernel[T], outDims int, ins ...*G.Node) *G.Node {
	if g.err != nil {
		return nil
	}
	o := &op[T]{id: opIDs.Add(1), k: k, outDims: outDims}
	req := false
	for _, n := range ins {
		if n == nil {
			g.err = fmt.Errorf("%s: missing input", k.name())
			return nil
		}
		r := g.requires[n]
		o.inDims = append(o.inDims, n.Dims())
		o.need = append(o.need, r)
		req = req || r
	}
	n, err := G.ApplyOp(o, ins...)
	if err != nil {
		g.err = fmt.Errorf("%s: %w", k.name(), err)
		return nil
	}
	g.requires[n] = req
	return n
}

// Embed looks up the feed's token ids in table (V×H).
func (g *Graph[T]) Embed(table *G.Node) *G.Node {
	return g.apply(&embed[T]{feed: g.Feed}, 2, table)
}

// RMSNorm normalises x (N×H) and scales by w (H).
func (g *Graph[T]) RMSNorm(x, w *G.Node, eps float64) *G.Node {
	return g.apply(&rmsNorm[T]{c: g.cores(), eps: eps}, 2, x, w)
}

// Linear is x·Wᵀ.
func (g *Graph[T]) Linear(x, w *G.Node) *G.Node {
	return g.apply(&linear[T]{c: g.cores()}, 2, x, w)
}

// LoRALinear is x·Wᵀ + scale·(drop(x)·Aᵀ)·Bᵀ. The dropout mask, if any, is
// read from the feed under the module's name.
func (g *Graph[T]) LoRALinear(module string, x, w, a, b *G.Node, scale float64) *G.Node {
	k := &linear[T]{c: g.cores(), lora: true, scale: T(scale), feed: g.Feed, mask: module}
	n := g.apply(k, 2, x, w, a, b)
	g.LoRA[module] = &LoRAProbe[T]{k}
	return n
}

// RoPE rotates each head of x (N×heads·headDim) with tables from RopeTable.
func (g *Graph[T]) RoPE(x *G.Node, headDim int, cos, sin []float32) *G.Node {
	return g.apply(&rope[T]{c: g.cores(), seqLen: g.Feed.T, headDim: headDim, cos: cos, sin: sin, feed: g.Feed}, 2, x)
}

// Attention is causal attention with nh query heads over nkv key/value
// heads of size d.
func (g *Graph[T]) Attention(layer int, q, k, v *G.Node, nh, nkv, d int) *G.Node {
	return g.WindowedAttention(layer, q, k, v, nh, nkv, d, 0, 0)
}

// SwiGLU is silu(gate)·up.
func (g *Graph[T]) SwiGLU(gate, up *G.Node) *G.Node {
	return g.apply(&swiglu[T]{c: g.cores(), recompute: g.Recompute}, 2, gate, up)
}

// Add is a + b.
func (g *Graph[T]) Add(a, b *G.Node) *G.Node { return g.apply(&add[T]{c: g.cores()}, 2, a, b) }

// CrossEntropy is the mean next-token loss of logits (N×V), a scalar.
func (g *Graph[T]) CrossEntropy(logits *G.Node) *G.Node {
	return g.apply(&crossEntropy[T]{c: g.cores(), feed: g.Feed}, 0, logits)
}

// Machine is a compiled graph: a forward pass to loss and, when built with
// parameters to differentiate, their gradients.
type Machine[T Float] struct {
	ex    *executor[T]
	Loss  *G.Node
	Grads []*G.Node
	grads views[T]
	upTo  map[*G.Node][]bool // Forward's steps by target
}

// Compile adds the backward graph for wrt (none for a forward-only machine)
// and orders the graph for execution.
func (g *Graph[T]) Compile(loss *G.Node, wrt ...*G.Node) (*Machine[T], error) {
	if g.err != nil {
		return nil, g.err
	}
	m := &Machine[T]{Loss: loss}
	if len(wrt) > 0 {
		grads, err := G.Grad(loss, wrt...)
		if err != nil {
			return nil, fmt.Errorf("build backward graph: %w", err)
		}
		m.Grads = grads
	}
	keep := append([]*G.Node{loss}, m.Grads...)
	for _, n := range g.Hooks {
		keep = append(keep, n)
	}
	ex, err := newExecutor[T](g.G, g.cores(), g.ShareBuffers, keep...)
	if err != nil {
		return nil, err
	}
	m.ex = ex
	return m, nil
}

// Run executes the graph once and returns the loss. Activations and
// gradients live in buffers that every run overwrites.
func (m *Machine[T]) Run() (float64, error) {
	if err := m.ex.run(); err != nil {
		return 0, err
	}
	return ValueFloat(m.Loss.Value())
}

// Grad returns the data of gradient i from the last run. The buffer is
// reused by the next run: copy what must outlive it.
func (m *Machine[T]) Grad(i int) ([]T, error) { return m.grads.get(i, m.Grads[i].Value()) }

// Close releases the machine.
func (m *Machine[T]) Close() error {
	m.ex = nil
	return nil
}

// ValueFloat reads a scalar gorgonia value.
func ValueFloat(v G.Value) (float64, error) {
	switch v := v.(type) {
	case *G.F32:
		return float64(*v), nil
	case *G.F64:
		return float64(*v), nil
	}
	return 0, fmt.Errorf("value %T is not a scalar", v)
}

// Data returns the data of a tensor node's value from the last run. The
// buffer is reused by the next run of the node's machine: copy what must
// outlive it.
func Data[T Float](n *G.Node) ([]T, error) { return dataOf[T](n.Value()) }
