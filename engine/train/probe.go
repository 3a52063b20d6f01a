package train

import (
	"fmt"
	"maps"
	"slices"
	"sync"

	"lens/engine/accel"
	"lens/engine/nn"
)

// Activations are one forward pass's hook points under TransformerLens
// names (hook_embed, blocks.0.hook_resid_post, blocks.0.attn.hook_pattern,
// model.layers.0.self_attn.q_proj.hook_in, ...), as model.Build names
// them. They stay valid until the next Probe. On a device only what is
// read crosses to the host.
type Activations interface {
	// Names lists the hook points, sorted.
	Names() []string
	// Read returns a hook point's values and shape: rows×width, or
	// B·heads×T×T for an attention pattern.
	Read(name string) ([]float32, []int, error)
	// LoRAHidden returns an adapted module's x·Aᵀ (rows×r) and r.
	LoRAHidden(module string) ([]float32, int, error)
}

// Probe runs a forward pass over a fixed batch (batch×SeqLen tokens) with
// the current weights and no dropout, where the training step runs: on
// the CPU graphs, split into shards like a training batch, or on the
// device through a forward-only step that shares the training step's
// weights and adapters.
func (t *Trainer) Probe(inputs, targets []int32, batch int) (Activations, error) {
	T := t.Config.SeqLen
	if batch <= 0 || len(inputs) != batch*T || len(targets) != batch*T {
		return nil, fmt.Errorf("probe: want %d×%d tokens, have %d inputs and %d targets", batch, T, len(inputs), len(targets))
	}
	if t.device != nil {
		return t.device.probe(t, inputs, targets, batch)
	}
	fs := t.probes[batch]
	if fs == nil {
		var err error
		if fs, err = newForwardShards(t.Model, t.Adapter, batch, T, false, 0); err != nil {
			return nil, err
		}
		t.probes[batch] = fs
		t.joined[batch] = &joinCache{bufs: map[*float32][]float32{}, at: map[*float32]int{}}
	}
	if _, err := fs.run(inputs, targets); err != nil {
		return nil, fmt.Errorf("probe: %w", err)
	}
	c := t.joined[batch]
	c.mu.Lock()
	c.gen++
	c.mu.Unlock()
	a := graphActs{T: T, cache: c}
	for _, f := range fs {
		a.gs = append(a.gs, f.net.Graph)
	}
	return a, nil
}

// joinCache holds the joined shards of the hook points read since the
// last probe, keyed by the first shard's buffer (q, k and v's hook_in are
// one buffer). Its buffers are reused by later probes, so a collection
// does not allocate a batch of activations per read.
type joinCache struct {
	mu   sync.Mutex
	gen  int
	bufs map[*float32][]float32
	at   map[*float32]int // the probe (gen) a buffer was joined for
}

// graphActs reads the hook nodes of one graph per shard; a read joins the
// shards' rows.
type graphActs struct {
	gs    []*nn.Graph[float32]
	T     int
	cache *joinCache // nil: join into new slices
}

func (a graphActs) pattern(name string) (int, bool) {
	var layer int
	if _, err := fmt.Sscanf(name, "blocks.%d.attn.hook_pattern", &layer); err != nil {
		return 0, false
	}
	_, ok := a.gs[0].Attn[layer]
	return layer, ok && name == fmt.Sprintf("blocks.%d.attn.hook_pattern", layer)
}

func (a graphActs) Names() []string {
	g := a.gs[0]
	names := slices.Collect(maps.Keys(g.Hooks))
	for layer := range g.Attn {
		names = append(names, fmt.Sprintf("blocks.%d.attn.hook_pattern", layer))
	}
	slices.Sort(names)
	return names
}

// join returns part(g) of every shard's graph one after the other: the
// shard's own buffer when there is one shard, else the joined copy.
func (a graphActs) join(part func(g *nn.Graph[float32]) ([]float32, error)) ([]float32, error) {
	if len(a.gs) == 1 {
		return part(a.gs[0])
	}
	first, err := part(a.gs[0])
	if err != nil || len(first) == 0 {
		return first, err
	}
	n := len(first) * len(a.gs)
	var out []float32
	if c := a.cache; c != nil {
		c.mu.Lock()
		defer c.mu.Unlock()
		key := &first[0]
		out = c.bufs[key]
		if len(out) == n && c.at[key] == c.gen {
			return out, nil
		}
		if len(out) != n {
			out = make([]float32, n)
			c.bufs[key] = out
		}
		c.at[key] = c.gen
	} else {
		out = make([]float32, n)
	}
	for i, g := range a.gs {
		x, err := part(g)
		if err != nil {
			return nil, err
		}
		copy(out[i*len(first):], x)
	}
	return out, nil
}

func (a graphActs) Read(name string) ([]float32, []int, error) {
	if n, ok := a.gs[0].Hooks[name]; ok {
		x, err := a.join(func(g *nn.Graph[float32]) ([]float32, error) { return nn.Data[float32](g.Hooks[name]) })
		shape := n.Shape().Clone()
		shape[0] *= len(a.gs)
		return x, shape, err
	}
	// Attention patterns live in the attention kernel, not in a graph node.
	if layer, ok := a.pattern(name); ok {
		P, _ := a.join(func(g *nn.Graph[float32]) ([]float32, error) { return g.Attn[layer].Probs(), nil })
		return P, []int{len(P) / (a.T * a.T), a.T, a.T}, nil
	}
	return nil, nil, fmt.Errorf("no hook point %s", name)
}

func (a graphActs) LoRAHidden(module string) ([]float32, int, error) {
	p, ok := a.gs[0].LoRA[module]
	if !ok {
		return nil, 0, fmt.Errorf("%s has no adapter", module)
	}
	h, _ := a.join(func(g *nn.Graph[float32]) ([]float32, error) { return g.LoRA[module].Hidden(), nil })
	f := a.gs[0].Feed
	return h, len(p.Hidden()) / (f.B * f.T), nil
}

// probe runs the forward pass of Trainer.Probe on the device.
func (o *onDevice) probe(t *Trainer, inputs, targets []int32, batch int) (Activations, error) {
	if err := o.sync(t.Params); err != nil {
		return nil, err
	}
	s := o.probes[batch]
	if s == nil {
		var err error
		if s, err = o.step.ForwardOnly(batch); err != nil {
			return nil, fmt.Errorf("probe batch on %s: %w", o.dev.Name(), err)
		}
		if o.probes == nil {
			o.probes = map[int]*accel.Step{}
		}
		o.probes[batch] = s
	}
	if _, err := s.Loss(inputs, targets); err != nil {
		return nil, fmt.Errorf("probe batch on %s: %w", o.dev.Name(), err)
	}
	return &deviceActs{s: s, got: map[accel.Buf][]float32{}}, nil
}

// deviceActs downloads a hook point when it is first read, once per
// buffer (q, k and v's hook_in are one buffer); collectors read
// concurrently.
type deviceActs struct {
	s   *accel.Step
	mu  sync.Mutex
	got map[accel.Buf][]float32
}

func (a *deviceActs) Names() []string { return a.s.HookNames() }

func (a *deviceActs) download(what string, b accel.Buf) ([]float32, error) {
	a.mu.Lock()
	defer a.mu.Unlock()
	if x, ok := a.got[b]; ok {
		return x, nil
	}
	x := make([]float32, b.Len())
	if err := a.s.Device().Download(x, b); err != nil {
		return nil, fmt.Errorf("download %s: %w", what, err)
	}
	a.got[b] = x
	return x, nil
}

func (a *deviceActs) Read(name string) ([]float32, []int, error) {
	b, shape, ok := a.s.Hook(name)
	if !ok {
		return nil, nil, fmt.Errorf("no hook point %s", name)
	}
	x, err := a.download(name, b)
	return x, shape, err
}

func (a *deviceActs) LoRAHidden(module string) ([]float32, int, error) {
	b, r, ok := a.s.LoRAHidden(module)
	if !ok {
		return nil, 0, fmt.Errorf("%s has no adapter", module)
	}
	x, err := a.download(module+" x·Aᵀ", b)
	return x, r, err
}
