package generate

import (
	"fmt"
	"math"

	"lens/engine/gemm"
	"lens/engine/kern"
)

// Session is one sequence being decoded: its key/value cache and scratch
// buffers. It is not safe for concurrent use.
type Session struct {
	g      *Generator
	cap, n int
	// k[l] and v[l] hold layer l's keys (after RoPE) and values as
	// [kv head][position][head_dim], so one head's keys are one matrix.
	k, v                                 [][]float32
	cos, sin                             []float32 // [position][head_dim]
	cosL, sinL                           []float32 // Gemma's local layers' tables, or nil
	th                                   []float32 // GeGLU scratch
	rows                                 int       // rows the scratch buffers hold
	x, xn, q, kk, vv, z, o, gate, up, lr []float32
	scores                               [][]float32 // one per head
	logits                               []float32
	wide                                 []float32   // a packed weight widened (quantized bases)
	dev                                  *devSession // nil on the CPU
}

// NewSession returns an empty sequence with room for capacity positions
// (at most max_position_embeddings).
func (g *Generator) NewSession(capacity int) (*Session, error) {
	if capacity <= 0 {
		return nil, fmt.Errorf("generate: session capacity %d: must be positive", capacity)
	}
	if max := g.cfg.MaxPositionEmbeddings; capacity > max {
		return nil, fmt.Errorf("generate: session of %d positions: more than the model's max_position_embeddings %d", capacity, max)
	}
	s := &Session{g: g, cap: capacity, logits: make([]float32, g.voc)}
	kvSize := g.nkv * capacity * g.hd
	for range g.layers {
		if g.dev != nil {
			break // the cache is on the device
		}
		s.k = append(s.k, make([]float32, kvSize))
		s.v = append(s.v, make([]float32, kvSize))
	}
	s.cos, s.sin = kern.RopeTableFreq(capacity, g.hd, g.invFreq)
	if g.invLocal != nil {
		s.cosL, s.sinL = kern.RopeTableFreq(capacity, g.hd, g.invLocal)
	}
	s.scores = make([][]float32, g.nh)
	if g.dev != nil {
		if err := g.newDevSession(s); err != nil {
			return nil, err
		}
		s.cos, s.sin = nil, nil // uploaded
	}
	return s, nil
}

// Close frees the session's device memory; on the CPU it does nothing.
func (s *Session) Close() {
	if s.dev != nil {
		s.dev.close()
		s.dev = nil
	}
}

// Len is the number of positions filled.
func (s *Session) Len() int { return s.n }

// Append runs tokens through the model at the next positions, adding their
// keys and values to the cache, and returns the logits after the last one.
// The slice is reused by the next call.
func (s *Session) Append(tokens []int32) ([]float32, error) {
	g := s.g
	if len(tokens) == 0 {
		return nil, fmt.Errorf("generate: no tokens to append")
	}
	if s.n+len(tokens) > s.cap {
		return nil, fmt.Errorf("generate: %d tokens at position %d exceed the session's %d positions", len(tokens), s.n, s.cap)
	}
	for i, id := range tokens {
		if id < 0 || int(id) >= g.voc {
			return nil, fmt.Errorf("generate: token %d is id %d, outside the vocabulary [0, %d)", i, id, g.voc)
		}
	}
	if s.dev != nil {
		if err := s.dev.append(tokens, s.n); err != nil {
			return nil, err
		}
		s.n += len(tokens)
		return s.logits, nil
	}
	m, h := len(tokens), g.hidden
	s.grow(m)
	x := s.x[:m*h]
	for i, id := range tokens {
		s.embedRow(id, x[i*h:(i+1)*h])
	}
	if g.embedScale != 0 {
		for i := range x {
			x[i] *= g.embedScale
		}
	}
	eps := float32(g.cfg.RMSNormEps)
	off := g.normOff
	for l := range g.layers {
		ly := &g.layers[l]
		xn := s.xn[:m*h]
		normOff(xn, x, ly.inNorm, m, h, eps, off)
		q, k, v := s.q[:m*ly.q.out], s.kk[:m*ly.k.out], s.vv[:m*ly.v.out]
		s.apply(&ly.q, xn, q, m)
		s.apply(&ly.k, xn, k, m)
		s.apply(&ly.v, xn, v, m)
		if ly.qNorm != nil {
			normOff(q, q, ly.qNorm, m*g.nh, g.hd, eps, off)
			normOff(k, k, ly.kNorm, m*g.nkv, g.hd, eps, off)
		}
		cos, sin := s.cos, s.sin
		if ly.local {
			cos, sin = s.cosL, s.sinL
		}
		s.rope(q, m, g.nh, cos, sin)
		s.rope(k, m, g.nkv, cos, sin)
		// Scatter the new keys and values into the per-head cache.
		for i := range m {
			p := s.n + i
			for j := range g.nkv {
				dst := (j*s.cap + p) * g.hd
				copy(s.k[l][dst:dst+g.hd], k[(i*g.nkv+j)*g.hd:])
				copy(s.v[l][dst:dst+g.hd], v[(i*g.nkv+j)*g.hd:])
			}
		}
		z := s.z[:m*g.nh*g.hd]
		s.attention(l, q, z, m)
		o := s.o[:m*h]
		s.apply(&ly.o, z, o, m)
		if ly.preFF != nil { // Gemma: the norm after attention, then the one before the MLP
			normOff(o, o, ly.postNorm, m, h, eps, off)
			add(x, o)
			normOff(xn, x, ly.preFF, m, h, eps, off)
		} else {
			add(x, o)
			normOff(xn, x, ly.postNorm, m, h, eps, off)
		}
		gate, up := s.gate[:m*ly.gate.out], s.up[:m*ly.up.out]
		s.apply(&ly.gate, xn, gate, m)
		s.apply(&ly.up, xn, up, m)
		if g.cfg.Gemma() {
			s.th = grow(s.th, len(gate))
			kern.GeGLU(kern.Cores(g.threads), gate, up, gate, s.th)
		} else {
			swiGLU(gate, up)
		}
		s.apply(&ly.down, gate, o, m)
		if ly.postFF != nil {
			normOff(o, o, ly.postFF, m, h, eps, off)
		}
		add(x, o)
	}
	s.n += m
	// Only the last position's logits are needed.
	last := s.xn[:h]
	normOff(last, x[(m-1)*h:m*h], g.norm, 1, h, eps, off)
	s.headLogits(last)
	return s.logits, nil
}

// grow sizes the scratch buffers for m rows.
func (s *Session) grow(m int) {
	if m <= s.rows {
		return
	}
	g := s.g
	l := g.layers[0]
	s.rows = m
	s.x = make([]float32, m*g.hidden)
	s.xn = make([]float32, m*g.hidden)
	s.o = make([]float32, m*g.hidden)
	s.q = make([]float32, m*l.q.out)
	s.kk = make([]float32, m*l.k.out)
	s.vv = make([]float32, m*l.v.out)
	s.z = make([]float32, m*g.nh*g.hd)
	s.gate = make([]float32, m*l.gate.out)
	s.up = make([]float32, m*l.up.out)
	r := 0
	for _, ly := range g.layers {
		for _, p := range []*linear{&ly.q, &ly.k, &ly.v, &ly.o, &ly.gate, &ly.up, &ly.down} {
			r = max(r, p.r)
		}
	}
	s.lr = make([]float32, m*r)
}

// apply computes y = x·Wᵀ, plus s·(x·Aᵀ)·Bᵀ when adapted, for m rows.
func (s *Session) apply(p *linear, x, y []float32, m int) {
	w := p.w
	if p.p != nil {
		w = s.widen(p.p)
	}
	if m == 1 {
		s.g.matVec(w, p.out, p.in, x, y)
	} else {
		gemm.Sgemm(false, true, m, p.out, p.in, 1, x, p.in, w, p.in, 0, y, p.out)
	}
	if p.bias != nil {
		for i := range m {
			for j, b := range p.bias {
				y[i*p.out+j] += b
			}
		}
	}
	if p.a == nil {
		return
	}
	t := s.lr[:m*p.r]
	gemm.Sgemm(false, true, m, p.r, p.in, 1, x, p.in, p.a, p.in, 0, t, p.r)
	// y += s·t·Bᵀ, as PEFT adds the scaled LoRA product to the base output.
	gemm.Sgemm(false, true, m, p.out, p.r, p.scale, t, p.r, p.b, p.r, 1, y, p.out)
}

// matVec sets y = W·x for W rows×cols: as a product with one column it
// takes gemm's dot-product path, which streams W once. gemm splits by the
// product's flops, which keeps a one-column product of a layer's size on
// one core; decoding is bound by reading W, so the rows are split here
// over every core (each row's sum does not depend on the split).
func (g *Generator) matVec(w []float32, rows, cols int, x, y []float32) {
	if g.threads < 2 || rows*cols < 1<<16 {
		gemm.SgemmThreads(1, false, true, rows, 1, cols, 1, w, cols, x, cols, 0, y, 1)
		return
	}
	gemm.ParallelFor(rows, 48, g.threads, func(_, lo, hi int) {
		gemm.SgemmThreads(1, false, true, hi-lo, 1, cols, 1, w[lo*cols:hi*cols], cols, x, cols, 0, y[lo:hi], 1)
	})
}

// rope rotates each of the heads of m rows at positions s.n.. in place
// (HF's rotate-half convention).
func (s *Session) rope(x []float32, m, heads int, cos, sin []float32) {
	hd, half := s.g.hd, s.g.hd/2
	for i := range m {
		p := s.n + i
		c, sn := cos[p*hd:(p+1)*hd], sin[p*hd:(p+1)*hd]
		for j := range heads {
			r := x[(i*heads+j)*hd : (i*heads+j+1)*hd]
			for d := range half {
				a, b := r[d], r[d+half]
				r[d] = a*c[d] - b*sn[d]
				r[d+half] = b*c[d+half] + a*sn[d+half]
			}
		}
	}
}

// attention computes z for m new query rows at positions s.n.. against the
// cached keys 0..s.n+m-1, causally, one head per worker. Query head h reads
// kv head h/(heads/kv heads), as HF's repeat_kv.
func (s *Session) attention(l int, q, z []float32, m int) {
	g := s.g
	hd, nh, L := g.hd, g.nh, s.n+m
	rep := nh / g.nkv
	alpha := g.attnScale
	win := g.layers[l].window
	gemm.ParallelFor(nh, 1, g.threads, func(_, lo, hi int) {
		for h := lo; h < hi; h++ {
			kv := h / rep
			K := s.k[l][kv*s.cap*hd : (kv*s.cap+L)*hd]
			V := s.v[l][kv*s.cap*hd : (kv*s.cap+L)*hd]
			if cap(s.scores[h]) < m*L {
				s.scores[h] = make([]float32, m*L, max(m*L, s.cap))
			}
			sc := s.scores[h][:m*L]
			gemm.SgemmThreads(1, false, true, m, L, hd, alpha, q[h*hd:], nh*hd, K, hd, 0, sc, L)
			for i := range m {
				row, n := sc[i*L:(i+1)*L], s.n+i+1
				lo := 0
				if win > 0 { // keys within the sliding window only
					lo = max(0, n-win)
					clear(row[:lo])
				}
				kern.SoftmaxPrefix(row[lo:], n-lo)
			}
			gemm.SgemmThreads(1, false, false, m, hd, L, 1, sc, L, V, hd, 0, z[h*hd:], nh*hd)
		}
	})
}

// rmsNorm sets y = x·rsqrt(mean(x²)+eps)·w row by row.
func rmsNorm(y, x, w []float32, m, h int, eps float32) {
	for i := range m {
		r, out := x[i*h:(i+1)*h], y[i*h:(i+1)*h]
		var ss float64
		for _, v := range r {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(float64(float32(ss/float64(h))+eps)))
		for j, v := range r {
			out[j] = v * inv * w[j]
		}
	}
}

// normOff is rmsNorm scaled by w + off (Gemma's (1 + w) with off 1); y
// may be x.
func normOff(y, x, w []float32, m, h int, eps, off float32) {
	for i := range m {
		r, out := x[i*h:(i+1)*h], y[i*h:(i+1)*h]
		var ss float64
		for _, v := range r {
			ss += float64(v) * float64(v)
		}
		inv := float32(1 / math.Sqrt(float64(float32(ss/float64(h))+eps)))
		for j, v := range r {
			out[j] = v * inv * (w[j] + off)
		}
	}
}

func grow(b []float32, n int) []float32 {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]float32, n)
}

// swiGLU sets gate = silu(gate)·up.
func swiGLU(gate, up []float32) {
	for i, g := range gate {
		gate[i] = float32(float64(g)/(1+math.Exp(-float64(g)))) * up[i]
	}
}

func add(x, y []float32) {
	for i := range x {
		x[i] += y[i]
	}
}
