package kern

import (
	"fmt"
	"math"
)

// ---- embedding ----

// Embed copies row ids[n] of table (·×dim) into row n of out.
func Embed[T Float](table []T, dim int, ids []int32, out []T) error {
	vocab := len(table) / dim
	for n, id := range ids {
		if id < 0 || int(id) >= vocab {
			return fmt.Errorf("token id %d at position %d outside vocabulary of %d", id, n, vocab)
		}
		copy(out[n*dim:(n+1)*dim], table[int(id)*dim:(int(id)+1)*dim])
	}
	return nil
}

// EmbedBack adds row n of dout into row ids[n] of dtable, in order of n.
func EmbedBack[T Float](dtable []T, dim int, ids []int32, dout []T) {
	for n, id := range ids {
		row := dtable[int(id)*dim : (int(id)+1)*dim]
		d := dout[n*dim : (n+1)*dim]
		for j := range row {
			row[j] += d[j]
		}
	}
}

// ---- RMSNorm: y = x · rsqrt(mean(x²) + eps) · w ----

// RowChunk is the number of rows a row-wise kernel hands a goroutine at
// least. Kernels that sum over rows do it in chunks of exactly RowChunk
// rows, so their sums do not depend on the number of goroutines.
const RowChunk = 64

// RMSNorm normalises the rows of x (·×len(w)) into out and keeps each
// row's reciprocal root in rinv.
func RMSNorm[T Float](c Cores, x, w []T, eps float64, out, rinv []T) {
	h := len(w)
	c.ParallelFor(len(x)/h, RowChunk, func(_, lo, hi int) {
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

// RMSNormPartLen is the length of the scratch RMSNormBack needs for the
// weight gradient of rows×h.
func RMSNormPartLen(rows, h int) int { return (rows + RowChunk - 1) / RowChunk * h }

// RMSNormBack: with r = rsqrt(mean(x²)+eps), it sets dx = r·(w⊙dy) −
// x·r³/H·Σ(x⊙w⊙dy) and dw = Σ_n dy⊙x·r, each when not nil. dw is summed
// per chunk of RowChunk rows into part (RMSNormPartLen) and then over
// chunks in order.
func RMSNormBack[T Float](c Cores, x, w, rinv, dy, dx, dw, part []T) {
	h := len(w)
	rows := len(x) / h
	chunks := (rows + RowChunk - 1) / RowChunk
	c.ParallelFor(chunks, 1, func(_, lo, hi int) {
		for ch := lo; ch < hi; ch++ {
			pc := part[ch*h : (ch+1)*h]
			clear(pc)
			for n := ch * RowChunk; n < min(rows, (ch+1)*RowChunk); n++ {
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
		clear(dw)
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

// RopeGather sets dcos and dsin (len(pos)×headDim) to the rows pos[n] of
// the tables cos and sin (·×headDim), so that RoPE over them with seqLen =
// len(pos) rotates token n at position pos[n]: positions that restart at
// each example of a packed row, on every device, with no other kernel.
func RopeGather(dcos, dsin, cos, sin []float32, headDim int, pos []int32) error {
	rows := len(cos) / headDim
	for n, p := range pos {
		if p < 0 || int(p) >= rows {
			return fmt.Errorf("rope: position %d of token %d is outside the table's %d positions", p, n, rows)
		}
		copy(dcos[n*headDim:(n+1)*headDim], cos[int(p)*headDim:(int(p)+1)*headDim])
		copy(dsin[n*headDim:(n+1)*headDim], sin[int(p)*headDim:(int(p)+1)*headDim])
	}
	return nil
}

// RoPE computes y = x·cos + rotate_half(x)·sin for every head of every
// row (forward), or the transpose when back is true:
// dx = dy·cos + rotate_halfᵀ(dy·sin), where rotate_halfᵀ([a, b]) = [b, −a].
// Row n of x is position n mod seqLen and holds rowLen/headDim heads.
func RoPE[T Float](c Cores, x, y []T, rowLen, seqLen, headDim int, cos, sin []float32, back bool) {
	c.ParallelFor(len(x)/rowLen, RowChunk, func(_, lo, hi int) {
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

// SwiGLU computes y = silu(g)·u and keeps σ(g) in sig for the backward
// pass.
func SwiGLU[T Float](c Cores, g, u, y, sig []T) {
	c.ParallelFor(len(g), 1<<14, func(_, lo, hi int) {
		sigmoidSlice(sig[lo:hi], g[lo:hi])
		for i := lo; i < hi; i++ {
			y[i] = g[i] * sig[i] * u[i]
		}
	})
}

// SwiGLUBack sets dg = dy·u·σ(g)·(1 + g·(1−σ(g))) and du = dy·g·σ(g),
// each when not nil.
func SwiGLUBack[T Float](c Cores, g, u, sig, dy, dg, du []T) {
	c.ParallelFor(len(g), 1<<14, func(_, lo, hi int) {
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

// ---- element-wise ----

// Add sets dst = a + b.
func Add[T Float](c Cores, dst, a, b []T) {
	c.ParallelFor(len(dst), 1<<15, func(_, lo, hi int) {
		d, x, y := dst[lo:hi], a[lo:hi], b[lo:hi]
		for i := range d {
			d[i] = x[i] + y[i]
		}
	})
}

// Mul sets dst = a⊙m, or adds a⊙m to dst when acc is true (a dropout
// mask applied forward, or to a gradient).
func Mul[T Float](c Cores, dst, a, m []T, acc bool) {
	c.ParallelFor(len(dst), 1<<15, func(_, lo, hi int) {
		d, x, y := dst[lo:hi], a[lo:hi], m[lo:hi]
		for i := range d {
			if acc {
				d[i] += x[i] * y[i]
			} else {
				d[i] = x[i] * y[i]
			}
		}
	})
}

// ---- softmax cross-entropy over logits N×V ----

// CrossEntropy sets each row of probs to the softmax of that row of logits
// and rowLoss[n] to its negative log-likelihood of targets[n] (0 where the
// target is negative, which means ignored). It returns the number of
// counted rows. probs may be logits itself. It runs on one goroutine:
// CrossEntropyOn splits the rows over cores.
func CrossEntropy[T Float](logits []T, vocab int, targets []int32, probs []T, rowLoss []float64) (int, error) {
	return CrossEntropyOn(1, logits, vocab, targets, probs, rowLoss)
}

// CrossEntropyOn is CrossEntropy with the rows split over c's workers (a
// 1,024-token batch at a 128k vocabulary is half a gigabyte of logits, too
// much for one core while the other idles). Rows are independent, so the
// results do not depend on c.
func CrossEntropyOn[T Float](c Cores, logits []T, vocab int, targets []int32, probs []T, rowLoss []float64) (int, error) {
	count := 0
	for n, t := range targets {
		if t >= 0 && int(t) >= vocab {
			return 0, fmt.Errorf("target id %d at position %d outside vocabulary of %d", t, n, vocab)
		}
		if t >= 0 {
			count++
		}
	}
	if c.Workers() == 1 {
		// Without the closure: a 1-core call allocates nothing.
		crossEntropyRows(logits, vocab, targets, probs, rowLoss, 0, len(targets))
		return count, nil
	}
	c.ParallelFor(len(targets), rowsPerPart(vocab), func(_, lo, hi int) {
		crossEntropyRows(logits, vocab, targets, probs, rowLoss, lo, hi)
	})
	return count, nil
}

// crossEntropyRows is CrossEntropy's work on rows [lo, hi).
func crossEntropyRows[T Float](logits []T, vocab int, targets []int32, probs []T, rowLoss []float64, lo, hi int) {
	for n := lo; n < hi; n++ {
		t := targets[n]
		row := logits[n*vocab : (n+1)*vocab]
		pr := probs[n*vocab : (n+1)*vocab]
		var picked float64
		if t >= 0 {
			picked = float64(row[t])
		}
		if len(pr) > 0 && &pr[0] != &row[0] {
			copy(pr, row)
		}
		m, sum := softmaxRow(pr)
		rowLoss[n] = 0
		if t >= 0 {
			rowLoss[n] = math.Log(sum) + m - picked
		}
	}
}

// rowsPerPart is the least number of rows of n elements worth a goroutine
// in the row-wise kernels: about 16k elements.
func rowsPerPart(n int) int { return max(1, (1<<14)/max(1, n)) }

// CrossEntropyBack sets dlogits = (probs − onehot(target))·scale on counted
// rows and 0 on ignored ones. dlogits may be probs itself. It runs on one
// goroutine: CrossEntropyBackOn splits the rows over cores.
func CrossEntropyBack[T Float](probs []T, vocab int, targets []int32, scale T, dlogits []T) {
	CrossEntropyBackOn(1, probs, vocab, targets, scale, dlogits)
}

// CrossEntropyBackOn is CrossEntropyBack with the rows split over c's
// workers; the results do not depend on c.
func CrossEntropyBackOn[T Float](c Cores, probs []T, vocab int, targets []int32, scale T, dlogits []T) {
	if c.Workers() == 1 {
		crossEntropyBackRows(probs, vocab, targets, scale, dlogits, 0, len(targets))
		return
	}
	c.ParallelFor(len(targets), rowsPerPart(vocab), func(_, lo, hi int) {
		crossEntropyBackRows(probs, vocab, targets, scale, dlogits, lo, hi)
	})
}

// crossEntropyBackRows is CrossEntropyBack's work on rows [lo, hi).
func crossEntropyBackRows[T Float](probs []T, vocab int, targets []int32, scale T, dlogits []T, lo, hi int) {
	for n := lo; n < hi; n++ {
		t := targets[n]
		pr, d := probs[n*vocab:(n+1)*vocab], dlogits[n*vocab:(n+1)*vocab]
		if t < 0 {
			clear(d)
			continue
		}
		for j := range pr {
			d[j] = pr[j] * scale
		}
		d[t] -= scale
	}
}

// ---- AdamW ----

// AdamParams are one AdamW update's scalars for one tensor.
type AdamParams struct {
	Beta1, Beta2, Eps float32
	Step              float32 // lr·lrScale/(1−β1^t)
	Sq                float32 // 1/√(1−β2^t)
	Decay             float32 // 1 − lr·weight_decay, or 1
	GScale            float32 // clipping factor
}

// AdamW updates p and its moments m, v from the gradient g scaled by
// h.GScale: m = β1·m + (1−β1)·g, v = β2·v + (1−β2)·g², p = p·decay −
// step·m/(√v·sq + eps) (decoupled weight decay, bias correction folded
// into step and sq).
func AdamW(p, g, m, v []float32, h AdamParams) {
	b1, b2 := h.Beta1, h.Beta2
	for i, gi := range g[:len(p)] {
		gi *= h.GScale
		mi := b1*m[i] + (1-b1)*gi
		vi := b2*v[i] + (1-b2)*gi*gi
		m[i], v[i] = mi, vi
		p[i] = p[i]*h.Decay - h.Step*mi/(float32(math.Sqrt(float64(vi)))*h.Sq+h.Eps)
	}
}
