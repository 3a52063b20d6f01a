package accel

import (
	"errors"
	"fmt"
	"slices"
	"sort"
	"strings"

	"lens/engine/kern"
	"lens/engine/model"
	"lens/engine/quant"
)

// Step is one model laid out on a device for training batches of B×T
// tokens: Run does the forward and backward pass and leaves each trainable
// tensor's gradient in device memory; Update applies AdamW there. A step
// from NewStep trains LoRA adapters over frozen base weights; one from
// NewFullStep trains every weight (full fine-tuning), as the gorgonia
// graph does with model.Build(..., trainBase = true); that needs float32
// base weights.
type Step struct {
	dev     Device
	cfg     model.Config
	B, T, N int
	hd      int
	weights map[string]Buf
	// packed holds the base weights a quantized model keeps packed
	// (base_quant: NF4 linears, bf16 tables), by name; each product that
	// reads one widens it into wide first, one float32 scratch the size of
	// the largest, shared by every such product (and by ForwardOnly steps:
	// kernels run in order, one product's weight at a time).
	packed map[string]*packedW
	wide   Buf
	mods   map[string]*module
	params map[string]*param // by trainable name (<module>.lora_A/B, or weight names)
	full   bool              // every weight trains
	names  []string
	layers []*layer

	ids, targets Buf
	// ropes are the distinct RoPE tables (Gemma's local and global ones)
	// by model.Config.LayerRopeKey; layerRope is each layer's.
	ropes        map[string]*ropeTable
	layerRope    []*ropeTable
	seg          []int32 // packed rows (Pack): the segment ids attention keeps to
	xf, nf, rf   Buf     // final residual, normed, its rinv
	ones         Buf     // N ones: biases are added and summed as products with it
	logits, dlog Buf
	rowLoss, sum Buf
	// backward scratch, shared by the layers
	dx, dt, dn, dmid             Buf
	dact, dgate, dup             Buf
	dz, dqr, dq, dkr, dk, dv, ds Buf
	dh, dxl                      Buf
	hostSum                      []float32
	buffers                      []Buf // everything this step allocated, for Close

	forwardOnly bool            // made by ForwardOnly: no gradients, no backward scratch
	hooks       map[string]hook // TransformerLens hook points, by name

	// ckpt (NewCheckpointedStep): the layers share one set of activation
	// buffers (and the modules of one position their LoRA hidden and
	// masked input); each keeps only its input, xin, and backward
	// recomputes a layer's forward from it before the layer's backward.
	ckpt   bool
	shared map[string]Buf // by module position: "h <pos> r" and "xm <pos> in"
}

// hook is where a hook point's activation lives after a forward pass.
type hook struct {
	b     Buf
	shape []int
}

// packedW is a base weight held packed on the device: NF4 codes (a byte
// buffer) and their float32 block scales, or bf16 bits (scales nil); n
// values.
type packedW struct {
	data, scales Buf
	n            int
}

// module is a linear module's device state; A is nil without an adapter,
// gw nil when the weight is frozen, w nil when the weight is packed (pw).
type module struct {
	w, a, b     Buf
	pw          *packedW
	gw, ga, gb  Buf
	bias, gbias Buf // the module's bias (Qwen2, attention_bias) and its gradient, or nil
	in, out, r  int
	scale       float32
	pos         string // the module's path within its layer
	h           Buf    // drop(x)·Aᵀ, N×r
	mask, xmBuf Buf    // dropout mask and masked input, allocated on first use
	drop        bool   // this run has a dropout mask for the module
}

type param struct {
	data, grad, m, v Buf
	n                int
}

type layer struct {
	xin, n1, r1, q, k, v, qr, kr, p, z, o, xmid, n2, r2, gate, up, sig, act, d Buf
	qn, kn, rq, rk                                                             Buf // q/k after their per-head norms and the norms' rinv (Qwen3, Gemma)
	// Gemma's norms of the attention and MLP outputs (post_attention and
	// post_feedforward) and their rinv; nil for the other families.
	po, rpo, pd, rpd Buf
}

// ropeTable is one RoPE table: on the host (T×hd) and on the device, and,
// for packed rows, gathered at each token's position (N×hd, period N).
type ropeTable struct {
	hcos, hsin []float32
	cos, sin   Buf
	pcos, psin Buf
}

// NewStep uploads m's weights and the adapters (keyed by module path, as
// model.Build takes them) and allocates the activations for B×T tokens.
// The weights a quantized model holds packed (model.Quantized: NF4 or bf16
// linears, bf16 embedding and head) stay packed on the device, and each
// product widens its weight first, as the graph does (QLoRA).
func NewStep(dev Device, m *model.Model, ads map[string]model.Adapter, B, T int) (s *Step, err error) {
	if len(ads) == 0 {
		return nil, errors.New("accel: a LoRA step needs adapters; NewFullStep trains every weight")
	}
	return newStep(dev, m, ads, false, B, T, nil, false)
}

// NewCheckpointedStep is NewStep with activation checkpointing: the step
// holds one layer's activations and each layer's input instead of every
// layer's activations, and its backward pass recomputes each layer's
// forward first (one more forward pass). Losses and gradients are the
// same bit for bit. It has no hook points: probes use ForwardOnly.
func NewCheckpointedStep(dev Device, m *model.Model, ads map[string]model.Adapter, B, T int) (*Step, error) {
	if len(ads) == 0 {
		return nil, errors.New("accel: a checkpointed step trains adapters (LoRA) only")
	}
	return newStep(dev, m, ads, false, B, T, nil, true)
}

// NewFullStep uploads m's weights, every one of them trainable under its
// own name (model.embed_tokens.weight, ...; a tied head trains with the
// embedding), and allocates the activations for B×T tokens.
func NewFullStep(dev Device, m *model.Model, B, T int) (*Step, error) {
	return newStep(dev, m, nil, true, B, T, nil, false)
}

// ForwardOnly returns a step over B×T tokens for forward passes (Loss, then
// Hook) that shares s's frozen weights and adapter tensors, so it always
// sees the adapters' current values and adds only activation memory. The
// collectors' probe batch runs through one. Closing it leaves s intact.
func (s *Step) ForwardOnly(B int) (*Step, error) {
	return newStep(s.dev, nil, nil, false, B, s.T, s, false)
}

func newStep(dev Device, m *model.Model, ads map[string]model.Adapter, full bool, B, T int, share *Step, ckpt bool) (s *Step, err error) {
	var c model.Config
	if share != nil {
		c = share.cfg
	} else {
		c = m.Config
	}
	if T > c.MaxPositionEmbeddings {
		return nil, fmt.Errorf("sequence length %d exceeds max_position_embeddings %d", T, c.MaxPositionEmbeddings)
	}
	if B <= 0 {
		return nil, fmt.Errorf("accel: batch size %d", B)
	}
	if full && len(m.Packed) > 0 {
		return nil, fmt.Errorf("accel: full training needs float32 base weights; %d are packed (base_quant)", len(m.Packed))
	}
	s = &Step{dev: dev, cfg: c, B: B, T: T, N: B * T, hd: c.Head(), weights: map[string]Buf{}, packed: map[string]*packedW{},
		mods: map[string]*module{}, params: map[string]*param{}, full: full, forwardOnly: share != nil,
		ckpt: ckpt, shared: map[string]Buf{}}
	defer func() {
		if err != nil {
			s.Close()
			s = nil
		}
	}()
	alloc := func(n int) Buf {
		if err != nil {
			return nil
		}
		var b Buf
		if b, err = dev.Alloc(n); err != nil {
			err = fmt.Errorf("accel: allocate %d floats on %s: %w", n, dev.Name(), err)
			return nil
		}
		s.buffers = append(s.buffers, b)
		return b
	}
	upload := func(t *model.Tensor) Buf {
		b := alloc(len(t.Data))
		if err == nil {
			err = dev.Upload(b, t.Data)
		}
		return b
	}
	maxPacked := 0
	// packedWeight uploads a packed weight as it is held, or returns nil
	// for a float32 one.
	packedWeight := func(name string) *packedW {
		if pw := s.packed[name]; pw != nil {
			return pw
		}
		if share != nil {
			if pw := share.packed[name]; pw != nil {
				s.packed[name] = pw
			}
			return s.packed[name]
		}
		p, ok := m.Packed[name]
		if !ok || err != nil {
			return nil
		}
		var pw *packedW
		switch t := p.(type) {
		case *quant.NF4Tensor:
			pw = &packedW{data: s.allocBytes(len(t.Codes), &err), n: t.Len()}
			if err == nil {
				err = dev.UploadBytes(pw.data, t.Codes)
			}
			pw.scales = upload(&model.Tensor{Data: t.Scales()})
		case *quant.BF16Tensor:
			pw = &packedW{data: s.allocBytes(2*len(t.Bits), &err), n: len(t.Bits)}
			if err == nil {
				err = dev.UploadBytes(pw.data, BF16Bytes(t.Bits))
			}
		default:
			err = fmt.Errorf("accel: weight %s is held as %T; the device step widens NF4 and bf16", name, p)
			return nil
		}
		if err != nil {
			err = fmt.Errorf("accel: upload packed %s: %w", name, err)
			return nil
		}
		s.packed[name] = pw
		maxPacked = max(maxPacked, pw.n)
		return pw
	}
	weight := func(name string) Buf {
		if b, ok := s.weights[name]; ok {
			return b
		}
		if packedWeight(name) != nil {
			return nil
		}
		if share != nil {
			b := share.weights[name]
			s.weights[name] = b
			return b
		}
		t, ok := m.Weights[name]
		if !ok {
			if err == nil {
				err = fmt.Errorf("accel: model has no weight %s", name)
			}
			return nil
		}
		b := upload(t)
		s.weights[name] = b
		return b
	}
	for path := range ads {
		if _, ok := m.Weights[path+".weight"]; !ok {
			return nil, fmt.Errorf("adapter for %s: no such linear module in the model", path)
		}
	}
	H, I, V := c.HiddenSize, c.IntermediateSize, c.VocabSize
	qw, kw := c.NumAttentionHeads*s.hd, c.NumKeyValueHeads*s.hd
	N := s.N
	maxR, maxIn := 0, 0
	linear := func(path string) {
		if share != nil {
			from := share.mods[path]
			md := &module{w: from.w, pw: from.pw, a: from.a, b: from.b, bias: from.bias, in: from.in, out: from.out, r: from.r, scale: from.scale}
			if md.a != nil {
				md.h = alloc(N * md.r)
			}
			s.mods[path] = md
			return
		}
		wt := m.Weights[path+".weight"]
		if wt == nil {
			if err == nil {
				err = fmt.Errorf("accel: model has no weight %s.weight", path)
			}
			return
		}
		md := &module{w: weight(path + ".weight"), pw: s.packed[path+".weight"], out: wt.Shape[0], in: wt.Shape[1]}
		if _, ok := m.Weights[path+".bias"]; ok {
			md.bias = weight(path + ".bias")
		}
		s.mods[path] = md
		ad, ok := ads[path]
		if !ok {
			return
		}
		md.r, md.scale = ad.A.Shape[0], float32(ad.Scale)
		md.a, md.b = upload(ad.A), upload(ad.B)
		md.ga, md.gb = alloc(len(ad.A.Data)), alloc(len(ad.B.Data))
		if ckpt {
			_, md.pos, _ = strings.Cut(strings.TrimPrefix(path, "model.layers."), ".")
			key := fmt.Sprintf("h %s %d", md.pos, md.r)
			if s.shared[key] == nil {
				s.shared[key] = alloc(N * md.r)
			}
			md.h = s.shared[key]
		} else {
			md.h = alloc(N * md.r)
		}
		maxR, maxIn = max(maxR, md.r), max(maxIn, md.in)
		s.params[path+".lora_A"] = &param{data: md.a, grad: md.ga, m: alloc(len(ad.A.Data)), v: alloc(len(ad.A.Data)), n: len(ad.A.Data)}
		s.params[path+".lora_B"] = &param{data: md.b, grad: md.gb, m: alloc(len(ad.B.Data)), v: alloc(len(ad.B.Data)), n: len(ad.B.Data)}
	}
	weight("model.embed_tokens.weight")
	for i := range c.NumHiddenLayers {
		p := fmt.Sprintf("model.layers.%d.", i)
		weight(p + "input_layernorm.weight")
		weight(p + "post_attention_layernorm.weight")
		if c.Gemma() {
			weight(p + "pre_feedforward_layernorm.weight")
			weight(p + "post_feedforward_layernorm.weight")
		}
		for _, mod := range []string{"self_attn.q_proj", "self_attn.k_proj", "self_attn.v_proj", "self_attn.o_proj", "mlp.gate_proj", "mlp.up_proj", "mlp.down_proj"} {
			linear(p + mod)
		}
		if c.QKNorm() {
			weight(p + "self_attn.q_norm.weight")
			weight(p + "self_attn.k_norm.weight")
		}
		if ckpt && i > 0 { // layer 0's buffers, but for the input
			l := *s.layers[0]
			l.xin = alloc(N * H)
			s.layers = append(s.layers, &l)
			continue
		}
		var qn, kn, rq, rk, po, rpo, pd, rpd Buf
		if c.QKNorm() {
			qn, kn, rq, rk = alloc(N*qw), alloc(N*kw), alloc(N*c.NumAttentionHeads), alloc(N*c.NumKeyValueHeads)
		}
		if c.Gemma() {
			po, rpo, pd, rpd = alloc(N*H), alloc(N), alloc(N*H), alloc(N)
		}
		s.layers = append(s.layers, &layer{qn: qn, kn: kn, rq: rq, rk: rk, po: po, rpo: rpo, pd: pd, rpd: rpd,
			xin: alloc(N * H), n1: alloc(N * H), r1: alloc(N),
			q: alloc(N * qw), k: alloc(N * kw), v: alloc(N * kw), qr: alloc(N * qw), kr: alloc(N * kw),
			p: alloc(B * c.NumAttentionHeads * T * T), z: alloc(N * qw), o: alloc(N * H),
			xmid: alloc(N * H), n2: alloc(N * H), r2: alloc(N),
			gate: alloc(N * I), up: alloc(N * I), sig: alloc(N * I), act: alloc(N * I), d: alloc(N * H),
		})
	}
	weight("model.norm.weight")
	if !c.TieWordEmbeddings {
		weight("lm_head.weight")
	}
	if full {
		for name, b := range s.weights {
			n := b.Len()
			s.params[name] = &param{data: b, grad: alloc(n), m: alloc(n), v: alloc(n), n: n}
		}
		for path, md := range s.mods {
			if p := s.params[path+".weight"]; p != nil {
				md.gw = p.grad
			}
			if p := s.params[path+".bias"]; p != nil {
				md.gbias = p.grad
			}
		}
	}
	for path := range ads {
		if s.mods[path] == nil && err == nil {
			err = fmt.Errorf("accel: adapter for %s: the device step puts adapters on the layers' linear modules only", path)
		}
	}
	if share != nil {
		s.wide = share.wide
	} else if maxPacked > 0 {
		s.wide = alloc(maxPacked)
	}
	s.xf, s.nf, s.rf = alloc(N*H), alloc(N*H), alloc(N)
	if c.QKVBias() || c.OBias() {
		ones := make([]float32, N)
		for i := range ones {
			ones[i] = 1
		}
		s.ones = upload(&model.Tensor{Shape: []int{N}, Data: ones})
	}
	s.logits, s.dlog, s.rowLoss, s.sum = alloc(N*V), alloc(N*V), alloc(N), alloc(1)
	if share == nil {
		s.dx, s.dt, s.dn, s.dmid = alloc(N*H), alloc(N*H), alloc(N*H), alloc(N*H)
		s.dact, s.dgate, s.dup = alloc(N*I), alloc(N*I), alloc(N*I)
		s.dz, s.dqr, s.dq = alloc(N*qw), alloc(N*qw), alloc(N*qw)
		s.dkr, s.dk, s.dv = alloc(N*kw), alloc(N*kw), alloc(N*kw)
		s.ds = alloc(B * c.NumAttentionHeads * T * T)
		s.dh, s.dxl = alloc(N*max(maxR, 1)), alloc(N*max(maxIn, 1))
	}
	s.ropes = map[string]*ropeTable{}
	for i := range c.NumHiddenLayers {
		key := c.LayerRopeKey(i)
		rt := s.ropes[key]
		if rt == nil {
			rt = &ropeTable{}
			rt.hcos, rt.hsin = c.LayerRope(i, T)
			rt.cos, rt.sin = alloc(len(rt.hcos)), alloc(len(rt.hsin))
			if err != nil {
				return s, err
			}
			if err = errors.Join(dev.Upload(rt.cos, rt.hcos), dev.Upload(rt.sin, rt.hsin)); err != nil {
				return s, err
			}
			s.ropes[key] = rt
		}
		s.layerRope = append(s.layerRope, rt)
	}
	if err != nil {
		return s, err
	}
	if s.ids, err = dev.AllocInt(N); err != nil {
		return s, err
	}
	s.buffers = append(s.buffers, s.ids)
	if s.targets, err = dev.AllocInt(N); err != nil {
		return s, err
	}
	s.buffers = append(s.buffers, s.targets)
	for name := range s.params {
		s.names = append(s.names, name)
	}
	sort.Strings(s.names)
	s.hostSum = make([]float32, 1)
	if !ckpt { // the layers' activations are not kept
		s.hookTable()
	}
	return s, nil
}

// hookTable names the buffers a forward pass leaves its activations in
// with the hook points of the gorgonia graph (model.Build), so collectors
// read the same names, shapes and values on either path.
func (s *Step) hookTable() {
	c := s.cfg
	H, I, N := c.HiddenSize, c.IntermediateSize, s.N
	qw, kw := c.NumAttentionHeads*s.hd, c.NumKeyValueHeads*s.hd
	s.hooks = map[string]hook{}
	put := func(name string, b Buf, cols int) { s.hooks[name] = hook{b, []int{N, cols}} }
	put("hook_embed", s.layers[0].xin, H)
	for i, l := range s.layers {
		p, h := fmt.Sprintf("model.layers.%d.", i), fmt.Sprintf("blocks.%d.", i)
		post := s.xf
		if i+1 < len(s.layers) {
			post = s.layers[i+1].xin
		}
		mlpOut := l.d // Gemma's hook_mlp_out is after post_feedforward_layernorm
		if l.pd != nil {
			mlpOut = l.pd
		}
		for _, x := range []struct {
			name string
			b    Buf
			cols int
		}{
			{h + "hook_resid_pre", l.xin, H},
			{h + "attn.hook_q", l.q, qw}, {h + "attn.hook_k", l.k, kw}, {h + "attn.hook_v", l.v, kw},
			{h + "attn.hook_rot_q", l.qr, qw}, {h + "attn.hook_rot_k", l.kr, kw},
			{h + "attn.hook_z", l.z, qw}, {h + "hook_attn_out", l.o, H}, {h + "hook_resid_mid", l.xmid, H},
			{h + "mlp.hook_pre", l.gate, I}, {h + "mlp.hook_pre_linear", l.up, I}, {h + "mlp.hook_post", l.act, I},
			{h + "hook_mlp_out", mlpOut, H}, {h + "hook_resid_post", post, H},
			{p + "self_attn.q_proj.hook_in", l.n1, H}, {p + "self_attn.q_proj.hook_out", l.q, qw},
			{p + "self_attn.k_proj.hook_in", l.n1, H}, {p + "self_attn.k_proj.hook_out", l.k, kw},
			{p + "self_attn.v_proj.hook_in", l.n1, H}, {p + "self_attn.v_proj.hook_out", l.v, kw},
			{p + "self_attn.o_proj.hook_in", l.z, qw}, {p + "self_attn.o_proj.hook_out", l.o, H},
			{p + "mlp.gate_proj.hook_in", l.n2, H}, {p + "mlp.gate_proj.hook_out", l.gate, I},
			{p + "mlp.up_proj.hook_in", l.n2, H}, {p + "mlp.up_proj.hook_out", l.up, I},
			{p + "mlp.down_proj.hook_in", l.act, I}, {p + "mlp.down_proj.hook_out", l.d, H},
		} {
			put(x.name, x.b, x.cols)
		}
		s.hooks[h+"attn.hook_pattern"] = hook{l.p, []int{s.B * c.NumAttentionHeads, s.T, s.T}}
	}
	put("ln_final.hook_normalized", s.nf, H)
}

// HookNames lists the hook points a forward pass fills, sorted: the
// gorgonia graph's TransformerLens names plus blocks.N.attn.hook_pattern.
func (s *Step) HookNames() []string {
	names := make([]string, 0, len(s.hooks))
	for n := range s.hooks {
		names = append(names, n)
	}
	sort.Strings(names)
	return names
}

// Hook returns the buffer that holds a hook point's activation after the
// last forward pass, and its shape.
func (s *Step) Hook(name string) (Buf, []int, bool) {
	h, ok := s.hooks[name]
	return h.b, h.shape, ok
}

// LoRAHidden returns the buffer holding a module's drop(x)·Aᵀ (N×r) after
// the last forward pass; ok is false for a module without an adapter.
func (s *Step) LoRAHidden(path string) (b Buf, r int, ok bool) {
	md := s.mods[path]
	if md == nil || md.a == nil {
		return nil, 0, false
	}
	return md.h, md.r, true
}

// Device is the device the step runs on.
func (s *Step) Device() Device { return s.dev }

// Params lists the trainable tensors by name, sorted.
func (s *Step) Params() []string { return s.names }

// Close frees the step's device memory (not the device).
func (s *Step) Close() {
	for _, b := range s.buffers {
		if b != nil {
			s.dev.Free(b)
		}
	}
	s.buffers = nil
}

// Run does one forward and backward pass over a batch (B×T inputs and
// targets; negative targets are ignored) with optional dropout masks by
// module path (N×in, entries 0 or 1/(1−p)). It returns the mean loss; the
// trainable tensors' gradients stay on the device (Grad reads them).
func (s *Step) Run(inputs, targets []int32, masks map[string][]float32) (float64, error) {
	if s.forwardOnly {
		return 0, errors.New("accel: Run on a forward-only step (ForwardOnly): use Loss")
	}
	return s.pass(inputs, targets, masks, true)
}

// Pack makes the following Run and Loss calls treat each row as several
// examples: token n is at RoPE position positions[n] and attends only to
// the tokens before it with the same segment id (equal ids contiguous in a
// row). Both are B×T; nil, nil goes back to one sequence per row.
func (s *Step) Pack(positions, segments []int32) error {
	if positions == nil && segments == nil {
		s.seg = nil
		return nil
	}
	if len(positions) != s.N || len(segments) != s.N {
		return fmt.Errorf("accel: packed batch of %d positions and %d segment ids, want %d each", len(positions), len(segments), s.N)
	}
	pc, ps := make([]float32, s.N*s.hd), make([]float32, s.N*s.hd)
	for _, rt := range s.ropes {
		if rt.pcos == nil {
			for _, b := range []*Buf{&rt.pcos, &rt.psin} {
				var err error
				if *b, err = s.dev.Alloc(s.N * s.hd); err != nil {
					return err
				}
				s.buffers = append(s.buffers, *b)
			}
		}
		if err := kern.RopeGather(pc, ps, rt.hcos, rt.hsin, s.hd, positions); err != nil {
			return fmt.Errorf("accel: %w", err)
		}
		if err := errors.Join(s.dev.Upload(rt.pcos, pc), s.dev.Upload(rt.psin, ps)); err != nil {
			return err
		}
	}
	s.seg = slices.Clone(segments)
	return nil
}

// rope returns layer i's RoPE tables for the current batch and their
// period.
func (s *Step) rope(i int) (cos, sin Buf, period int) {
	rt := s.layerRope[i]
	if s.seg != nil {
		return rt.pcos, rt.psin, s.N
	}
	return rt.cos, rt.sin, s.T
}

// attn is layer i's attention shape: the current batch's segments, the
// layer's sliding window and the family's factor of q·kᵀ.
func (s *Step) attn(i int) Attn {
	c := s.cfg
	return Attn{B: s.B, T: s.T, NH: c.NumAttentionHeads, NKV: c.NumKeyValueHeads, D: s.hd, Seg: s.seg,
		Window: c.LayerWindow(i), Scale: c.AttnScale()}
}

// mlpNorm names layer i's norm before the MLP: Gemma's
// pre_feedforward_layernorm (its post_attention_layernorm normalises the
// attention output), else post_attention_layernorm.
func (s *Step) mlpNorm(p string) string {
	if s.cfg.Gemma() {
		return p + "pre_feedforward_layernorm.weight"
	}
	return p + "post_attention_layernorm.weight"
}

// Loss is the mean loss of a batch without dropout and without a backward
// pass (evaluation); it leaves the gradients of the last Run alone.
func (s *Step) Loss(inputs, targets []int32) (float64, error) {
	return s.pass(inputs, targets, nil, false)
}

func (s *Step) pass(inputs, targets []int32, masks map[string][]float32, backward bool) (float64, error) {
	c := s.cfg
	if len(inputs) != s.N || len(targets) != s.N {
		return 0, fmt.Errorf("accel: batch of %d inputs and %d targets, want %d", len(inputs), len(targets), s.N)
	}
	count := 0
	for n := range inputs {
		if id := inputs[n]; id < 0 || int(id) >= c.VocabSize {
			return 0, fmt.Errorf("token id %d at position %d outside vocabulary of %d", id, n, c.VocabSize)
		}
		if t := targets[n]; int(t) >= c.VocabSize {
			return 0, fmt.Errorf("target id %d at position %d outside vocabulary of %d", t, n, c.VocabSize)
		} else if t >= 0 {
			count++
		}
	}
	if err := s.dev.UploadInt(s.ids, inputs); err != nil {
		return 0, err
	}
	if err := s.dev.UploadInt(s.targets, targets); err != nil {
		return 0, err
	}
	for path, md := range s.mods {
		md.drop = false
		m := masks[path]
		if m == nil || md.a == nil {
			continue
		}
		if len(m) != s.N*md.in {
			return 0, fmt.Errorf("dropout mask %s has %d entries, want %d", path, len(m), s.N*md.in)
		}
		if md.mask == nil {
			var err error
			if md.mask, err = s.dev.Alloc(len(m)); err != nil {
				return 0, err
			}
			s.buffers = append(s.buffers, md.mask)
			key := fmt.Sprintf("xm %s %d", md.pos, md.in)
			if md.xmBuf = s.shared[key]; md.xmBuf == nil || !s.ckpt {
				if md.xmBuf, err = s.dev.Alloc(len(m)); err != nil {
					return 0, err
				}
				s.buffers = append(s.buffers, md.xmBuf)
				if s.ckpt {
					s.shared[key] = md.xmBuf
				}
			}
		}
		if err := s.dev.Upload(md.mask, m); err != nil {
			return 0, err
		}
		md.drop = true
	}
	if err := s.forward(); err != nil {
		return 0, err
	}
	scale := float32(0)
	if count > 0 {
		scale = 1 / float32(count)
	}
	k := s.dev
	if err := k.CrossEntropy(s.dlog, s.rowLoss, s.logits, s.targets, s.N, c.VocabSize, scale); err != nil {
		return 0, err
	}
	if err := k.Sum(s.sum, s.rowLoss, s.N); err != nil {
		return 0, err
	}
	if backward {
		if err := s.backward(); err != nil {
			return 0, err
		}
	}
	if err := k.Download(s.hostSum, s.sum); err != nil {
		return 0, err
	}
	if count == 0 {
		return 0, nil
	}
	return float64(s.hostSum[0]) / float64(count), nil
}

func (s *Step) forward() error {
	c := s.cfg
	k := s.dev
	H := c.HiddenSize
	eps := float32(c.RMSNormEps)
	var errs []error
	e := func(err error) { errs = append(errs, err) }
	table, err := s.weight(model.EmbedName)
	e(err)
	e(k.Embed(s.layers[0].xin, table, s.ids, s.N, H))
	if es := c.EmbedScale(); es != 0 {
		e(k.Scale(s.layers[0].xin, s.layers[0].xin, s.N*H, float32(es)))
	}
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("accel: embedding forward: %w", err)
	}
	for i := range s.layers {
		next := s.xf
		if i+1 < len(s.layers) {
			next = s.layers[i+1].xin
		}
		if err := s.layerFwd(i, next); err != nil {
			return err
		}
	}
	e(k.RMSNorm(s.nf, s.rf, s.xf, s.weights["model.norm.weight"], s.N, H, eps, float32(c.NormOffset())))
	head, err := s.weight(s.headName())
	e(err)
	e(k.Gemm(false, true, s.N, c.VocabSize, H, 1, s.nf, H, head, H, 0, s.logits, c.VocabSize))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("accel: head forward: %w", err)
	}
	return nil
}

// layerFwd runs layer i forward from its input l.xin, leaving its output
// in next (nil: the output is not needed, as when backward recomputes).
func (s *Step) layerFwd(i int, next Buf) error {
	c := s.cfg
	k := s.dev
	H, I := c.HiddenSize, c.IntermediateSize
	eps, off := float32(c.RMSNormEps), float32(c.NormOffset())
	at := s.attn(i)
	qw, kw := at.NH*at.D, at.NKV*at.D
	cos, sin, period := s.rope(i)
	var errs []error
	e := func(err error) { errs = append(errs, err) }
	l := s.layers[i]
	x := l.xin
	{
		p := fmt.Sprintf("model.layers.%d.", i)
		e(k.RMSNorm(l.n1, l.r1, x, s.weights[p+"input_layernorm.weight"], s.N, H, eps, off))
		e(s.linFwd(p+"self_attn.q_proj", l.n1, l.q))
		e(s.linFwd(p+"self_attn.k_proj", l.n1, l.k))
		e(s.linFwd(p+"self_attn.v_proj", l.n1, l.v))
		q, kk := l.q, l.k
		if l.qn != nil {
			e(k.RMSNorm(l.qn, l.rq, l.q, s.weights[p+"self_attn.q_norm.weight"], s.N*at.NH, s.hd, eps, off))
			e(k.RMSNorm(l.kn, l.rk, l.k, s.weights[p+"self_attn.k_norm.weight"], s.N*at.NKV, s.hd, eps, off))
			q, kk = l.qn, l.kn
		}
		e(k.RoPE(l.qr, q, cos, sin, s.N, qw, period, s.hd, false))
		e(k.RoPE(l.kr, kk, cos, sin, s.N, kw, period, s.hd, false))
		e(k.Attention(l.z, l.p, l.qr, l.kr, l.v, at))
		e(s.linFwd(p+"self_attn.o_proj", l.z, l.o))
		ao, mo := l.o, l.d // the branches' outputs as the residual adds them
		if c.Gemma() {
			e(k.RMSNorm(l.po, l.rpo, l.o, s.weights[p+"post_attention_layernorm.weight"], s.N, H, eps, off))
			ao, mo = l.po, l.pd
		}
		e(k.Add(l.xmid, x, ao, s.N*H))
		e(k.RMSNorm(l.n2, l.r2, l.xmid, s.weights[s.mlpNorm(p)], s.N, H, eps, off))
		e(s.linFwd(p+"mlp.gate_proj", l.n2, l.gate))
		e(s.linFwd(p+"mlp.up_proj", l.n2, l.up))
		if c.Gemma() {
			e(k.GeGLU(l.act, l.sig, l.gate, l.up, s.N*I))
		} else {
			e(k.SwiGLU(l.act, l.sig, l.gate, l.up, s.N*I))
		}
		e(s.linFwd(p+"mlp.down_proj", l.act, l.d))
		if c.Gemma() {
			e(k.RMSNorm(l.pd, l.rpd, l.d, s.weights[p+"post_feedforward_layernorm.weight"], s.N, H, eps, off))
		}
		if next != nil {
			e(k.Add(next, l.xmid, mo, s.N*H))
		}
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("accel: layer %d forward: %w", i, err)
		}
	}
	return nil
}

// weight is a base weight's float32 values on the device: its buffer, or
// for a packed one the shared scratch after widening it there.
func (s *Step) weight(name string) (Buf, error) {
	if pw := s.packed[name]; pw != nil {
		return s.widen(pw)
	}
	return s.weights[name], nil
}

// widen widens a packed weight into the scratch, which holds it until the
// next widen.
func (s *Step) widen(pw *packedW) (Buf, error) {
	if pw.scales != nil {
		return s.wide, s.dev.DequantNF4(s.wide, pw.data, pw.scales, pw.n)
	}
	return s.wide, s.dev.WidenBF16(s.wide, pw.data, pw.n)
}

// linWeight is a linear module's weight in float32 (widened when packed).
func (s *Step) linWeight(md *module) (Buf, error) {
	if md.pw != nil {
		return s.widen(md.pw)
	}
	return md.w, nil
}

// linFwd sets out = x·Wᵀ (+ s·(drop(x)·Aᵀ)·Bᵀ).
func (s *Step) linFwd(path string, x, out Buf) error {
	md := s.mods[path]
	k := s.dev
	w, err := s.linWeight(md)
	if err != nil {
		return err
	}
	if err := k.Gemm(false, true, s.N, md.out, md.in, 1, x, md.in, w, md.in, 0, out, md.out); err != nil {
		return err
	}
	if md.bias != nil { // out += ones·biasᵀ
		if err := k.Gemm(false, false, s.N, md.out, 1, 1, s.ones, 1, md.bias, md.out, 1, out, md.out); err != nil {
			return err
		}
	}
	if md.a == nil {
		return nil
	}
	xm := x
	if md.drop {
		if err := k.Mul(md.xmBuf, x, md.mask, s.N*md.in, false); err != nil {
			return err
		}
		xm = md.xmBuf
	}
	if err := k.Gemm(false, true, s.N, md.r, md.in, 1, xm, md.in, md.a, md.in, 0, md.h, md.r); err != nil {
		return err
	}
	return k.Gemm(false, true, s.N, md.out, md.r, md.scale, md.h, md.r, md.b, md.r, 1, out, md.out)
}

// linBack sets dx = dy·W (+ LoRA path), or adds it to dx when acc, and the
// gradients of the module's trainable tensors: dW = dyᵀ·x, and the
// adapter's.
func (s *Step) linBack(path string, x, dy, dx Buf, acc bool) error {
	md := s.mods[path]
	k := s.dev
	beta := float32(0)
	if acc {
		beta = 1
	}
	var errs []error
	e := func(err error) { errs = append(errs, err) }
	w, err := s.linWeight(md)
	e(err)
	e(k.Gemm(false, false, s.N, md.in, md.out, 1, dy, md.out, w, md.in, beta, dx, md.in))
	if md.gw != nil {
		e(k.Gemm(true, false, md.out, md.in, s.N, 1, dy, md.out, x, md.in, 0, md.gw, md.in))
	}
	if md.gbias != nil { // dbias = onesᵀ·dy
		e(k.Gemm(true, false, 1, md.out, s.N, 1, s.ones, 1, dy, md.out, 0, md.gbias, md.out))
	}
	if md.a == nil {
		return errors.Join(errs...)
	}
	xm := x
	if md.drop {
		xm = md.xmBuf
	}
	e(k.Gemm(true, false, md.out, md.r, s.N, md.scale, dy, md.out, md.h, md.r, 0, md.gb, md.r))
	e(k.Gemm(false, false, s.N, md.r, md.out, md.scale, dy, md.out, md.b, md.r, 0, s.dh, md.r))
	e(k.Gemm(true, false, md.r, md.in, s.N, 1, s.dh, md.r, xm, md.in, 0, md.ga, md.in))
	if md.drop {
		e(k.Gemm(false, false, s.N, md.in, md.r, 1, s.dh, md.r, md.a, md.in, 0, s.dxl, md.in))
		e(k.Mul(dx, s.dxl, md.mask, s.N*md.in, true))
	} else {
		e(k.Gemm(false, false, s.N, md.in, md.r, 1, s.dh, md.r, md.a, md.in, 1, dx, md.in))
	}
	return errors.Join(errs...)
}

func (s *Step) backward() error {
	c := s.cfg
	k := s.dev
	H, I, V := c.HiddenSize, c.IntermediateSize, c.VocabSize
	off := float32(c.NormOffset())
	var errs []error
	e := func(err error) { errs = append(errs, err) }
	// dlogits → d(normed final) → d(final residual) in s.dx. A trained
	// head's gradient is dlogitsᵀ·normed; tied to the embedding, it is
	// assigned here and the embedding's own part added at the end.
	head, err := s.weight(s.headName())
	e(err)
	e(k.Gemm(false, false, s.N, H, V, 1, s.dlog, V, head, H, 0, s.dn, H))
	if g := s.grad(s.headName()); g != nil {
		e(k.Gemm(true, false, V, H, s.N, 1, s.dlog, V, s.nf, H, 0, g, H))
	}
	e(k.RMSNormBack(s.dx, s.grad("model.norm.weight"), s.xf, s.weights["model.norm.weight"], s.rf, s.dn, s.N, H, off))
	for i := len(s.layers) - 1; i >= 0; i-- {
		l := s.layers[i]
		p := fmt.Sprintf("model.layers.%d.", i)
		at := s.attn(i)
		qw, kw := at.NH*at.D, at.NKV*at.D
		cos, sin, period := s.rope(i)
		if s.ckpt { // the shared buffers hold another layer's activations
			if err := errors.Join(errs...); err != nil {
				return fmt.Errorf("accel: backward: %w", err)
			}
			if err := s.layerFwd(i, nil); err != nil {
				return err
			}
		}
		// s.dx is dL/d(resid_post) = dL/d(xmid) (through the residual) + MLP path.
		// dd is dL/d(down_proj's output): Gemma's goes back through
		// post_feedforward_layernorm first, into s.dt.
		dd := s.postNormBack(p+"post_feedforward_layernorm.weight", l.d, l.rpd, s.dx, e)
		e(s.linBack(p+"mlp.down_proj", l.act, dd, s.dact, false))
		if c.Gemma() {
			e(k.GeGLUBack(s.dgate, s.dup, l.gate, l.up, l.sig, s.dact, s.N*I))
		} else {
			e(k.SwiGLUBack(s.dgate, s.dup, l.gate, l.up, l.sig, s.dact, s.N*I))
		}
		e(s.linBack(p+"mlp.gate_proj", l.n2, s.dgate, s.dn, false))
		e(s.linBack(p+"mlp.up_proj", l.n2, s.dup, s.dn, true))
		e(k.RMSNormBack(s.dt, s.grad(s.mlpNorm(p)), l.xmid, s.weights[s.mlpNorm(p)], l.r2, s.dn, s.N, H, off))
		e(k.Add(s.dmid, s.dx, s.dt, s.N*H))
		// do is dL/d(o_proj's output), through Gemma's
		// post_attention_layernorm into s.dt.
		do := s.postNormBack(p+"post_attention_layernorm.weight", l.o, l.rpo, s.dmid, e)
		e(s.linBack(p+"self_attn.o_proj", l.z, do, s.dz, false))
		e(k.AttentionBack(s.dqr, s.dkr, s.dv, s.ds, l.qr, l.kr, l.v, l.p, l.z, s.dz, at))
		e(k.RoPE(s.dq, s.dqr, cos, sin, s.N, qw, period, s.hd, true))
		e(k.RoPE(s.dk, s.dkr, cos, sin, s.N, kw, period, s.hd, true))
		dq, dk := s.dq, s.dk
		if l.qn != nil { // through the per-head norms, into the now free dqr, dkr
			e(k.RMSNormBack(s.dqr, s.grad(p+"self_attn.q_norm.weight"), l.q, s.weights[p+"self_attn.q_norm.weight"], l.rq, s.dq, s.N*at.NH, s.hd, off))
			e(k.RMSNormBack(s.dkr, s.grad(p+"self_attn.k_norm.weight"), l.k, s.weights[p+"self_attn.k_norm.weight"], l.rk, s.dk, s.N*at.NKV, s.hd, off))
			dq, dk = s.dqr, s.dkr
		}
		e(s.linBack(p+"self_attn.q_proj", l.n1, dq, s.dn, false))
		e(s.linBack(p+"self_attn.k_proj", l.n1, dk, s.dn, true))
		e(s.linBack(p+"self_attn.v_proj", l.n1, s.dv, s.dn, true))
		e(k.RMSNormBack(s.dt, s.grad(p+"input_layernorm.weight"), l.xin, s.weights[p+"input_layernorm.weight"], l.r1, s.dn, s.N, H, off))
		e(k.Add(s.dx, s.dmid, s.dt, s.N*H))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("accel: layer %d backward: %w", i, err)
		}
	}
	// s.dx is now dL/d(embedding output), scaled (Gemma) or not.
	if g := s.grad("model.embed_tokens.weight"); g != nil {
		if !c.TieWordEmbeddings {
			e(k.Zero(g))
		}
		if es := c.EmbedScale(); es != 0 {
			e(k.Scale(s.dx, s.dx, s.N*H, float32(es)))
		}
		e(k.EmbedBack(g, s.ids, s.dx, s.N, H))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("accel: embedding backward: %w", err)
		}
	}
	return nil
}

// grad is the gradient buffer of a trainable tensor, nil for a frozen one.
func (s *Step) grad(name string) Buf {
	if p := s.params[name]; p != nil {
		return p.grad
	}
	return nil
}

// headName is the weight the logits are computed with.
// postNormBack is the backward of one of Gemma's norms after a sublayer
// (post_attention, post_feedforward: norm weight name, its input x and
// rinv): dy through the norm into s.dt, which it returns. Other families
// have no such norm, and dy is returned as it is.
func (s *Step) postNormBack(name string, x, rinv, dy Buf, e func(error)) Buf {
	c := s.cfg
	if !c.Gemma() {
		return dy
	}
	e(s.dev.RMSNormBack(s.dt, s.grad(name), x, s.weights[name], rinv, dy, s.N, c.HiddenSize, float32(c.NormOffset())))
	return s.dt
}

func (s *Step) headName() string {
	if s.cfg.TieWordEmbeddings {
		return "model.embed_tokens.weight"
	}
	return "lm_head.weight"
}

func (s *Step) param(name string) (*param, error) {
	p := s.params[name]
	if p == nil {
		return nil, fmt.Errorf("accel: no trainable tensor %s on the device (have %s)", name, strings.Join(s.names, ", "))
	}
	return p, nil
}

// Grad copies the last Run's gradient of a trainable tensor into dst.
func (s *Step) Grad(name string, dst []float32) error {
	p, err := s.param(name)
	if err != nil {
		return err
	}
	return s.dev.Download(dst, p.grad)
}

// SetParam uploads a trainable tensor and its AdamW moments (after a
// restore from a checkpoint).
func (s *Step) SetParam(name string, data, m, v []float32) error {
	p, err := s.param(name)
	if err != nil {
		return err
	}
	return errors.Join(s.dev.Upload(p.data, data), s.dev.Upload(p.m, m), s.dev.Upload(p.v, v))
}

// Update applies AdamW to one trainable tensor on the device with grad
// (the step's accumulated gradient) and copies the new values and moments
// back into data, m and v, which the checkpoints and collectors read.
func (s *Step) Update(name string, grad []float32, h AdamParams, data, m, v []float32) error {
	p, err := s.param(name)
	if err != nil {
		return err
	}
	if err := s.dev.Upload(p.grad, grad); err != nil {
		return err
	}
	if err := s.dev.AdamW(p.data, p.grad, p.m, p.v, p.n, h); err != nil {
		return err
	}
	return errors.Join(s.dev.Download(data, p.data), s.dev.Download(m, p.m), s.dev.Download(v, p.v))
}

// allocBytes allocates a byte buffer the step frees on Close; after an
// error (in *err, or its own) it returns nil.
func (s *Step) allocBytes(n int, err *error) Buf {
	if *err != nil {
		return nil
	}
	b, e := s.dev.AllocBytes(n)
	if e != nil {
		*err = fmt.Errorf("accel: allocate %d bytes on %s: %w", n, s.dev.Name(), e)
		return nil
	}
	s.buffers = append(s.buffers, b)
	return b
}
