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
// the CPU graph, or on the device through a forward-only step that shares
// the training step's weights and adapters.
func (t *Trainer) Probe(inputs, targets []int32, batch int) (Activations, error) {
	if t.device == nil {
		_, net, err := t.Forward(inputs, targets, batch)
		if err != nil {
			return nil, err
		}
		return graphActs{g: net.Graph, T: t.Config.SeqLen}, nil
	}
	return t.device.probe(t, inputs, targets, batch)
}

// graphActs reads the gorgonia graph's hook nodes.
type graphActs struct {
	g *nn.Graph[float32]
	T int
}

func (a graphActs) pattern(name string) (int, bool) {
	var layer int
	if _, err := fmt.Sscanf(name, "blocks.%d.attn.hook_pattern", &layer); err != nil {
		return 0, false
	}
	_, ok := a.g.Attn[layer]
	return layer, ok && name == fmt.Sprintf("blocks.%d.attn.hook_pattern", layer)
}

func (a graphActs) Names() []string {
	names := slices.Collect(maps.Keys(a.g.Hooks))
	for layer := range a.g.Attn {
		names = append(names, fmt.Sprintf("blocks.%d.attn.hook_pattern", layer))
	}
	slices.Sort(names)
	return names
}

func (a graphActs) Read(name string) ([]float32, []int, error) {
	if n, ok := a.g.Hooks[name]; ok {
		x, err := nn.Data[float32](n)
		return x, n.Shape().Clone(), err
	}
	// Attention patterns live in the attention kernel, not in a graph node.
	if layer, ok := a.pattern(name); ok {
		P := a.g.Attn[layer].Probs()
		return P, []int{len(P) / (a.T * a.T), a.T, a.T}, nil
	}
	return nil, nil, fmt.Errorf("no hook point %s", name)
}

func (a graphActs) LoRAHidden(module string) ([]float32, int, error) {
	p, ok := a.g.LoRA[module]
	if !ok {
		return nil, 0, fmt.Errorf("%s has no adapter", module)
	}
	h := p.Hidden()
	return h, len(h) / (a.g.Feed.B * a.g.Feed.T), nil
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
