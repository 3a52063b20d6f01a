// Package generate produces text from a model of any family, optionally with
// a LoRA adapter: a prompt is run through the model once (prefill), then
// tokens are decoded one at a time against a per-layer cache of the keys
// (after RoPE) and values of every earlier position, so each new token costs
// one row through the weights instead of the whole prefix.
//
// The forward pass is written directly over float32 slices with
// engine/gemm for the products: the training graph (engine/nn) rebuilds
// and runs a whole sequence at a time, which would make decoding quadratic.
// The arithmetic follows Hugging Face's modeling code of each family and PEFT's
// lora.Linear (unmerged: y = x·Wᵀ + s·(x·Aᵀ)·Bᵀ), and the tests compare it
// with an independent PyTorch loop in testdata/torchref/generate_ref.py.
// NewOn runs the same pass on an engine/accel device (the CUDA backend),
// with the cache in device memory; see device.go.
//
// Token choice follows transformers' generate: greedy (argmax, ties to the
// lowest id as torch.argmax) when Temperature is 0, else temperature, then
// top-k, then top-p, then a draw from a PCG generator seeded with
// Options.Seed, so that a seed repeats exactly.
package generate

import (
	"context"
	"errors"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"

	"lens/engine/kern"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// Options says how many tokens to generate and how to choose them.
type Options struct {
	// MaxNewTokens is the most tokens Generate adds after the prompt.
	MaxNewTokens int
	// Temperature divides the logits before sampling; 0 means greedy.
	Temperature float64
	// TopK keeps the K most likely tokens (0: all of them).
	TopK int
	// TopP keeps the smallest set of most likely tokens whose probability
	// reaches TopP (0 or 1: all of them).
	TopP float64
	// Seed seeds the sampling generator; the same seed repeats exactly.
	Seed uint64
	// StopIDs end generation when generated (EOS ids and the like); the
	// stop token is part of the result, as in transformers' generate.
	StopIDs []int32
	// Observe, when set, sees each step's raw logits (before temperature)
	// before the token is chosen. The slice is reused after it returns.
	Observe func(step int, logits []float32)
}

// ErrStop, returned by an emit callback, ends generation without an error
// (for stop strings, which only the caller's tokenizer can see).
var ErrStop = errors.New("generate: stop")

// linear is one projection y = x·Wᵀ (+ s·(x·Aᵀ)·Bᵀ when adapted).
type linear struct {
	w       []float32 // out×in, nil when packed
	p       nn.Packed // a quantized base's weight, widened per use
	out, in int
	a, b    []float32 // LoRA A (r×in) and B (out×r), nil without an adapter
	bias    []float32 // nil without one (Qwen2, attention_bias)
	r       int
	scale   float32
}

type layer struct {
	inNorm, postNorm           []float32
	q, k, v, o, gate, up, down linear
	qNorm, kNorm               []float32 // per-head q/k norms (Qwen3, Gemma), or nil
	preFF, postFF              []float32 // Gemma's norms around the MLP, or nil
	window                     int       // sliding window, 0 for none
	local                      bool      // Gemma's local RoPE table
}

// Generator holds a model's weights (shared, not copied) and an adapter,
// ready to decode. It is safe for concurrent use: the state of one
// sequence lives in a Session.
type Generator struct {
	cfg                      model.Config
	hidden, hd, nh, nkv, voc int
	embed, head, norm        []float32
	embedP, headP            nn.PackedTable // tables of a quantized base (embed, head nil)
	layers                   []layer
	invFreq                  []float32
	invLocal                 []float32 // Gemma's local layers' frequencies, or nil
	normOff                  float32   // added to every norm weight: 1 for Gemma's (1 + w)
	embedScale               float32   // 0, or Gemma's √hidden
	attnScale                float32   // factor of q·kᵀ
	threads                  int
	dev                      *onDevice // nil: the CPU
}

// New prepares m (and, when ad is not nil, its LoRA adapter, applied
// unmerged) for generation. The weights are shared with m, not copied.
func New(m *model.Model, ad *lora.Adapter) (*Generator, error) {
	c := m.Config
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("generate: %w", err)
	}
	for name, shape := range c.Shapes() {
		t, ok := m.Weights[name]
		if !ok {
			return nil, fmt.Errorf("generate: weight %s is missing", name)
		}
		_, packed := m.Packed[name]
		if (len(t.Data) != model.Size(shape) && !(packed && t.Data == nil)) || len(t.Shape) != len(shape) {
			return nil, fmt.Errorf("generate: weight %s has shape %v, config wants %v", name, t.Shape, shape)
		}
		for i := range shape {
			if t.Shape[i] != shape[i] {
				return nil, fmt.Errorf("generate: weight %s has shape %v, config wants %v", name, t.Shape, shape)
			}
		}
	}
	g := &Generator{
		cfg: c, hidden: c.HiddenSize, hd: c.Head(), nh: c.NumAttentionHeads, nkv: c.NumKeyValueHeads, voc: c.VocabSize,
		embed: m.Weights["model.embed_tokens.weight"].Data, norm: m.Weights["model.norm.weight"].Data,
		threads: runtime.GOMAXPROCS(0),
	}
	g.head = g.embed
	if !c.TieWordEmbeddings {
		g.head = m.Weights["lm_head.weight"].Data
	}
	// A quantized base (model.Quantized) decodes through the same widening
	// as training: tables a row or a vocabulary block at a time, linear
	// weights one at a time into the session's scratch.
	if err := g.packedTables(m); err != nil {
		return nil, err
	}
	// The same inverse frequencies as the training graph, rope_scaling
	// included (dynamic is unscaled up to max_position_embeddings).
	g.invFreq = model.RopeInvFreq(g.hd, c.RopeTheta, c.MaxPositionEmbeddings, c.RopeScaling, 0)
	if c.Gemma() {
		g.invLocal = kern.RopeInvFreq(g.hd, c.RopeLocalBaseFreq)
	}
	g.normOff, g.embedScale, g.attnScale = float32(c.NormOffset()), float32(c.EmbedScale()), float32(c.AttnScale())
	lin := func(path string) linear {
		w := m.Weights[path+".weight"]
		l := linear{w: w.Data, out: w.Shape[0], in: w.Shape[1], p: m.Packed[path+".weight"]}
		if b, ok := m.Weights[path+".bias"]; ok {
			l.bias = b.Data
		}
		return l
	}
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		ly := layer{
			inNorm: m.Weights[p+"input_layernorm.weight"].Data, postNorm: m.Weights[p+"post_attention_layernorm.weight"].Data,
			q: lin(p + "self_attn.q_proj"), k: lin(p + "self_attn.k_proj"), v: lin(p + "self_attn.v_proj"), o: lin(p + "self_attn.o_proj"),
			gate: lin(p + "mlp.gate_proj"), up: lin(p + "mlp.up_proj"), down: lin(p + "mlp.down_proj"),
		}
		if c.QKNorm() {
			ly.qNorm, ly.kNorm = m.Weights[p+"self_attn.q_norm.weight"].Data, m.Weights[p+"self_attn.k_norm.weight"].Data
		}
		if c.Gemma() {
			ly.preFF, ly.postFF = m.Weights[p+"pre_feedforward_layernorm.weight"].Data, m.Weights[p+"post_feedforward_layernorm.weight"].Data
			ly.local = c.LayerRopeKey(i) == "local"
		}
		ly.window = c.LayerWindow(i)
		g.layers = append(g.layers, ly)
	}
	if ad != nil {
		if err := g.attach(ad); err != nil {
			return nil, err
		}
	}
	return g, nil
}

// attach puts each adapter module on its projection, checking shapes.
func (g *Generator) attach(ad *lora.Adapter) error {
	byPath := map[string]*linear{}
	for i := range g.layers {
		l := &g.layers[i]
		for _, p := range []struct {
			name string
			lin  *linear
		}{{"q_proj", &l.q}, {"k_proj", &l.k}, {"v_proj", &l.v}, {"o_proj", &l.o}, {"gate_proj", &l.gate}, {"up_proj", &l.up}, {"down_proj", &l.down}} {
			byPath[model.ModulePath(i, p.name)] = p.lin
		}
	}
	r, s := ad.Config.Rank, float32(ad.Config.Scale())
	for _, mod := range ad.Modules {
		l, ok := byPath[mod]
		if !ok {
			return fmt.Errorf("generate: adapter module %s is not a linear module of the model", mod)
		}
		A, B := ad.A[mod], ad.B[mod]
		if A == nil || B == nil || len(A.Data) != r*l.in || len(B.Data) != l.out*r {
			return fmt.Errorf("generate: adapter module %s: lora_A/lora_B do not have shapes [%d %d]/[%d %d]", mod, r, l.in, l.out, r)
		}
		l.a, l.b, l.r, l.scale = A.Data, B.Data, r, s
	}
	return nil
}

// Config is the model's configuration.
func (g *Generator) Config() model.Config { return g.cfg }

// Generate appends up to opts.MaxNewTokens tokens to prompt and returns
// them, calling emit (when not nil) with each as soon as it is chosen.
// It stops after a token in opts.StopIDs (which is returned), when emit
// returns ErrStop (the token is returned) or another error (returned), or
// when ctx is done. The prompt plus MaxNewTokens must fit in the model's
// max_position_embeddings.
func (g *Generator) Generate(ctx context.Context, prompt []int32, opts Options, emit func(id int32) error) ([]int32, error) {
	if err := g.check(prompt, opts); err != nil {
		return nil, err
	}
	if opts.MaxNewTokens == 0 {
		return nil, nil
	}
	s, err := g.NewSession(len(prompt) + opts.MaxNewTokens)
	if err != nil {
		return nil, err
	}
	defer s.Close()
	logits, err := s.Append(prompt)
	if err != nil {
		return nil, err
	}
	pick := newPicker(opts, g.voc)
	stop := map[int32]bool{}
	for _, id := range opts.StopIDs {
		stop[id] = true
	}
	var out []int32
	for step := range opts.MaxNewTokens {
		if err := ctx.Err(); err != nil {
			return out, err
		}
		if opts.Observe != nil {
			opts.Observe(step, logits)
		}
		id, err := pick.next(logits)
		if err != nil {
			return out, fmt.Errorf("generate: step %d (position %d): %w", step, s.Len(), err)
		}
		out = append(out, id)
		if emit != nil {
			if err := emit(id); errors.Is(err, ErrStop) {
				return out, nil
			} else if err != nil {
				return out, err
			}
		}
		if stop[id] || step == opts.MaxNewTokens-1 {
			break
		}
		if logits, err = s.Append([]int32{id}); err != nil {
			return out, err
		}
	}
	return out, nil
}

func (g *Generator) check(prompt []int32, o Options) error {
	if len(prompt) == 0 {
		return fmt.Errorf("generate: the prompt is empty (at least one token, e.g. BOS, is needed)")
	}
	for i, id := range prompt {
		if id < 0 || int(id) >= g.voc {
			return fmt.Errorf("generate: prompt token %d is id %d, outside the vocabulary [0, %d)", i, id, g.voc)
		}
	}
	switch {
	case o.MaxNewTokens < 0:
		return fmt.Errorf("generate: max_new_tokens = %d: must not be negative", o.MaxNewTokens)
	case o.Temperature < 0 || math.IsNaN(o.Temperature) || math.IsInf(o.Temperature, 0):
		return fmt.Errorf("generate: temperature = %g: must be 0 (greedy) or positive", o.Temperature)
	case o.TopK < 0:
		return fmt.Errorf("generate: top_k = %d: must not be negative (0 keeps every token)", o.TopK)
	case o.TopP < 0 || o.TopP > 1 || math.IsNaN(o.TopP):
		return fmt.Errorf("generate: top_p = %g: must be in (0, 1] (0 or 1 keeps every token)", o.TopP)
	}
	if n, max := len(prompt)+o.MaxNewTokens, g.cfg.MaxPositionEmbeddings; n > max {
		return fmt.Errorf("generate: prompt of %d tokens + max_new_tokens %d = %d positions, more than the model's max_position_embeddings %d", len(prompt), o.MaxNewTokens, n, max)
	}
	return nil
}

// picker chooses tokens from logits.
type picker struct {
	o    Options
	rng  *rand.Rand
	cand []cand
}

type cand struct {
	id int32
	v  float32
}

// seedStream is the PCG stream of the sampling generator ("gen").
const seedStream = 0x67656e

func newPicker(o Options, vocab int) *picker {
	return &picker{o: o, rng: rand.New(rand.NewPCG(o.Seed, seedStream)), cand: make([]cand, 0, vocab)}
}

func (p *picker) next(logits []float32) (int32, error) {
	for i, v := range logits {
		if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
			return 0, fmt.Errorf("logit of token %d is %g", i, v)
		}
	}
	if p.o.Temperature == 0 {
		return Argmax(logits), nil
	}
	return sample(logits, p.o.Temperature, p.o.TopK, p.o.TopP, p.rng, &p.cand), nil
}

// Argmax is the first index of the largest value, as torch.argmax.
func Argmax(x []float32) int32 {
	best := 0
	for i, v := range x {
		if v > x[best] {
			best = i
		}
	}
	return int32(best)
}
