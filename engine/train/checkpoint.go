package train

import (
	"fmt"
	"maps"
	"slices"
	"sort"
	"strings"

	gorgonia "gorgonia.org/gorgonia"

	"lens/engine/model"
	"lens/engine/nn"
)

// Activation checkpointing (Config.Checkpointing). The whole-model graph
// keeps every op's output, gradient and kernel state for the whole step,
// so its activation memory grows with the number of layers. A checkpointed
// step instead runs the model as separate graphs over one shard's feed:
// the embedding, one block graph per distinct block shape (built once, at
// a representative layer, and run for every layer of that shape with the
// layer's weights, adapters and dropout masks bound in turn), and the
// final norm, head and loss. The forward pass keeps only each layer's
// input (one N×hidden residual-stream tensor per layer); the backward pass
// walks the layers downwards, re-running each block's forward from its
// kept input right before its backward, with the gradient of its output
// fed in (nn.Seed). Each block graph runs the same kernels on the same
// values as the whole graph, and every gradient that the whole graph sums
// (a residual stream feeding a norm and an add) is summed the same way
// here, so losses and gradients are bit-identical; the cost is one more
// forward pass of the blocks.

// ckptStep is one shard's checkpointed training step. It stands in for
// the shard's whole-graph machine: Run, then Grad(i) by sorted name.
type ckptStep struct {
	m      *model.Model
	train  bool     // forward and backward; else forward only
	feed   *nn.Feed // the shard's feed
	embed  *ckptPart
	head   *ckptPart
	layer  []*ckptBlock // by layer
	blocks []*ckptBlock // the distinct ones
	kept   [][]float32  // kept[i]: the input of layer i; kept[L]: of the head
	dy     []float32    // the gradient of the residual stream being walked down
	names  []string     // trainable parameters, sorted
	data   map[string][]float32
	shapes map[string][]int
	grads  [][]float32 // by names
	// mask, when set, fills a module's dropout mask (the shard's rows) as
	// its layer runs, so only one layer's masks are held; it reports false
	// when there is none. Unset, masks are read from the feed.
	mask func(module string, dst []float32) bool
}

// ckptPart is the embedding or the head graph.
type ckptPart struct {
	net  *model.Net[float32]
	mach *nn.Machine[float32]
}

// ckptBlock is a block graph and, per layer it runs for, what it binds.
type ckptBlock struct {
	rep    int // the layer it was built at
	feed   *nn.Feed
	net    *model.Net[float32]
	mach   *nn.Machine[float32]
	wrt    []string               // trainable parameters (rep layer's names) in gradient order; In's gradient comes last
	mods   []string               // adapted modules, relative to the layer
	packed map[string]*swapPacked // packed weights, relative
	masks  map[string][]float32   // dropout masks drawn per layer (ckptStep.mask), relative
	bind   map[int][]nn.Binding   // by layer: its parameters and kept input
	grad   map[int][]int          // by layer: the index in ckptStep.names of each wrt
}

// swapPacked is a packed weight that a block graph widens, switched per
// layer.
type swapPacked struct{ p nn.Packed }

func (s *swapPacked) Dims() (int, int)    { return s.p.Dims() }
func (s *swapPacked) Widen(dst []float32) { s.p.Widen(dst) }

// swapTable is a swapPacked over nn.PackedTable weights (NF4, bf16), which
// the block graph widens a slab at a time.
type swapTable struct{ *swapPacked }

func (s swapTable) WidenRows(r0, r1 int, dst []float32) {
	s.p.(nn.PackedTable).WidenRows(r0, r1, dst)
}
func (s swapTable) WidenCols(c0, c1 int, dst []float32) {
	s.p.(nn.PackedTable).WidenCols(c0, c1, dst)
}

func layerPrefix(i int) string { return fmt.Sprintf("model.layers.%d.", i) }

// blockKey names what a layer's block graph is built from: two layers
// with one key run on one graph.
func blockKey(m *model.Model, ads map[string]model.Adapter, i int) string {
	c := m.Config
	p := layerPrefix(i)
	var parts []string
	for name, w := range m.Weights {
		if rel, ok := strings.CutPrefix(name, p); ok {
			_, packed := m.Packed[name]
			parts = append(parts, fmt.Sprintf("w %s %v %t", rel, w.Shape, packed))
		}
	}
	for path, a := range ads {
		if rel, ok := strings.CutPrefix(path, p); ok {
			parts = append(parts, fmt.Sprintf("a %s %v %v %v", rel, a.A.Shape, a.B.Shape, a.Scale))
		}
	}
	sort.Strings(parts)
	return fmt.Sprintf("rope %s window %d\n%s", c.LayerRopeKey(i), c.LayerWindow(i), strings.Join(parts, "\n"))
}

// newCkptStep builds the graphs of one shard's checkpointed step over its
// feed: a training step (LoRA only), or with train unset a forward pass
// to the loss (evaluation), one layer's activations at a time.
func newCkptStep(m *model.Model, ads map[string]model.Adapter, feed *nn.Feed, cores, headChunk int, train bool) (*ckptStep, error) {
	c := m.Config
	L := c.NumHiddenLayers
	s := &ckptStep{m: m, train: train, feed: feed, layer: make([]*ckptBlock, L), kept: make([][]float32, L+1),
		data: map[string][]float32{}, shapes: map[string][]int{}}
	n := feed.N() * c.HiddenSize
	for i := range s.kept {
		if !train && i >= 2 {
			// A forward pass reads only the layer before's output: two
			// buffers in turn (134 MB less at 1B, 1024 tokens).
			s.kept[i] = s.kept[i%2]
			continue
		}
		s.kept[i] = make([]float32, n)
	}
	s.dy = make([]float32, n)
	for path, a := range ads {
		s.data[path+".lora_A"], s.shapes[path+".lora_A"] = a.A.Data, a.A.Shape
		s.data[path+".lora_B"], s.shapes[path+".lora_B"] = a.B.Data, a.B.Shape
	}
	s.names = slices.Sorted(maps.Keys(s.data))
	s.grads = make([][]float32, len(s.names))
	index := map[string]int{}
	for i, name := range s.names {
		if train {
			s.grads[i] = make([]float32, len(s.data[name]))
		}
		index[name] = i
	}

	part := func(p model.Part, chunk int) (*model.Net[float32], *nn.Graph[float32], error) {
		g := nn.NewGraph[float32](feed)
		g.Cores, g.HeadChunk = cores, chunk
		net, err := model.BuildPart(g, m, ads, false, p)
		return net, g, err
	}
	net, g, err := part(model.Part{Embed: true}, 0)
	if err != nil {
		return nil, err
	}
	mach, err := g.Compile(net.Out)
	if err != nil {
		return nil, err
	}
	s.embed = &ckptPart{net: net, mach: mach}
	if net, g, err = part(model.Part{Lo: L, Hi: L, Head: true}, headChunk); err != nil {
		return nil, err
	}
	var wrt []*gorgonia.Node
	if train {
		wrt = append(wrt, net.In)
	}
	if mach, err = g.Compile(net.Loss, wrt...); err != nil {
		return nil, err
	}
	s.head = &ckptPart{net: net, mach: mach}
	b, err := nn.NewBinding(net.In, s.kept[L])
	if err == nil {
		err = b.Bind() // the head's input never changes
	}
	if err != nil {
		return nil, err
	}

	byKey := map[string]*ckptBlock{}
	for i := range L {
		key := blockKey(m, ads, i)
		blk := byKey[key]
		if blk == nil {
			if blk, err = newCkptBlock(m, ads, feed, cores, i, s.dy, train); err != nil {
				return nil, fmt.Errorf("block graph of layer %d: %w", i, err)
			}
			byKey[key] = blk
			s.blocks = append(s.blocks, blk)
		}
		if err := blk.addLayer(m, ads, i, s.kept[i], index); err != nil {
			return nil, fmt.Errorf("layer %d: %w", i, err)
		}
		s.layer[i] = blk
	}
	return s, nil
}

// newCkptBlock builds the block graph of layer rep, its loss the seed dy
// when it trains.
func newCkptBlock(m *model.Model, ads map[string]model.Adapter, feed *nn.Feed, cores, rep int, dy []float32, train bool) (*ckptBlock, error) {
	p := layerPrefix(rep)
	blk := &ckptBlock{rep: rep, feed: &nn.Feed{}, packed: map[string]*swapPacked{}, masks: map[string][]float32{},
		bind: map[int][]nn.Binding{}, grad: map[int][]int{}}
	*blk.feed = *feed
	blk.feed.Masks = map[string][]float32{}
	// The layer's packed weights are widened through switchable wrappers.
	bm := *m
	bm.Packed = maps.Clone(m.Packed)
	for name, pw := range m.Packed {
		if rel, ok := strings.CutPrefix(name, p); ok {
			sp := &swapPacked{p: pw}
			blk.packed[rel] = sp
			bm.Packed[name] = sp
			if _, ok := pw.(nn.PackedTable); ok {
				bm.Packed[name] = swapTable{sp}
			}
		}
	}
	for path := range ads {
		if rel, ok := strings.CutPrefix(path, p); ok {
			blk.mods = append(blk.mods, rel)
		}
	}
	sort.Strings(blk.mods)
	g := nn.NewGraph[float32](blk.feed)
	// Attention recomputes its probabilities in backward and SwiGLU its
	// sigmoids, as the block's forward is recomputed: no B·heads×T×T or
	// N×intermediate state held (the same bits); buffers
	// never live at once share memory (the MLP's dead ones hold the
	// attention's gradients). The step reads only Out after Forward and
	// the gradients after Run.
	g.Cores, g.Recompute, g.ShareBuffers = cores, true, true
	net, err := model.BuildPart(g, &bm, ads, false, model.Part{Lo: rep, Hi: rep + 1})
	if err != nil {
		return nil, err
	}
	blk.net = net
	if !train {
		blk.mach, err = g.Compile(net.Out)
		return blk, err
	}
	for name := range net.Params {
		if strings.HasSuffix(name, ".lora_A") || strings.HasSuffix(name, ".lora_B") {
			blk.wrt = append(blk.wrt, name)
		}
	}
	sort.Strings(blk.wrt)
	wrt := make([]*gorgonia.Node, 0, len(blk.wrt)+1)
	for _, name := range blk.wrt {
		wrt = append(wrt, net.Params[name])
	}
	wrt = append(wrt, net.In)
	if blk.mach, err = g.Compile(g.Seed(net.Out, dy), wrt...); err != nil {
		return nil, err
	}
	return blk, nil
}

// addLayer prepares the bindings that run the block as layer i, its input
// kept in in.
func (b *ckptBlock) addLayer(m *model.Model, ads map[string]model.Adapter, i int, in []float32, index map[string]int) error {
	from, to := layerPrefix(b.rep), layerPrefix(i)
	var binds []nn.Binding
	for name, n := range b.net.Params {
		rel, ok := strings.CutPrefix(name, from)
		if !ok {
			return fmt.Errorf("block parameter %s is outside layer %d", name, b.rep)
		}
		var data []float32
		switch {
		case strings.HasSuffix(rel, ".lora_A"):
			data = ads[to+strings.TrimSuffix(rel, ".lora_A")].A.Data
		case strings.HasSuffix(rel, ".lora_B"):
			data = ads[to+strings.TrimSuffix(rel, ".lora_B")].B.Data
		default:
			w := m.Weights[to+rel]
			if w == nil {
				return fmt.Errorf("no weight %s", to+rel)
			}
			data = w.Data
		}
		bd, err := nn.NewBinding(n, data)
		if err != nil {
			return err
		}
		binds = append(binds, bd)
	}
	bd, err := nn.NewBinding(b.net.In, in)
	if err != nil {
		return err
	}
	b.bind[i] = append(binds, bd)
	for _, name := range b.wrt {
		j, ok := index[to+strings.TrimPrefix(name, from)]
		if !ok {
			return fmt.Errorf("no trainable parameter %s", to+strings.TrimPrefix(name, from))
		}
		b.grad[i] = append(b.grad[i], j)
	}
	for rel := range b.packed {
		if m.Packed[to+rel] == nil {
			return fmt.Errorf("weight %s is not packed as in layer %d", to+rel, b.rep)
		}
	}
	return nil
}

// switchTo makes the block graph layer i: its weights, adapters, dropout
// masks (drawn by mask when set, else the feed's) and kept input, and the
// shard's current batch.
func (b *ckptBlock) switchTo(m *model.Model, feed *nn.Feed, i int, mask func(string, []float32) bool) error {
	for _, bd := range b.bind[i] {
		if err := bd.Bind(); err != nil {
			return err
		}
	}
	from, to := layerPrefix(b.rep), layerPrefix(i)
	for rel, sp := range b.packed {
		sp.p = m.Packed[to+rel]
	}
	b.feed.Inputs, b.feed.Targets = feed.Inputs, feed.Targets
	b.feed.Positions, b.feed.Segments = feed.Positions, feed.Segments
	for _, rel := range b.mods {
		if mask != nil {
			buf := b.masks[rel]
			if buf == nil {
				a := b.net.Params[from+rel+".lora_A"]
				buf = make([]float32, feed.N()*a.Shape()[1])
				b.masks[rel] = buf
			}
			if mask(to+rel, buf) {
				b.feed.Masks[from+rel] = buf
				continue
			}
		}
		if mk := feed.Masks[to+rel]; mk != nil {
			b.feed.Masks[from+rel] = mk
		} else {
			delete(b.feed.Masks, from+rel)
		}
	}
	return nil
}

// Run runs the step's forward and backward passes and returns the loss;
// the gradients stay in Grad until the next run.
func (s *ckptStep) Run() (float64, error) {
	m := s.m
	if err := s.forward(m); err != nil {
		return 0, err
	}
	loss, err := s.head.mach.Run()
	if err != nil {
		return 0, fmt.Errorf("head: %w", err)
	}
	if !s.train {
		return loss, nil
	}
	dx, err := s.head.mach.Grad(0)
	if err != nil {
		return 0, fmt.Errorf("head: input gradient: %w", err)
	}
	copy(s.dy, dx)
	for i := len(s.layer) - 1; i >= 0; i-- {
		b := s.layer[i]
		if err := b.switchTo(m, s.feed, i, s.mask); err != nil {
			return 0, fmt.Errorf("layer %d: %w", i, err)
		}
		if _, err := b.mach.Run(); err != nil {
			return 0, fmt.Errorf("layer %d: %w", i, err)
		}
		for j, k := range b.grad[i] {
			g, err := b.mach.Grad(j)
			if err != nil {
				return 0, fmt.Errorf("layer %d: gradient of %s: %w", i, s.names[k], err)
			}
			copy(s.grads[k], g)
		}
		dx, err := b.mach.Grad(len(b.wrt))
		if err != nil {
			return 0, fmt.Errorf("layer %d: input gradient: %w", i, err)
		}
		copy(s.dy, dx)
	}
	return loss, nil
}

// forward runs the embedding and every block forward, keeping each
// layer's input.
func (s *ckptStep) forward(m *model.Model) error {
	if err := s.embed.mach.Forward(s.embed.net.Out); err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	x, err := nn.Data[float32](s.embed.net.Out)
	if err != nil {
		return fmt.Errorf("embedding: %w", err)
	}
	copy(s.kept[0], x)
	for i, b := range s.layer {
		if err := b.switchTo(m, s.feed, i, s.mask); err != nil {
			return fmt.Errorf("layer %d: %w", i, err)
		}
		if err := b.mach.Forward(b.net.Out); err != nil {
			return fmt.Errorf("layer %d forward: %w", i, err)
		}
		y, err := nn.Data[float32](b.net.Out)
		if err != nil {
			return fmt.Errorf("layer %d forward: %w", i, err)
		}
		copy(s.kept[i+1], y)
	}
	return nil
}

// Grad returns the gradient of names[i] from the last run.
func (s *ckptStep) Grad(i int) ([]float32, error) { return s.grads[i], nil }

// Close releases the graphs.
func (s *ckptStep) Close() error {
	s.embed.mach.Close()
	s.head.mach.Close()
	for _, b := range s.blocks {
		b.mach.Close()
	}
	return nil
}
