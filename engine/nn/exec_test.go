package nn

import (
	"math"
	"math/rand/v2"
	"runtime"
	"testing"

	G "gorgonia.org/gorgonia"
)

// smallModel builds a one-block float32 model on a fresh graph: embedding,
// RMSNorm, LoRA projections, RoPE, attention, SwiGLU, residual adds and the
// loss, with the LoRA matrices trainable.
func smallModel(t *testing.T, rng *rand.Rand, B, T int) (*Graph[float32], *G.Node, []*G.Node, *G.Node) {
	t.Helper()
	return smallModelWith(t, rng, B, T, false)
}

// smallModelWith is smallModel, with Graph.Recompute set as asked.
func smallModelWith(t *testing.T, rng *rand.Rand, B, T int, recompute bool) (*Graph[float32], *G.Node, []*G.Node, *G.Node) {
	t.Helper()
	const V, H, I, r = 13, 8, 12, 2
	feed := &Feed{B: B, T: T, Inputs: make([]int32, B*T), Targets: make([]int32, B*T)}
	for i := range feed.Inputs {
		feed.Inputs[i] = int32(rng.IntN(V))
		feed.Targets[i] = int32(rng.IntN(V))
	}
	g := NewGraph[float32](feed)
	g.Recompute = recompute
	p := func(name string, trainable bool, shape ...int) *G.Node {
		n := 1
		for _, d := range shape {
			n *= d
		}
		d := make([]float32, n)
		for i := range d {
			d[i] = float32(rng.NormFloat64() * 0.5)
		}
		return g.Param(name, shape, d, trainable)
	}
	emb := p("emb", false, V, H)
	a, b := p("a", true, r, H), p("b", true, H, r)
	x := g.Embed(emb)
	n := g.RMSNorm(x, p("n1", false, H), 1e-5)
	cos, sin := RopeTable(T, 4, 10000)
	q := g.RoPE(g.LoRALinear("q", n, p("wq", false, H, H), a, b, 2), 4, cos, sin)
	k := g.RoPE(g.Linear(n, p("wk", false, H, H)), 4, cos, sin)
	v := g.Linear(n, p("wv", false, H, H))
	x = g.Add(x, g.Attention(0, q, k, v, 2, 2, 4))
	n = g.RMSNorm(x, p("n2", false, H), 1e-5)
	h := g.Hook("mlp", g.SwiGLU(g.Linear(n, p("wg", false, I, H)), g.Linear(n, p("wu", false, I, H))))
	x = g.Add(x, g.Linear(h, p("wd", false, H, I)))
	return g, g.CrossEntropy(g.Linear(x, emb)), []*G.Node{a, b}, h
}

// TestRunReusesBuffers checks what buffer reuse promises: repeated runs
// give bit-identical loss, gradients and activations, node values are the
// op's buffers, and a run allocates nothing but one closure per parallel
// kernel call.
func TestRunReusesBuffers(t *testing.T) {
	g, loss, wrt, hook := smallModel(t, rand.New(rand.NewPCG(1, 2)), 2, 8)
	m, err := g.Compile(loss, wrt...)
	if err != nil {
		t.Fatal(err)
	}
	defer m.Close()
	snapshot := func() (float64, [][]float32, []float32) {
		l, err := m.Run()
		if err != nil {
			t.Fatal(err)
		}
		var grads [][]float32
		for i := range wrt {
			gr, err := m.Grad(i)
			if err != nil {
				t.Fatal(err)
			}
			grads = append(grads, append([]float32(nil), gr...))
		}
		h, err := Data[float32](hook)
		if err != nil {
			t.Fatal(err)
		}
		return l, grads, append([]float32(nil), h...)
	}
	l1, g1, h1 := snapshot()
	first, _ := Data[float32](hook)
	for range 3 {
		l2, g2, h2 := snapshot()
		if l2 != l1 {
			t.Fatalf("loss %v on a later run, %v on the first", l2, l1)
		}
		for i := range g1 {
			for j := range g1[i] {
				if g1[i][j] != g2[i][j] {
					t.Fatalf("gradient %d[%d]: %v on a later run, %v on the first", i, j, g2[i][j], g1[i][j])
				}
			}
		}
		for j := range h1 {
			if h1[j] != h2[j] {
				t.Fatalf("activation %d: %v on a later run, %v on the first", j, h2[j], h1[j])
			}
		}
	}
	if now, _ := Data[float32](hook); &now[0] != &first[0] {
		t.Error("the hook's buffer changed between runs")
	}
	if v, ok := hook.Value().(interface{ Uintptr() uintptr }); !ok || v.Uintptr() == 0 {
		t.Errorf("hook node has no tensor value after a run: %T", hook.Value())
	}
	// One closure per call of a parallel kernel (RMSNorm, RoPE, attention,
	// SwiGLU, residual adds and gradient sums: 14 calls forward and
	// backward here), nothing per element.
	if allocs := testing.AllocsPerRun(5, func() { m.Run() }); allocs > 14 {
		t.Errorf("a run allocates %v times, want at most 14", allocs)
	}
}

// TestRunIndependentOfWorkers checks that loss and gradients are bit for bit
// the same whatever the number of goroutines the kernels split work over
// (resumed runs may land on a machine with another core count).
func TestRunIndependentOfWorkers(t *testing.T) {
	var ref []float32
	for _, procs := range []int{1, 2, 3, 5} {
		func() {
			defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(procs))
			// 160 rows: several row chunks and attention blocks.
			g, loss, wrt, _ := smallModel(t, rand.New(rand.NewPCG(9, 9)), 2, 80)
			m, err := g.Compile(loss, wrt...)
			if err != nil {
				t.Fatal(err)
			}
			l, err := m.Run()
			if err != nil {
				t.Fatal(err)
			}
			got := []float32{float32(l)}
			for i := range wrt {
				gr, err := m.Grad(i)
				if err != nil {
					t.Fatal(err)
				}
				got = append(got, gr...)
			}
			if ref == nil {
				ref = got
				return
			}
			for i := range got {
				if math.Float32bits(got[i]) != math.Float32bits(ref[i]) {
					t.Fatalf("GOMAXPROCS=%d: value %d is %v, with 1 it is %v", procs, i, got[i], ref[i])
				}
			}
		}()
	}
}

// TestShareBuffers checks Graph.ShareBuffers and Graph.Recompute (SwiGLU
// in slabs that cut rows, attention without kept probabilities): runs over
// changing inputs give the loss, gradients and hooked activation bit for
// bit as without them (a buffer written while another user still needed
// it would show as stale or clobbered values), and the pool holds fewer
// values than the buffers placed in it.
func TestShareBuffers(t *testing.T) {
	defer func(n int) { swigluSlab = n }(swigluSlab)
	swigluSlab = 7
	type result struct {
		loss  float64
		grads [][]float32
		hook  []float32
	}
	run := func(share bool) ([]result, *bufPool[float32]) {
		rng := rand.New(rand.NewPCG(4, 4))
		g, loss, wrt, hook := smallModelWith(t, rng, 2, 24, share)
		g.ShareBuffers = share
		m, err := g.Compile(loss, wrt...)
		if err != nil {
			t.Fatal(err)
		}
		defer m.Close()
		var out []result
		for step := range 3 {
			for i := range g.Feed.Inputs {
				g.Feed.Inputs[i] = int32((i*7 + step*5) % 13)
			}
			l, err := m.Run()
			if err != nil {
				t.Fatal(err)
			}
			r := result{loss: l}
			for i := range wrt {
				gr, err := m.Grad(i)
				if err != nil {
					t.Fatal(err)
				}
				r.grads = append(r.grads, append([]float32(nil), gr...))
			}
			h, err := Data[float32](hook)
			if err != nil {
				t.Fatal(err)
			}
			r.hook = append([]float32(nil), h...)
			out = append(out, r)
		}
		return out, m.ex.pool
	}
	want, _ := run(false)
	got, pool := run(true)
	for s := range want {
		if got[s].loss != want[s].loss {
			t.Fatalf("run %d: loss %v shared, %v not", s, got[s].loss, want[s].loss)
		}
		for i := range want[s].grads {
			for j, w := range want[s].grads[i] {
				if math.Float32bits(got[s].grads[i][j]) != math.Float32bits(w) {
					t.Fatalf("run %d: gradient %d[%d] = %v shared, %v not", s, i, j, got[s].grads[i][j], w)
				}
			}
		}
		for j, w := range want[s].hook {
			if math.Float32bits(got[s].hook[j]) != math.Float32bits(w) {
				t.Fatalf("run %d: hook[%d] = %v shared, %v not", s, j, got[s].hook[j], w)
			}
		}
	}
	held, placed := 0, 0
	for _, c := range pool.chunks {
		held += len(c.buf)
		for _, p := range c.placed {
			placed += p.n
		}
	}
	if held >= placed {
		t.Errorf("the pool holds %d values for %d placed: nothing shared", held, placed)
	}
	t.Logf("pool holds %d values for %d placed", held, placed)
}
