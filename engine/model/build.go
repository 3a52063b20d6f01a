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

// Net is a built forward graph: its loss, logits (nil when the graph's
// HeadChunk computes the loss in chunks) and the parameter nodes
// by name (HF names for base weights, "<module>.lora_A"/"<module>.lora_B"
// for adapters).
type Net[T nn.Float] struct {
	Graph  *nn.Graph[T]
	Loss   *G.Node
	Logits *G.Node
	Params map[string]*G.Node
	Data   map[string][]T // each parameter's backing data in the graph
	// In and Out are a Part's residual stream (N×hidden) where it begins
	// without the embedding (a trainable input, "resid") and where it ends
	// without the head; nil otherwise.
	In, Out *G.Node
}

// Part selects a piece of the model for BuildPart; activation
// checkpointing builds the model as an embedding, block and head part.
type Part struct {
	// Embed begins with the embedding; otherwise at Net.In.
	Embed bool
	// Lo and Hi are the transformer layers [Lo, Hi) the part holds.
	Lo, Hi int
	// Head ends with the final norm, the head and the loss; otherwise at
	// Net.Out, with no loss.
	Head bool
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
	return BuildPart(g, m, adapters, trainBase, Part{Embed: true, Hi: m.Config.NumHiddenLayers, Head: true})
}

// BuildPart is Build of one piece of the model: the same ops, in the same
// order, as the whole graph has for it.
func BuildPart[T nn.Float](g *nn.Graph[T], m *Model, adapters map[string]Adapter, trainBase bool, part Part) (*Net[T], error) {
	c := m.Config
	if part.Lo < 0 || part.Hi > c.NumHiddenLayers || part.Lo > part.Hi {
		return nil, fmt.Errorf("build model part: layers [%d, %d) of %d", part.Lo, part.Hi, c.NumHiddenLayers)
	}
	if err := m.check(); err != nil {
		return nil, err
	}
	if g.Feed.T > c.MaxPositionEmbeddings && c.RopeScaling.Kind() != "dynamic" {
		return nil, fmt.Errorf("sequence length %d exceeds max_position_embeddings %d", g.Feed.T, c.MaxPositionEmbeddings)
	}
	for path := range adapters {
		if _, ok := m.Weights[path+".weight"]; !ok {
			return nil, fmt.Errorf("adapter for %s: no such linear module in the model", path)
		}
	}
	if trainBase && len(m.Packed) > 0 {
		return nil, fmt.Errorf("full training needs float32 base weights; %d are packed (base_quant)", len(m.Packed))
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
	// One RoPE table per distinct kind (Gemma's local and global layers).
	type table struct{ cos, sin []float32 }
	ropes := map[string]table{}
	rope := func(i int) ([]float32, []float32) {
		key := c.LayerRopeKey(i)
		t, ok := ropes[key]
		if !ok {
			t.cos, t.sin = c.LayerRope(i, g.Feed.T)
			ropes[key] = t
		}
		return t.cos, t.sin
	}
	norm := func(x *G.Node, name string) *G.Node {
		if off := c.NormOffset(); off != 0 {
			return g.HeadRMSNorm(x, w(name), c.RMSNormEps, off)
		}
		return g.RMSNorm(x, w(name), c.RMSNormEps)
	}
	// 0 keeps the kernel's 1/√head_dim; Gemma has query_pre_attn_scalar^-½.
	attnScale := 0.0
	if c.Gemma() {
		attnScale = c.AttnScale()
	}

	// Every linear module's input and output are hooks named by module path
	// (model.layers.0.self_attn.q_proj.hook_in/hook_out), for collectors.
	lin := func(x *G.Node, path string) *G.Node {
		g.Hook(path+".hook_in", x)
		// A packed base weight (QLoRA, bf16) is no node: it is widened per use.
		pw, packed := m.Packed[path+".weight"]
		var wn *G.Node
		if !packed {
			wn = w(path + ".weight")
		}
		var y *G.Node
		if ad, ok := adapters[path]; ok {
			a := param(path+".lora_A", ad.A, true)
			b := param(path+".lora_B", ad.B, true)
			if packed {
				y = g.PackedLoRALinear(path, x, pw, a, b, ad.Scale)
			} else {
				y = g.LoRALinear(path, x, wn, a, b, ad.Scale)
			}
		} else if packed {
			y = g.PackedLinear(x, pw)
		} else {
			y = g.Linear(x, wn)
		}
		if _, ok := m.Weights[path+".bias"]; ok {
			y = g.Bias(y, w(path+".bias"))
		}
		return g.Hook(path+".hook_out", y)
	}

	var embed, x *G.Node
	if part.Embed {
		embed, x = embedTokens(g, m, w)
		if s := c.EmbedScale(); s != 0 {
			x = g.Scale(x, s)
		}
		x = g.Hook("hook_embed", x)
	} else {
		n := g.Feed.N() * c.HiddenSize
		x = g.Param("resid", []int{g.Feed.N(), c.HiddenSize}, make([]T, n), true)
		net.In = x
	}
	for i := part.Lo; i < part.Hi; i++ {
		p := fmt.Sprintf("model.layers.%d.", i)
		h := fmt.Sprintf("blocks.%d.", i)
		g.Hook(h+"hook_resid_pre", x)
		cos, sin := rope(i)
		n := norm(x, p+"input_layernorm.weight")
		q := g.Hook(h+"attn.hook_q", lin(n, p+"self_attn.q_proj"))
		k := g.Hook(h+"attn.hook_k", lin(n, p+"self_attn.k_proj"))
		v := g.Hook(h+"attn.hook_v", lin(n, p+"self_attn.v_proj"))
		if c.QKNorm() {
			q = g.HeadRMSNorm(q, w(p+"self_attn.q_norm.weight"), c.RMSNormEps, c.NormOffset())
			k = g.HeadRMSNorm(k, w(p+"self_attn.k_norm.weight"), c.RMSNormEps, c.NormOffset())
		}
		q = g.Hook(h+"attn.hook_rot_q", g.RoPE(q, hd, cos, sin))
		k = g.Hook(h+"attn.hook_rot_k", g.RoPE(k, hd, cos, sin))
		var z *G.Node
		if win := c.LayerWindow(i); win > 0 || attnScale != 0 {
			z = g.WindowedAttention(i, q, k, v, c.NumAttentionHeads, c.NumKeyValueHeads, hd, win, attnScale)
		} else {
			z = g.Attention(i, q, k, v, c.NumAttentionHeads, c.NumKeyValueHeads, hd)
		}
		z = g.Hook(h+"attn.hook_z", z)
		o := g.Hook(h+"hook_attn_out", lin(z, p+"self_attn.o_proj"))
		if c.Gemma() {
			o = norm(o, p+"post_attention_layernorm.weight")
		}
		x = g.Hook(h+"hook_resid_mid", g.Add(x, o))
		if c.Gemma() {
			n = norm(x, p+"pre_feedforward_layernorm.weight")
		} else {
			n = norm(x, p+"post_attention_layernorm.weight")
		}
		gate := g.Hook(h+"mlp.hook_pre", lin(n, p+"mlp.gate_proj"))
		up := g.Hook(h+"mlp.hook_pre_linear", lin(n, p+"mlp.up_proj"))
		var act *G.Node
		if c.Gemma() {
			act = g.GeGLU(gate, up)
		} else {
			act = g.SwiGLU(gate, up)
		}
		act = g.Hook(h+"mlp.hook_post", act)
		d := lin(act, p+"mlp.down_proj")
		if c.Gemma() {
			d = norm(d, p+"post_feedforward_layernorm.weight")
		}
		d = g.Hook(h+"hook_mlp_out", d)
		x = g.Hook(h+"hook_resid_post", g.Add(x, d))
	}
	if !part.Head {
		net.Out = x
		if err := g.Err(); err != nil {
			return nil, fmt.Errorf("build model graph: %w", err)
		}
		return net, nil
	}
	x = g.Hook("ln_final.hook_normalized", norm(x, "model.norm.weight"))
	net.Logits, net.Loss = headLoss(g, m, x, embed, w)
	if err := g.Err(); err != nil {
		return nil, fmt.Errorf("build model graph: %w", err)
	}
	return net, nil
}
