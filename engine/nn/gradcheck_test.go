package nn

import (
	"math"
	"math/rand/v2"
	"testing"

	G "gorgonia.org/gorgonia"
	"gorgonia.org/tensor"

	"lens/engine/kern"
)

// weightedSum reduces a tensor to Σ x⊙r, a scalar, for gradient checks.
type weightedSum[T Float] struct{ r []T }

func (k *weightedSum[T]) name() string { return "WeightedSum" }
func (k *weightedSum[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	return tensor.ScalarShape(), nil
}
func (k *weightedSum[T]) forward(in [][]T, out []T) (float64, error) {
	var s float64
	for i, v := range in[0] {
		s += float64(v) * float64(k.r[i])
	}
	return s, nil
}
func (k *weightedSum[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	for i := range g[0] {
		g[0][i] = k.r[i] * dy[0]
	}
	return nil
}

func randSlice(rng *rand.Rand, n int, scale float64) []float64 {
	s := make([]float64, n)
	for i := range s {
		s[i] = (rng.Float64()*2 - 1) * scale
	}
	return s
}

type param struct {
	name  string
	shape []int
	scale float64
}

func TestGradientsMatchFiniteDifferences(t *testing.T) {
	const B, T = 2, 5
	cos, sin := RopeTable(T, 4, 10000)
	cases := []struct {
		name   string
		params []param
		build  func(g *Graph[float64], p []*G.Node) *G.Node
		masks  bool
	}{
		{"embed", []param{{"table", []int{11, 6}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.Embed(p[0]) }, false},
		{"rmsnorm", []param{{"x", []int{B * T, 6}, 1}, {"w", []int{6}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.RMSNorm(p[0], p[1], 1e-5) }, false},
		{"linear", []param{{"x", []int{B * T, 6}, 1}, {"w", []int{4, 6}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.Linear(p[0], p[1]) }, false},
		{"lora", []param{{"x", []int{B * T, 6}, 1}, {"w", []int{4, 6}, 1}, {"a", []int{3, 6}, 1}, {"b", []int{4, 3}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node {
			return g.LoRALinear("m", p[0], p[1], p[2], p[3], 0.7)
		}, false},
		{"lora dropout", []param{{"x", []int{B * T, 6}, 1}, {"w", []int{4, 6}, 1}, {"a", []int{3, 6}, 1}, {"b", []int{4, 3}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node {
			return g.LoRALinear("m", p[0], p[1], p[2], p[3], 1.3)
		}, true},
		{"rope", []param{{"x", []int{B * T, 12}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.RoPE(p[0], 4, cos, sin) }, false},
		{"attention mha", []param{{"q", []int{B * T, 8}, 1}, {"k", []int{B * T, 8}, 1}, {"v", []int{B * T, 8}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node {
			return g.Attention(0, p[0], p[1], p[2], 2, 2, 4)
		}, false},
		{"attention gqa", []param{{"q", []int{B * T, 16}, 1}, {"k", []int{B * T, 8}, 1}, {"v", []int{B * T, 8}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node {
			return g.Attention(0, p[0], p[1], p[2], 4, 2, 4)
		}, false},
		{"swiglu", []param{{"g", []int{B * T, 6}, 2}, {"u", []int{B * T, 6}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.SwiGLU(p[0], p[1]) }, false},
		{"add", []param{{"a", []int{B * T, 3}, 1}, {"b", []int{B * T, 3}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node { return g.Add(p[0], p[1]) }, false},
		// x feeds two ops: its gradient is the sum G.Grad inserts, which
		// the executor computes itself.
		{"fan-out", []param{{"x", []int{B * T, 6}, 1}, {"w", []int{6}, 1}, {"W", []int{6, 6}, 1}}, func(g *Graph[float64], p []*G.Node) *G.Node {
			return g.Add(g.RMSNorm(p[0], p[1], 1e-5), g.Linear(p[0], p[2]))
		}, false},
	}
	// Small attention row blocks, so that T = 5 spans several.
	defer func(b int) { kern.AttnBlock = b }(kern.AttnBlock)
	kern.AttnBlock = 2
	for ci, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(ci), 1))
			feed := &Feed{B: B, T: T, Inputs: make([]int32, B*T), Targets: make([]int32, B*T)}
			for i := range feed.Inputs {
				feed.Inputs[i] = int32(rng.IntN(11))
				feed.Targets[i] = int32(rng.IntN(7))
			}
			if tc.masks {
				m := make([]float32, B*T*6)
				for i := range m {
					if rng.Float64() < 0.7 {
						m[i] = 1 / 0.7
					}
				}
				feed.Masks = map[string][]float32{"m": m}
			}
			g := NewGraph[float64](feed)
			var nodes []*G.Node
			var data [][]float64
			for _, p := range tc.params {
				n := 1
				for _, d := range p.shape {
					n *= d
				}
				d := randSlice(rng, n, p.scale)
				data = append(data, d)
				nodes = append(nodes, g.Param(p.name, p.shape, d, true))
			}
			out := tc.build(g, nodes)
			size := out.Shape().TotalSize()
			loss := g.apply(&weightedSum[float64]{r: randSlice(rng, size, 1)}, 0, out)
			checkGrads(t, g, loss, nodes, data)
		})
	}
}

// TestCrossEntropyGradient checks the loss itself, with ignored targets.
func TestCrossEntropyGradient(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 7))
	feed := &Feed{B: 2, T: 3, Inputs: make([]int32, 6), Targets: []int32{1, -1, 4, 0, 2, -1}}
	g := NewGraph[float64](feed)
	d := randSlice(rng, 6*5, 2)
	x := g.Param("logits", []int{6, 5}, d, true)
	loss := g.CrossEntropy(x)
	checkGrads(t, g, loss, []*G.Node{x}, [][]float64{d})
}

func checkGrads(t *testing.T, g *Graph[float64], loss *G.Node, nodes []*G.Node, data [][]float64) {
	t.Helper()
	m, err := g.Compile(loss, nodes...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	if _, err := m.Run(); err != nil {
		t.Fatal(err)
	}
	analytic := make([][]float64, len(nodes))
	for i := range nodes {
		gr, err := m.Grad(i)
		if err != nil {
			t.Fatal(err)
		}
		analytic[i] = append([]float64(nil), gr...)
	}
	const h = 1e-6
	var nonzero bool
	for i, d := range data {
		for j := range d {
			orig := d[j]
			d[j] = orig + h
			lp, err := m.Run()
			if err != nil {
				t.Fatal(err)
			}
			d[j] = orig - h
			lm, _ := m.Run()
			d[j] = orig
			num := (lp - lm) / (2 * h)
			a := analytic[i][j]
			if math.Abs(a) > 1e-9 {
				nonzero = true
			}
			if diff := math.Abs(num - a); diff > 1e-6*math.Max(1, math.Abs(num)) {
				t.Errorf("%s[%d]: analytic %.9g, finite difference %.9g", nodes[i].Name(), j, a, num)
			}
		}
	}
	if !nonzero {
		t.Error("every gradient is zero: the check proves nothing")
	}
	// Buffers are reused across runs: after all the perturbed runs, the
	// gradients must come out bit for bit as in the first run (a buffer
	// that is accumulated into but not zeroed would double them).
	if _, err := m.Run(); err != nil {
		t.Fatal(err)
	}
	for i := range nodes {
		gr, err := m.Grad(i)
		if err != nil {
			t.Fatal(err)
		}
		for j, v := range gr {
			if v != analytic[i][j] {
				t.Fatalf("%s[%d]: gradient %.17g on a later run, %.17g on the first", nodes[i].Name(), j, v, analytic[i][j])
			}
		}
	}
}
