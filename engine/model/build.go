package model

import (
	"fmt"

	G "gorgonia.org/gorgonia"

	"lens/engine/nn"
)

// Adapter is one LoRA module as the graph sees it: A (r×in), B (out×r) and
// the scale s, so that y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ.
type Adapter struct {
	A, B  *Tensor
	Scale float64
}

// Net is a built forward graph: its loss, logits and the parameter nodes
// by name (HF names for base weights, "<module>.lora_A"/"<module>.lora_B"
// for adapters).
type Net[T nn.Float] struct {
	Graph  *nn.Graph[T]
	Loss   *G.Node
	Logits *G.Node
	Params map[string]*G.Node
	Data   map[string][]T // each parameter's backing data in the graph
}

// view returns d as []T, sharing memory when T is float32.
func view[T nn.Float](d []float32) []T {
	if s, ok := any(d).([]T); ok {
		return s
	}
	out := make([]T, len(d))
	for i, v := range d {
		out[i] = T(v)
	}
	return out
}

// Build adds the model's forward pass for the graph's feed. Base weights
// are trainable only when trainBase is set (full fine-tuning and
// pretraining); adapters, keyed by module path, are always trainable.
func Build[T nn.Float](g *nn.Graph[T], m *Model, adapters map[string]Adapter, trainBase bool) (*Net[T], error) {
	c := m.Config
	if err := m.check(); err != nil {
		return nil, err
	}
	if g.Feed.T > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("sequence length %d exceeds max_position_embeddings %d", g.Feed.T, c.MaxPositionEmbeddings)
	}
	for path := range adapters {
		if _, ok := m.Weights[path+".weight"]; !ok {
			return nil, fmt.Errorf("adapter for %s: no such linear module in the model", path)
		}
	}
	net := &Net[T]{Graph: g, Params: map[string]*G.Node{}, Data: map[string][]T{}}
	param := func(name string, t *Tensor, trainable bool) *G.Node {
		d := view[T](t.Data)
		net.Data[name] = d
		n := g.Param(name, t.Shape, d, trainable)
		net.Params[name] = n
		return n
	}
	w := func(name string) *G.Node { return param(name, m.Weights[name], trainBase) }
	hd := c.Head()
	cos, sin := nn.RopeTable(g.Feed.T, hd, c.RopeTheta)

	// Every linear module's input and output are hooks named by module path
	// (model.layers.0.self_attn.q_proj.hook_in/hook_out), for collectors.
	lin := func(x *G.Node, path string) *G.Node {
		g.Hook(path+".hook_in", x)
		wn := w(path + ".weight")
		ad, ok := adapters[path]
		if !ok {
			return g.Hook(path+".hook_out", g.Linear(x, wn))
		}
		a := param(path+".lora_A", ad.A, true)
		b := param(path+".lora_B", ad.B, true)
		return g.Hook(path+".hook_out", g.LoRALinear(path, x, wn, a, b, ad.Scale))
	}

	embed := w("model.embed_tokens.weight")
	x := g.Hook("hook_embed", g.Embed(embed))
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		h := fmt.Sprintf("blocks.%d.", i)
		g.Hook(h+"hook_resid_pre", x)
		n := g.RMSNorm(x, w(p+"input_layernorm.weight"), c.RMSNormEps)
		q := g.Hook(h+"attn.hook_q", lin(n, p+"self_attn.q_proj"))
		k := g.Hook(h+"attn.hook_k", lin(n, p+"self_attn.k_proj"))
		v := g.Hook(h+"attn.hook_v", lin(n, p+"self_attn.v_proj"))
		q = g.Hook(h+"attn.hook_rot_q", g.RoPE(q, hd, cos, sin))
		k = g.Hook(h+"attn.hook_rot_k", g.RoPE(k, hd, cos, sin))
		z := g.Hook(h+"attn.hook_z", g.Attention(i, q, k, v, c.NumAttentionHeads, c.NumKeyValueHeads, hd))
		o := g.Hook(h+"hook_attn_out", lin(z, p+"self_attn.o_proj"))
		x = g.Hook(h+"hook_resid_mid", g.Add(x, o))
		n = g.RMSNorm(x, w(p+"post_attention_layernorm.weight"), c.RMSNormEps)
		gate := g.Hook(h+"mlp.hook_pre", lin(n, p+"mlp.gate_proj"))
		up := g.Hook(h+"mlp.hook_pre_linear", lin(n, p+"mlp.up_proj"))
		act := g.Hook(h+"mlp.hook_post", g.SwiGLU(gate, up))
		d := g.Hook(h+"hook_mlp_out", lin(act, p+"mlp.down_proj"))
		x = g.Hook(h+"hook_resid_post", g.Add(x, d))
	}
	x = g.Hook("ln_final.hook_normalized", g.RMSNorm(x, w("model.norm.weight"), c.RMSNormEps))
	head := embed
	if !c.TieWordEmbeddings {
		head = w("lm_head.weight")
	}
	net.Logits = g.Linear(x, head)
	net.Loss = g.CrossEntropy(net.Logits)
	if err := g.Err(); err != nil {
		return nil, fmt.Errorf("build model graph: %w", err)
	}
	return net, nil
}
