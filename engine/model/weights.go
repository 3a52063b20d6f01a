package model

import (
	"fmt"
	"math"
	"sort"

	"lens/engine/nn"
)

// Tensor is a named float32 array in row-major order.
type Tensor struct {
	Shape []int
	Data  []float32
}

// Size is the number of elements the shape holds.
func Size(shape []int) int {
	n := 1
	for _, d := range shape {
		n *= d
	}
	return n
}

// Model is a configuration and its weights under HF tensor names.
type Model struct {
	Config  Config
	Weights map[string]*Tensor
	// Packed holds base weights kept in a compact form (see Quantized);
	// their Weights entries keep the shape and have no Data.
	Packed map[string]nn.Packed
	// Quant names the form of the packed weights ("" when none are).
	Quant string
}

// Linear modules of a layer, in HF's order: the names LoRA targets use.
var (
	AttnModules = []string{"q_proj", "k_proj", "v_proj", "o_proj"}
	MLPModules  = []string{"gate_proj", "up_proj", "down_proj"}
)

// ModulePath is the HF path of a linear module of layer i, e.g.
// model.layers.3.self_attn.q_proj.
func ModulePath(layer int, module string) string {
	for _, m := range AttnModules {
		if m == module {
			return fmt.Sprintf("model.layers.%d.self_attn.%s", layer, module)
		}
	}
	return fmt.Sprintf("model.layers.%d.mlp.%s", layer, module)
}

// LinearModules lists every adaptable linear module path, layer by layer.
func (c Config) LinearModules() []string {
	var out []string
	for i := range c.NumHiddenLayers {
		for _, m := range append(append([]string{}, AttnModules...), MLPModules...) {
			out = append(out, ModulePath(i, m))
		}
	}
	return out
}

// Shapes returns every weight's name and shape, in HF's naming.
func (c Config) Shapes() map[string][]int {
	h, hd := c.HiddenSize, c.Head()
	q, kv := c.NumAttentionHeads*hd, c.NumKeyValueHeads*hd
	s := map[string][]int{
		"model.embed_tokens.weight": {c.VocabSize, h},
		"model.norm.weight":         {h},
	}
	if !c.TieWordEmbeddings {
		s["lm_head.weight"] = []int{c.VocabSize, h}
	}
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		s[p+"input_layernorm.weight"] = []int{h}
		s[p+"post_attention_layernorm.weight"] = []int{h}
		s[p+"self_attn.q_proj.weight"] = []int{q, h}
		s[p+"self_attn.k_proj.weight"] = []int{kv, h}
		s[p+"self_attn.v_proj.weight"] = []int{kv, h}
		s[p+"self_attn.o_proj.weight"] = []int{h, q}
		s[p+"mlp.gate_proj.weight"] = []int{c.IntermediateSize, h}
		s[p+"mlp.up_proj.weight"] = []int{c.IntermediateSize, h}
		s[p+"mlp.down_proj.weight"] = []int{h, c.IntermediateSize}
		if c.QKVBias() {
			s[p+"self_attn.q_proj.bias"] = []int{q}
			s[p+"self_attn.k_proj.bias"] = []int{kv}
			s[p+"self_attn.v_proj.bias"] = []int{kv}
		}
		if c.OBias() {
			s[p+"self_attn.o_proj.bias"] = []int{h}
		}
		if c.QKNorm() {
			s[p+"self_attn.q_norm.weight"] = []int{hd}
			s[p+"self_attn.k_norm.weight"] = []int{hd}
		}
		if c.Gemma() {
			s[p+"pre_feedforward_layernorm.weight"] = []int{h}
			s[p+"post_feedforward_layernorm.weight"] = []int{h}
		}
	}
	return s
}

// Names returns the weight names in a stable order.
func (m *Model) Names() []string {
	names := make([]string, 0, len(m.Weights))
	for n := range m.Weights {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// New initialises a model as HF's LlamaPreTrainedModel does: linear and
// embedding weights normal(0, initializer_range), norm weights 1 (0 under
// Gemma's (1 + w)), biases 0; weights drawn in name order from one PCG
// stream seeded by seed (NewQuantized).
func New(cfg Config, seed uint64) (*Model, error) {
	m, _, err := NewQuantized(cfg, seed, "")
	return m, err
}

// Clone returns a deep copy.
func (m *Model) Clone() *Model {
	c := &Model{Config: m.Config, Weights: make(map[string]*Tensor, len(m.Weights))}
	for n, t := range m.Weights {
		c.Weights[n] = &Tensor{Shape: append([]int(nil), t.Shape...), Data: append([]float32(nil), t.Data...)}
	}
	c.Packed, c.Quant = m.Packed, m.Quant // read-only: shared
	return c
}

// check verifies that the weights are exactly those the config asks for.
func (m *Model) check() error {
	want := m.Config.Shapes()
	for n, shape := range want {
		t, ok := m.Weights[n]
		if !ok {
			return fmt.Errorf("weight %s is missing", n)
		}
		if !equalShape(t.Shape, shape) {
			return fmt.Errorf("weight %s has shape %v, config wants %v", n, t.Shape, shape)
		}
		if _, ok := m.Packed[n]; ok && t.Data == nil {
			continue
		}
		if len(t.Data) != Size(shape) {
			return fmt.Errorf("weight %s has %d values, shape %v needs %d", n, len(t.Data), shape, Size(shape))
		}
		for i, v := range t.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				return fmt.Errorf("weight %s has a non-finite value at %d", n, i)
			}
		}
	}
	for n := range m.Weights {
		if _, ok := want[n]; !ok {
			return fmt.Errorf("weight %s is not part of a %d-layer model with this config", n, m.Config.NumHiddenLayers)
		}
	}
	return nil
}

func equalShape(a, b []int) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
