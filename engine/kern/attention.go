package kern

import "math"

// Attn is the shape of a causal grouped-query attention over B sequences
// of T tokens: q is B·T×NH·D, k and v are B·T×NKV·D, and query head h reads
// key/value head h/(NH/NKV), as HF's repeat_kv does.
//
// Seg, when not nil, holds a segment id for each of the B·T tokens, and a
// query attends only to the keys k ≤ q of its own segment: the
// block-diagonal causal mask of packed rows (several examples per row).
// Equal ids must be contiguous within a row; nil is one causal sequence
// per row.
type Attn struct {
	B, T, NH, NKV, D int
	Seg              []int32
	// Window, when positive, is a sliding window: a query sees itself and
	// the Window−1 keys before it (Mistral, Gemma's local layers).
	Window int
	// Scale multiplies q·kᵀ; 0 means 1/√D (Gemma uses
	// query_pre_attn_scalar^-½).
	Scale float64
	// Recompute keeps no probabilities: Attention's P is per-worker scratch
	// (AttnProbsLen) and AttentionBack recomputes each head's P with the
	// forward's code before using it, so results are bit-identical and
	// B·NH×T×T values are never held (activation checkpointing).
	Recompute bool
}

// scale is the factor of q·kᵀ.
func (a Attn) scale() float64 {
	if a.Scale != 0 {
		return a.Scale
	}
	return 1 / math.Sqrt(float64(a.D))
}

// from is the first key query i sees: its segment's start (start from
// segStart, nil without segments), cut by the sliding window.
func (a Attn) from(start []int, i int) int {
	s := first(start, i)
	if a.Window > 0 {
		s = max(s, i-a.Window+1)
	}
	return s
}

// segStart returns, for row b, the first key each query may see: the start
// of its segment; nil without segments, where it is always 0.
func (a Attn) segStart(b int, start []int) []int {
	if a.Seg == nil {
		return nil
	}
	start = start[:a.T]
	seg := a.Seg[b*a.T : (b+1)*a.T]
	for i := range start {
		if i > 0 && seg[i] == seg[i-1] {
			start[i] = start[i-1]
		} else {
			start[i] = i
		}
	}
	return start
}

// first is start[i], or 0 when start is nil (no segments).
func first(start []int, i int) int {
	if start == nil {
		return 0
	}
	return start[i]
}

// AttnBlock is the block size of the causal products. Query rows
// [r0, r1) only meet keys [0, r1), so the products skip the blocks above
// the diagonal (3/8 of the work at T = 256 with blocks of 64). Every
// product is cut so that its B operand, the one gemm packs, is packed once
// per head: S = q·kᵀ and dP = dO·vᵀ by column block of the result, the
// others by blocks of their inner dimension, accumulated. Masked entries are
// exact zeros, so the result equals full products up to summation order.
// Tests change it to check that the blocks agree.
var AttnBlock = 64

// AttnScratchLen is the length of the scratch AttentionBack needs: one
// T×T block per worker, two with Recompute (dS and the recomputed P).
func AttnScratchLen(c Cores, a Attn) int {
	n := min(c.Workers(), max(1, a.B*a.NKV)) * a.T * a.T
	if a.Recompute {
		n *= 2
	}
	return n
}

// AttnProbsLen is the length of Attention's P: B·NH×T×T, or one T×T
// block per worker with Recompute.
func AttnProbsLen(c Cores, a Attn) int {
	if a.Recompute {
		return min(c.Workers(), max(1, a.B*a.NH)) * a.T * a.T
	}
	return a.B * a.NH * a.T * a.T
}

// probs writes head h of row b's probabilities into p (T×T): the scores
// S = q·kᵀ·scale by column block, then the masked softmax of each row.
// Forward and Recompute's backward both call it, so P is the same bits.
func attnProbs[T Float](c Cores, a Attn, q, k, p []T, start []int, b, h int) {
	qw, kw := a.NH*a.D, a.NKV*a.D
	g := h / (a.NH / a.NKV)
	qo, ko := b*a.T*qw+h*a.D, b*a.T*kw+g*a.D
	// S[c0:T, c0:c1] = q[c0:T]·k[c0:c1]ᵀ
	for c0 := 0; c0 < a.T; c0 += AttnBlock {
		c1 := min(a.T, c0+AttnBlock)
		Gemm(c, false, true, a.T-c0, c1-c0, a.D, T(a.scale()), q[qo+c0*qw:], qw, k[ko+c0*kw:], kw, 0, p[c0*a.T+c0:], a.T)
	}
	for i := range a.T {
		row := p[i*a.T : (i+1)*a.T]
		s0 := a.from(start, i)
		softmaxRow(row[s0 : i+1])
		clear(row[:s0])
		clear(row[i+1:])
	}
}

// Attention computes out = softmax(q·kᵀ/√D + causal)·v per batch and head,
// keeping the probabilities P (B·NH×T×T, zero above the diagonal and
// outside the query's segment) for the backward pass, or with Recompute
// using P as per-worker scratch (AttnProbsLen). Masked entries are exact
// zeros, so the products need no other change for segments.
func Attention[T Float](c Cores, a Attn, q, k, v, out, P []T) {
	qw, kw := a.NH*a.D, a.NKV*a.D
	group := a.NH / a.NKV
	c.ParallelFor(a.B*a.NH, 1, func(w, lo, hi int) {
		var sbuf []int // allocated only for segments: plain runs stay allocation-free
		if a.Seg != nil {
			sbuf = make([]int, a.T)
		}
		for bh := lo; bh < hi; bh++ {
			b, h := bh/a.NH, bh%a.NH
			start := a.segStart(b, sbuf)
			g := h / group
			at := b*a.NH + h
			if a.Recompute {
				at = w
			}
			p := P[at*a.T*a.T : (at+1)*a.T*a.T]
			qo, ko := b*a.T*qw+h*a.D, b*a.T*kw+g*a.D
			attnProbs(c, a, q, k, p, start, b, h)
			// out[c0:T] += P[c0:T, c0:c1]·v[c0:c1]
			for c0 := 0; c0 < a.T; c0 += AttnBlock {
				c1 := min(a.T, c0+AttnBlock)
				Gemm(c, false, false, a.T-c0, a.D, c1-c0, 1, p[c0*a.T+c0:], a.T, v[ko+c0*kw:], kw, min(T(c0), 1), out[qo+c0*qw:], qw)
			}
		}
	})
}

// AttentionBack sets dq, dk and dv from dout: dP = dO·vᵀ,
// dS = P⊙(dP − rowsum(dP⊙P)), dq = dS·k/√d, dk = Σ dSᵀ·q/√d,
// dv = Σ Pᵀ·dO over the query heads of a kv head. ds is scratch of at least
// AttnScratchLen. With Recompute, P is not read: each head's P is
// recomputed into ds's second half.
func AttentionBack[T Float](c Cores, a Attn, q, k, v, P, dout, dq, dk, dv, ds []T) {
	qw, kw := a.NH*a.D, a.NKV*a.D
	group := a.NH / a.NKV
	scale := T(a.scale())
	// Work is split by (batch, kv head): the query heads of a group add
	// into the same dk and dv, so a group stays in one goroutine.
	c.ParallelFor(a.B*a.NKV, 1, func(w, lo, hi int) {
		tt := a.T * a.T
		ds, pbuf := ds[w*tt:(w+1)*tt], ds // pbuf is only used with Recompute
		if a.Recompute {
			nw := min(c.Workers(), max(1, a.B*a.NKV))
			pbuf = pbuf[(nw+w)*tt : (nw+w+1)*tt]
		}
		var sbuf []int // allocated only for segments: plain runs stay allocation-free
		if a.Seg != nil {
			sbuf = make([]int, a.T)
		}
		for bg := lo; bg < hi; bg++ {
			b, g := bg/a.NKV, bg%a.NKV
			start := a.segStart(b, sbuf)
			ko := b*a.T*kw + g*a.D
			// dk and dv of the group are sums over its heads and blocks.
			for i := range a.T {
				clear(dk[ko+i*kw : ko+i*kw+a.D])
				clear(dv[ko+i*kw : ko+i*kw+a.D])
			}
			for h := g * group; h < (g+1)*group; h++ {
				var p []T
				if a.Recompute {
					p = pbuf
					attnProbs(c, a, q, k, p, start, b, h)
				} else {
					p = P[(b*a.NH+h)*a.T*a.T : (b*a.NH+h+1)*a.T*a.T]
				}
				qo := b*a.T*qw + h*a.D
				for r0 := 0; r0 < a.T; r0 += AttnBlock {
					r1 := min(a.T, r0+AttnBlock)
					// dv[0:r1] += P[r0:r1, 0:r1]ᵀ·dO[r0:r1]
					Gemm(c, true, false, r1, a.D, r1-r0, 1, p[r0*a.T:], a.T, dout[qo+r0*qw:], qw, 1, dv[ko:], kw)
					// dP[r0:T, r0:r1] = dO[r0:T]·v[r0:r1]ᵀ
					Gemm(c, false, true, a.T-r0, r1-r0, a.D, 1, dout[qo+r0*qw:], qw, v[ko+r0*kw:], kw, 0, ds[r0*a.T+r0:], a.T)
				}
				for i := range a.T {
					dr := ds[i*a.T : (i+1)*a.T]
					s0 := a.from(start, i)
					softmaxBackRow(p[i*a.T+s0:i*a.T+i+1], dr[s0:i+1])
					clear(dr[:s0])
					clear(dr[i+1:])
				}
				for r0 := 0; r0 < a.T; r0 += AttnBlock {
					r1 := min(a.T, r0+AttnBlock)
					// dq[r0:T] += dS[r0:T, r0:r1]·k[r0:r1]
					Gemm(c, false, false, a.T-r0, a.D, r1-r0, scale, ds[r0*a.T+r0:], a.T, k[ko+r0*kw:], kw, min(T(r0), 1), dq[qo+r0*qw:], qw)
					// dk[0:r1] += dS[r0:r1, 0:r1]ᵀ·q[r0:r1]
					Gemm(c, true, false, r1, a.D, r1-r0, scale, ds[r0*a.T:], a.T, q[qo+r0*qw:], qw, 1, dk[ko:], kw)
				}
			}
		}
	})
}
