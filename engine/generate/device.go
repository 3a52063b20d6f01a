package generate

import (
	"errors"
	"fmt"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// The device path runs the same forward pass as Session.Append over an
// accel.Device's kernels: the weights, the key/value cache (per layer,
// positions × kv heads·head_dim, so GQA caches only the kv heads) and the
// activations stay in device memory, and only the last position's logits
// come back each step; token choice stays on the host.

// devLinear is linear's weights on the device (a packed base weight
// widened to float32 once, at upload).
type devLinear struct {
	w, a, b accel.Buf // a, b nil without an adapter
	bias    accel.Buf // nil without one (Qwen2, attention_bias)
	out, in int
	r       int
	scale   float32
}

type devLayer struct {
	inNorm, postNorm           accel.Buf
	q, k, v, o, gate, up, down devLinear
	qNorm, kNorm               accel.Buf // per-head q/k norms (Qwen3, Gemma), or nil
	preFF, postFF              accel.Buf // Gemma's norms around the MLP, or nil
	window                     int       // sliding window, 0 for none
	local                      bool      // Gemma's local RoPE table
}

// onDevice is a Generator's weights uploaded to a device.
type onDevice struct {
	d                 accel.Device
	dec               accel.Decoder
	embed, head, norm accel.Buf
	layers            []devLayer
	bufs              []accel.Buf // every allocation, for Close
	owned             bool        // Close closes d (NewDevice opened it)
}

// NewOn prepares m (and ad, applied unmerged) for generation on dev: the
// weights are uploaded once, and every session's prefill and decode steps
// run there. dev must implement accel.Decoder (accel.Host and the CUDA
// backend do). Close the Generator to free the device memory; the device
// itself stays open (the caller's).
func NewOn(dev accel.Device, m *model.Model, ad *lora.Adapter) (*Generator, error) {
	dec, ok := dev.(accel.Decoder)
	if !ok {
		return nil, fmt.Errorf("generate: device %s has no decoding kernels (accel.Decoder)", dev.Name())
	}
	g, err := New(m, ad)
	if err != nil {
		return nil, err
	}
	o := &onDevice{d: dev, dec: dec}
	if err := o.upload(g); err != nil {
		o.free()
		return nil, fmt.Errorf("generate: upload the weights to %s: %w", dev.Name(), err)
	}
	g.dev = o
	return g, nil
}

// NewDevice is New for device "cpu" (or ""), else NewOn a device it opens
// from the accel backend of that name ("cuda"), which Close then closes.
// The name is one engine/device.Resolve has settled ("auto" is not).
func NewDevice(name string, m *model.Model, ad *lora.Adapter) (*Generator, error) {
	if name == "" || name == "cpu" {
		return New(m, ad)
	}
	dev, err := accel.Open(name)
	if err != nil {
		return nil, fmt.Errorf("generate: device %q: %w", name, err)
	}
	g, err := NewOn(dev, m, ad)
	if err != nil {
		return nil, errors.Join(err, dev.Close())
	}
	g.dev.owned = true
	return g, nil
}

// Close frees what the Generator holds on its device (nothing on the CPU),
// and closes the device if NewDevice opened it. Sessions must not be used
// after it.
func (g *Generator) Close() error {
	if g.dev == nil {
		return nil
	}
	o := g.dev
	g.dev = nil
	o.free()
	if o.owned {
		return o.d.Close()
	}
	return nil
}

// Device is the device the Generator runs on: "cpu", or the device's name.
func (g *Generator) Device() string {
	if g.dev == nil {
		return "cpu"
	}
	return g.dev.d.Name()
}

func (o *onDevice) alloc(n int) (accel.Buf, error) {
	b, err := o.d.Alloc(n)
	if err != nil {
		return nil, err
	}
	o.bufs = append(o.bufs, b)
	return b, nil
}

func (o *onDevice) put(x []float32) (accel.Buf, error) {
	b, err := o.alloc(len(x))
	if err != nil {
		return nil, err
	}
	return b, o.d.Upload(b, x)
}

func (o *onDevice) free() {
	for _, b := range o.bufs {
		o.d.Free(b)
	}
	o.bufs = nil
}

// table is a vocabulary table in float32: w, or p widened.
func table(w []float32, p nn.PackedTable, voc, h int) []float32 {
	if p == nil {
		return w
	}
	t := make([]float32, voc*h)
	p.WidenRows(0, voc, t)
	return t
}

func (o *onDevice) upload(g *Generator) error {
	var err error
	if o.embed, err = o.put(table(g.embed, g.embedP, g.voc, g.hidden)); err != nil {
		return err
	}
	o.head = o.embed
	if !g.cfg.TieWordEmbeddings {
		if o.head, err = o.put(table(g.head, g.headP, g.voc, g.hidden)); err != nil {
			return err
		}
	}
	if o.norm, err = o.put(g.norm); err != nil {
		return err
	}
	// opt uploads an optional vector (nil stays nil).
	opt := func(x []float32) (accel.Buf, error) {
		if x == nil {
			return nil, nil
		}
		return o.put(x)
	}
	lin := func(l *linear) (devLinear, error) {
		d := devLinear{out: l.out, in: l.in, r: l.r, scale: l.scale}
		w := l.w
		if l.p != nil { // the same widening as the CPU Session's
			w = make([]float32, l.out*l.in)
			l.p.Widen(w)
		}
		var err error
		if d.w, err = o.put(w); err != nil {
			return d, err
		}
		if d.bias, err = opt(l.bias); err != nil || l.a == nil {
			return d, err
		}
		if d.a, err = o.put(l.a); err != nil {
			return d, err
		}
		d.b, err = o.put(l.b)
		return d, err
	}
	for i := range g.layers {
		l := &g.layers[i]
		dl := devLayer{window: l.window, local: l.local}
		for _, p := range []struct {
			dst *accel.Buf
			src []float32
		}{{&dl.inNorm, l.inNorm}, {&dl.postNorm, l.postNorm}, {&dl.qNorm, l.qNorm}, {&dl.kNorm, l.kNorm}, {&dl.preFF, l.preFF}, {&dl.postFF, l.postFF}} {
			if *p.dst, err = opt(p.src); err != nil {
				return err
			}
		}
		for _, p := range []struct {
			dst *devLinear
			src *linear
		}{{&dl.q, &l.q}, {&dl.k, &l.k}, {&dl.v, &l.v}, {&dl.o, &l.o}, {&dl.gate, &l.gate}, {&dl.up, &l.up}, {&dl.down, &l.down}} {
			if *p.dst, err = lin(p.src); err != nil {
				return err
			}
		}
		o.layers = append(o.layers, dl)
	}
	return nil
}

// devSession is a Session's state on the device.
type devSession struct {
	g        *Generator
	o        *onDevice
	kc, vc   []accel.Buf // per layer: capacity × nkv·hd
	cos, sin accel.Buf   // capacity × hd
	cosL     accel.Buf   // Gemma's local layers' tables, or nil
	sinL     accel.Buf
	ids      accel.Buf // the tokens of the current Append (int)
	rows     int       // rows the scratch buffers hold
	pn       int       // floats p holds
	// Scratch for rows tokens: hidden states, normed, projections, LoRA's
	// x·Aᵀ, the RoPE rows of the positions appended (and of Gemma's local
	// tables), attention scores, q/k after their norms and the norms'
	// rinv, the MLP's activation, ones (biases are added as products with
	// them).
	x, xn, rinv, q, k, v, z, ob, gate, up, sig, lr, cs, sn, p accel.Buf
	csL, snL, qn, kn, rq, rk, act, ones                       accel.Buf
	last, lastN, logits                                       accel.Buf
	bufs                                                      []accel.Buf
	host                                                      []float32
}

func (g *Generator) newDevSession(s *Session) error {
	o := g.dev
	ds := &devSession{g: g, o: o, host: s.logits}
	fail := func(err error) error {
		ds.free()
		return fmt.Errorf("generate: session on %s: %w", o.d.Name(), err)
	}
	kvSize := s.cap * g.nkv * g.hd
	for range g.layers {
		k, err := ds.alloc(kvSize)
		if err != nil {
			return fail(err)
		}
		v, err := ds.alloc(kvSize)
		if err != nil {
			return fail(err)
		}
		ds.kc, ds.vc = append(ds.kc, k), append(ds.vc, v)
	}
	var err error
	if ds.cos, err = ds.put(s.cos); err != nil {
		return fail(err)
	}
	if ds.sin, err = ds.put(s.sin); err != nil {
		return fail(err)
	}
	if s.cosL != nil {
		if ds.cosL, err = ds.put(s.cosL); err != nil {
			return fail(err)
		}
		if ds.sinL, err = ds.put(s.sinL); err != nil {
			return fail(err)
		}
	}
	h := g.hidden
	for _, b := range []struct {
		p *accel.Buf
		n int
	}{{&ds.last, h}, {&ds.lastN, h}, {&ds.logits, g.voc}} {
		if *b.p, err = ds.alloc(b.n); err != nil {
			return fail(err)
		}
	}
	s.dev = ds
	return nil
}

func (ds *devSession) alloc(n int) (accel.Buf, error) {
	b, err := ds.o.d.Alloc(n)
	if err != nil {
		return nil, err
	}
	ds.bufs = append(ds.bufs, b)
	return b, nil
}

func (ds *devSession) put(x []float32) (accel.Buf, error) {
	b, err := ds.alloc(len(x))
	if err != nil {
		return nil, err
	}
	return b, ds.o.d.Upload(b, x)
}

func (ds *devSession) free() {
	for _, b := range ds.bufs {
		ds.o.d.Free(b)
	}
	ds.bufs = nil
	if ds.ids != nil {
		ds.o.d.Free(ds.ids)
		ds.ids = nil
	}
}

// scratch makes sure the per-row buffers hold m rows and p holds pn floats.
func (ds *devSession) scratch(m, pn int) error {
	d, g := ds.o.d, ds.g
	if ds.ids == nil || ds.ids.Len() != m {
		if ds.ids != nil {
			d.Free(ds.ids)
			ds.ids = nil
		}
		var err error
		if ds.ids, err = d.AllocInt(m); err != nil {
			return err
		}
	}
	realloc := func(b *accel.Buf, n int) error {
		if *b != nil {
			d.Free(*b)
		}
		nb, err := d.Alloc(n)
		if err != nil {
			*b = nil
			return err
		}
		*b = nb
		return nil
	}
	if pn > ds.pn {
		if err := realloc(&ds.p, pn); err != nil {
			return err
		}
		ds.pn = pn
	}
	if m <= ds.rows {
		return nil
	}
	l := g.layers[0]
	r := 0
	for _, ly := range g.layers {
		for _, p := range []*linear{&ly.q, &ly.k, &ly.v, &ly.o, &ly.gate, &ly.up, &ly.down} {
			r = max(r, p.r)
		}
	}
	for _, b := range []struct {
		p *accel.Buf
		n int
	}{
		{&ds.x, g.hidden}, {&ds.xn, g.hidden}, {&ds.ob, g.hidden}, {&ds.rinv, 1},
		{&ds.q, l.q.out}, {&ds.k, l.k.out}, {&ds.v, l.v.out}, {&ds.z, g.nh * g.hd},
		{&ds.gate, l.gate.out}, {&ds.up, l.up.out}, {&ds.sig, l.gate.out}, {&ds.lr, max(r, 1)},
		{&ds.cs, g.hd}, {&ds.sn, g.hd}, {&ds.csL, g.hd}, {&ds.snL, g.hd},
		{&ds.qn, l.q.out}, {&ds.kn, l.k.out}, {&ds.rq, g.nh}, {&ds.rk, g.nkv},
		{&ds.act, l.gate.out}, {&ds.ones, 1},
	} {
		if err := realloc(b.p, m*b.n); err != nil {
			return err
		}
	}
	ones := make([]float32, m)
	for i := range ones {
		ones[i] = 1
	}
	if err := d.Upload(ds.ones, ones); err != nil {
		return err
	}
	ds.rows = m
	return nil
}

// close frees the session's device memory, scratch included.
func (ds *devSession) close() {
	d := ds.o.d
	for _, b := range []accel.Buf{ds.x, ds.xn, ds.ob, ds.rinv, ds.q, ds.k, ds.v, ds.z, ds.gate, ds.up, ds.sig, ds.lr, ds.cs, ds.sn, ds.p,
		ds.csL, ds.snL, ds.qn, ds.kn, ds.rq, ds.rk, ds.act, ds.ones} {
		if b != nil {
			d.Free(b)
		}
	}
	ds.rows, ds.pn = 0, 0
	ds.free()
}

// append runs tokens (already checked) at positions n… through the model
// on the device and downloads the logits after the last one into ds.host.
func (ds *devSession) append(tokens []int32, n int) error {
	g, o := ds.g, ds.o
	d, dec := o.d, o.dec
	m, h, hd := len(tokens), g.hidden, g.hd
	a := accel.CacheAttn{M: m, Pos: n, NH: g.nh, NKV: g.nkv, D: hd}
	if err := ds.scratch(m, g.nh*m*a.L()); err != nil {
		return err
	}
	eps, off := float32(g.cfg.RMSNormEps), g.normOff
	var errs []error
	do := func(err error) { errs = append(errs, err) }
	apply := func(p *devLinear, x, y accel.Buf) {
		do(d.Gemm(false, true, m, p.out, p.in, 1, x, p.in, p.w, p.in, 0, y, p.out))
		if p.bias != nil { // y += ones·biasᵀ
			do(d.Gemm(false, false, m, p.out, 1, 1, ds.ones, 1, p.bias, p.out, 1, y, p.out))
		}
		if p.a != nil {
			do(d.Gemm(false, true, m, p.r, p.in, 1, x, p.in, p.a, p.in, 0, ds.lr, p.r))
			do(d.Gemm(false, true, m, p.out, p.r, p.scale, ds.lr, p.r, p.b, p.r, 1, y, p.out))
		}
	}
	do(d.UploadInt(ds.ids, tokens))
	do(d.Embed(ds.x, o.embed, ds.ids, m, h))
	if g.embedScale != 0 {
		do(d.Scale(ds.x, ds.x, m*h, g.embedScale))
	}
	// The RoPE tables' rows of positions n…n+m−1, so that RoPE with
	// seqLen m rotates row i at position n+i.
	do(dec.Copy(ds.cs, 0, ds.cos, n*hd, m*hd))
	do(dec.Copy(ds.sn, 0, ds.sin, n*hd, m*hd))
	if ds.cosL != nil {
		do(dec.Copy(ds.csL, 0, ds.cosL, n*hd, m*hd))
		do(dec.Copy(ds.snL, 0, ds.sinL, n*hd, m*hd))
	}
	kvw := g.nkv * hd
	a.Scale = g.cfg.AttnScale()
	for l := range o.layers {
		ly := &o.layers[l]
		do(d.RMSNorm(ds.xn, ds.rinv, ds.x, ly.inNorm, m, h, eps, off))
		apply(&ly.q, ds.xn, ds.q)
		apply(&ly.k, ds.xn, ds.k)
		apply(&ly.v, ds.xn, ds.v)
		q, k := ds.q, ds.k
		if ly.qNorm != nil {
			do(d.RMSNorm(ds.qn, ds.rq, ds.q, ly.qNorm, m*g.nh, hd, eps, off))
			do(d.RMSNorm(ds.kn, ds.rk, ds.k, ly.kNorm, m*g.nkv, hd, eps, off))
			q, k = ds.qn, ds.kn
		}
		cs, sn := ds.cs, ds.sn
		if ly.local {
			cs, sn = ds.csL, ds.snL
		}
		do(d.RoPE(q, q, cs, sn, m, g.nh*hd, m, hd, false))
		do(d.RoPE(k, k, cs, sn, m, kvw, m, hd, false))
		do(dec.Copy(ds.kc[l], n*kvw, k, 0, m*kvw))
		do(dec.Copy(ds.vc[l], n*kvw, ds.v, 0, m*kvw))
		a.Window = ly.window
		do(dec.CachedAttention(ds.z, ds.p, q, ds.kc[l], ds.vc[l], a))
		apply(&ly.o, ds.z, ds.ob)
		if ly.preFF != nil { // Gemma: the norm after attention, then the one before the MLP
			do(d.RMSNorm(ds.xn, ds.rinv, ds.ob, ly.postNorm, m, h, eps, off))
			do(d.Add(ds.x, ds.x, ds.xn, m*h))
			do(d.RMSNorm(ds.xn, ds.rinv, ds.x, ly.preFF, m, h, eps, off))
		} else {
			do(d.Add(ds.x, ds.x, ds.ob, m*h))
			do(d.RMSNorm(ds.xn, ds.rinv, ds.x, ly.postNorm, m, h, eps, off))
		}
		apply(&ly.gate, ds.xn, ds.gate)
		apply(&ly.up, ds.xn, ds.up)
		if g.cfg.Gemma() {
			do(d.GeGLU(ds.act, ds.sig, ds.gate, ds.up, m*ly.gate.out))
		} else {
			do(d.SwiGLU(ds.act, ds.sig, ds.gate, ds.up, m*ly.gate.out))
		}
		apply(&ly.down, ds.act, ds.ob)
		mo := ds.ob // the MLP's output as the residual adds it
		if ly.postFF != nil {
			do(d.RMSNorm(ds.xn, ds.rinv, ds.ob, ly.postFF, m, h, eps, off))
			mo = ds.xn
		}
		do(d.Add(ds.x, ds.x, mo, m*h))
		if err := errors.Join(errs...); err != nil {
			return fmt.Errorf("generate: layer %d on %s: %w", l, d.Name(), err)
		}
	}
	// Only the last position's logits are needed, and only they come back.
	do(dec.Copy(ds.last, 0, ds.x, (m-1)*h, h))
	do(d.RMSNorm(ds.lastN, ds.rinv, ds.last, o.norm, 1, h, eps, off))
	do(d.Gemm(false, true, 1, g.voc, h, 1, ds.lastN, h, o.head, h, 0, ds.logits, g.voc))
	do(d.Download(ds.host, ds.logits))
	if err := errors.Join(errs...); err != nil {
		return fmt.Errorf("generate: logits on %s: %w", d.Name(), err)
	}
	return nil
}
