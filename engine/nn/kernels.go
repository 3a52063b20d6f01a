package nn

import (
	"fmt"
	"math"
)

// Feed carries the non-differentiable inputs of one graph run: token ids,
// targets and dropout masks. The caller fills it before each run.
type Feed struct {
	B, T    int
	Inputs  []int32 // B×T token ids
	Targets []int32 // B×T next-token ids; negative means ignored
	// Masks holds one dropout mask per LoRA module name, N×in, entries
	// 0 or 1/(1-p). A nil entry means no dropout.
	Masks map[string][]float32
}

// N is the number of token positions in a run.
func (f *Feed) N() int { return f.B * f.T }

// ---- embedding ----

func embedForward[T Float](table []T, dim int, ids []int32, out []T) error {
	vocab := len(table) / dim
	for n, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("token id %d at position %d outside vocabulary of %d", id, n, vocab)
		}
		copy(out[n*dim:(n+1)*dim], table[int(id)*dim:(int(id)+1)*dim])
	}
	return nil
}

func embedBackward[T Float](dtable []T, dim int, ids []int32, dout []T) {
	for n, id := range ids {
		row := dtable[int(id)*dim : (int(id)+1)*dim]
		d := dout[n*dim : (n+1)*dim]
		for j := range row {
			row[j] += d[j]
		}
	}
}

// ---- RMSNorm: y = x · rsqrt(mean(x²) + eps) · w ----

// rowChunk is the number of rows a row-wise kernel hands a goroutine at
// least. Kernels that sum over rows do it in chunks of exactly rowChunk
// rows, so their sums do not depend on the number of goroutines.
const rowChunk = 64

func rmsForward[T Float](c cores, x, w []T, eps float64, out, rinv []T) {
	h := len(w)
	c.parallelFor(len(x)/h, rowChunk, func(_, lo, hi int) {
		for n := lo; n < hi; n++ {
			xs := x[n*h : (n+1)*h]
			var ss float64
			for _, v := range xs {
				ss += float64(v) * float64(v)
			}
			r := T(1 / math.Sqrt(ss/float64(h)+eps))
			rinv[n] = r
			ys := out[n*h : (n+1)*h]
			for j, v := range xs {
				ys[j] = v * r * w[j]
			}
		}
	})
}

// rmsBackward: with r = rsqrt(mean(x²)+eps), dx = r·(w⊙dy) − x·r³/H·Σ(x⊙w⊙dy)
// and dw = Σ_n dy⊙x·r, summed per chunk of rowChunk rows into part
// (chunks×H) and then over chunks in order.
func rmsBackward[T Float](c cores, x, w, rinv, dy, dx, dw, part []T) {
	h := len(w)
	rows := len(x) / h
	chunks := (rows + rowChunk - 1) / rowChunk
	c.parallelFor(chunks, 1, func(_, lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			pc := part[ch*h : (ch+1)*h]
			clear(pc)
			for n := ch * rowChunk; n < min(rows, (ch+1)*rowChunk); n++ {
				xs, ds := x[n*h:(n+1)*h], dy[n*h:(n+1)*h]
				r := rinv[n]
				if dx != nil {
					var dot float64
					for j := range xs {
						dot += float64(xs[j]) * float64(w[j]) * float64(ds[j])
					}
					f := T(dot * float64(r) * float64(r) * float64(r) / float64(h))
					dxs := dx[n*h : (n+1)*h]
					for j := range xs {
						dxs[j] = r*w[j]*ds[j] - xs[j]*f
					}
				}
				if dw != nil {
					for j := range xs {
						pc[j] += ds[j] * xs[j] * r
					}
				}
			}
		}
	})
	if dw != nil {
		for ch := range chunks {
			for j, v := range part[ch*h : (ch+1)*h] {
				dw[j] += v
			}
		}
	}
}

// ---- rotary embeddings, HF rotate-half convention ----

// RopeTable returns cos and sin tables of shape T×headDim computed as HF does
// in float32: inv_freq = 1/θ^(2i/d), angle = pos·inv_freq, emb = cat(a, a).
func RopeTable(seqLen, headDim int, theta float64) (cos, sin []float32) {
	half := headDim / 2
	cos = make([]float32, seqLen*headDim)
	sin = make([]float32, seqLen*headDim)
	for i := range half {
		inv := float32(1 / math.Pow(theta, float64(2*i)/float64(headDim)))
		for p := range seqLen {
			a := float64(float32(p) * inv)
			c, s := float32(math.Cos(a)), float32(math.Sin(a))
			cos[p*headDim+i], cos[p*headDim+i+half] = c, c
			sin[p*headDim+i], sin[p*headDim+i+half] = s, s
		}
	}
	return cos, sin
}

// ropeApply computes y = x·cos + rotate_half(x)·sin for every head of every
// row (forward), or the transpose when back is true:
// dx = dy·cos + rotate_halfᵀ(dy·sin), where rotate_halfᵀ([a, b]) = [b, −a].
// Row n of x is position n mod seqLen and holds rowLen/headDim heads.
func ropeApply[T Float](c cores, x, y []T, rowLen, seqLen, headDim int, cos, sin []float32, back bool) {
	c.parallelFor(len(x)/rowLen, rowChunk, func(_, lo, hi int) {
		ropeRows(x, y, rowLen, seqLen, headDim, cos, sin, back, lo, hi)
	})
}

func ropeRows[T Float](x, y []T, rowLen, seqLen, headDim int, cos, sin []float32, back bool, lo, hi int) {
	half := headDim / 2
	for n := lo; n < hi; n++ {
		p := n % seqLen
		c, s := cos[p*headDim:(p+1)*headDim], sin[p*headDim:(p+1)*headDim]
		for h := 0; h < rowLen; h += headDim {
			xs := x[n*rowLen+h : n*rowLen+h+headDim]
			ys := y[n*rowLen+h : n*rowLen+h+headDim]
			for i := range half {
				a, b := xs[i], xs[i+half]
				ca, cb := T(c[i]), T(c[i+half])
				sa, sb := T(s[i]), T(s[i+half])
				if !back {
					ys[i] = a*ca - b*sa
					ys[i+half] = b*cb + a*sb
				} else {
					ys[i] = a*ca + b*sb
					ys[i+half] = b*cb - a*sa
				}
			}
		}
	}
}

// ---- SwiGLU: y = silu(g)·u ----

// swigluForward computes y = silu(g)·u and keeps σ(g) in sig for the
// backward pass.
func swigluForward[T Float](c cores, g, u, y, sig []T) {
	c.parallelFor(len(g), 1<<14, func(_, lo, hi int) {
		sigmoidSlice(sig[lo:hi], g[lo:hi])
		for i := lo; i < hi; i++ {
			y[i] = g[i] * sig[i] * u[i]
		}
	})
}

// swigluBackward: dg = dy·u·σ(g)·(1 + g·(1−σ(g))), du = dy·g·σ(g).
func swigluBackward[T Float](c cores, g, u, sig, dy, dg, du []T) {
	c.parallelFor(len(g), 1<<14, func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			gv, s := g[i], sig[i]
			if dg != nil {
				dg[i] = dy[i] * u[i] * s * (1 + gv*(1-s))
			}
			if du != nil {
				du[i] = dy[i] * gv * s
			}
		}
	})
}

// ---- causal grouped-query attention ----

// attnDims describes q (N×nh·d), k and v (N×nkv·d) with N = B·T.
type attnDims struct{ B, T, NH, NKV, D int }

// attnBlock is the block size of the causal products. Query rows
// [r0, r1) only meet keys [0, r1), so the products skip the blocks above
// the diagonal (3/8 of the work at T = 256 with blocks of 64). Every
// product is cut so that its B operand, the one gemm packs, is packed once
// per head: S = q·kᵀ and dP = dO·vᵀ by column block of the result, the
// others by blocks of their inner dimension, accumulated. Masked entries are
// exact zeros, so the result equals full products up to summation order.
var attnBlock = 64

// attnForward computes out = softmax(q·kᵀ/√d + causal)·v per batch and head,
// keeping the probabilities P (B·nh×T×T) for the backward pass. Query head h
// reads kv head h/(nh/nkv), as HF's repeat_kv does.
func attnForward[T Float](c cores, a attnDims, q, k, v, out, P []T) {
	qw, kw := a.NH*a.D, a.NKV*a.D
	group := a.NH / a.NKV
	scale := 1 / math.Sqrt(float64(a.D))
	c.parallelFor(a.B*a.NH, 1, func(_, lo, hi int) {
		for bh := lo; bh < hi; bh++ {
			b, h := bh/a.NH, bh%a.NH
			g := h / group
			p := P[(b*a.NH+h)*a.T*a.T : (b*a.NH+h+1)*a.T*a.T]
			qo, ko := b*a.T*qw+h*a.D, b*a.T*kw+g*a.D
			// S[c0:T, c0:c1] = q[c0:T]·k[c0:c1]ᵀ
			for c0 := 0; c0 < a.T; c0 += attnBlock {
				c1 := min(a.T, c0+attnBlock)
				matmul(c, false, true, a.T-c0, c1-c0, a.D, T(scale), q[qo+c0*qw:], qw, k[ko+c0*kw:], kw, 0, p[c0*a.T+c0:], a.T)
			}
			for i := range a.T {
				row := p[i*a.T : (i+1)*a.T]
				softmaxRow(row[:i+1])
				clear(row[i+1:])
			}
			// out[c0:T] += P[c0:T, c0:c1]·v[c0:c1]
			for c0 := 0; c0 < a.T; c0 += attnBlock {
				c1 := min(a.T, c0+attnBlock)
				matmul(c, false, false, a.T-c0, a.D, c1-c0, 1, p[c0*a.T+c0:], a.T, v[ko+c0*kw:], kw, min(T(c0), 1), out[qo+c0*qw:], qw)
			}
		}
	})
}

// attnBackward: dP = dO·vᵀ, dS = P⊙(dP − rowsum(dP⊙P)), dq = dS·k/√d,
// dk = Σ dSᵀ·q/√d, dv = Σ Pᵀ·dO over the query heads of a kv head. ds is
// scratch of c.workers()·T·T.
func attnBackward[T Float](c cores, a attnDims, q, k, v, P, dout, dq, dk, dv, ds []T) {
	qw, kw := a.NH*a.D, a.NKV*a.D
	group := a.NH / a.NKV
	scale := T(1 / math.Sqrt(float64(a.D)))
	// Work is split by (batch, kv head): the query heads of a group add
	// into the same dk and dv, so a group stays in one goroutine.
	c.parallelFor(a.B*a.NKV, 1, func(w, lo, hi int) {
		ds := ds[w*a.T*a.T : (w+1)*a.T*a.T]
		for bg := lo; bg < hi; bg++ {
			b, g := bg/a.NKV, bg%a.NKV
			ko := b*a.T*kw + g*a.D
			// dk and dv of the group are sums over its heads and blocks.
			for i := range a.T {
				clear(dk[ko+i*kw : ko+i*kw+a.D])
				clear(dv[ko+i*kw : ko+i*kw+a.D])
			}
			for h := g * group; h < (g+1)*group; h++ {
				p := P[(b*a.NH+h)*a.T*a.T : (b*a.NH+h+1)*a.T*a.T]
				qo := b*a.T*qw + h*a.D
				for r0 := 0; r0 < a.T; r0 += attnBlock {
					r1 := min(a.T, r0+attnBlock)
					// dv[0:r1] += P[r0:r1, 0:r1]ᵀ·dO[r0:r1]
					matmul(c, true, false, r1, a.D, r1-r0, 1, p[r0*a.T:], a.T, dout[qo+r0*qw:], qw, 1, dv[ko:], kw)
					// dP[r0:T, r0:r1] = dO[r0:T]·v[r0:r1]ᵀ
					matmul(c, false, true, a.T-r0, r1-r0, a.D, 1, dout[qo+r0*qw:], qw, v[ko+r0*kw:], kw, 0, ds[r0*a.T+r0:], a.T)
				}
				for i := range a.T {
					dr := ds[i*a.T : (i+1)*a.T]
					softmaxBackRow(p[i*a.T:i*a.T+i+1], dr[:i+1])
					clear(dr[i+1:])
				}
				for r0 := 0; r0 < a.T; r0 += attnBlock {
					r1 := min(a.T, r0+attnBlock)
					// dq[r0:T] += dS[r0:T, r0:r1]·k[r0:r1]
					matmul(c, false, false, a.T-r0, a.D, r1-r0, scale, ds[r0*a.T+r0:], a.T, k[ko+r0*kw:], kw, min(T(r0), 1), dq[qo+r0*qw:], qw)
					// dk[0:r1] += dS[r0:r1, 0:r1]ᵀ·q[r0:r1]
					matmul(c, true, false, r1, a.D, r1-r0, scale, ds[r0*a.T:], a.T, q[qo+r0*qw:], qw, 1, dk[ko:], kw)
				}
			}
		}
	})
}

// ---- cross-entropy over logits N×V ----

// ceForward returns the mean negative log-likelihood over positions whose
// target is not negative, and the number of such positions. It keeps the
// softmax in probs for the backward pass.
func ceForward[T Float](logits []T, vocab int, targets []int32, probs []T) (float64, int, error) {
	var total float64
	count := 0
	for n, t := range targets {
		row := logits[n*vocab : (n+1)*vocab]
		pr := probs[n*vocab : (n+1)*vocab]
		copy(pr, row)
		m, sum := softmaxRow(pr)
		if t < 0 {
			continue
		}
		if int(t) >= vocab {
			return 0, 0, fmt.Errorf("target id %d at position %d outside vocabulary of %d", t, n, vocab)
		}
		total += math.Log(sum) + m - float64(row[t])
		count++
	}
	if count == 0 {
		return 0, 0, nil
	}
	return total / float64(count), count, nil
}

func ceBackward[T Float](probs []T, vocab int, targets []int32, count int, dloss T, dlogits []T) {
	if count == 0 {
		clear(dlogits)
		return
	}
	c := dloss / T(count)
	for n, t := range targets {
		pr, d := probs[n*vocab:(n+1)*vocab], dlogits[n*vocab:(n+1)*vocab]
		if t < 0 {
			clear(d)
			continue
		}
		for j := range pr {
			d[j] = pr[j] * c
		}
		d[t] -= c
	}
}
