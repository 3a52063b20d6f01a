package nn

import (
	"fmt"

	"gorgonia.org/tensor"

	"lens/engine/kern"
)

func wantRank(name string, in []tensor.Shape, ranks ...int) error {
	if len(in) != len(ranks) {
		return fmt.Errorf("%s: %d inputs, want %d", name, len(in), len(ranks))
	}
	for i, r := range ranks {
		if len(in[i]) != r {
			return fmt.Errorf("%s: input %d has shape %v, want rank %d", name, i, in[i], r)
		}
	}
	return nil
}

// embed looks up rows of a V×H table for the feed's token ids.
type embed[T Float] struct{ feed *Feed }

func (k *embed[T]) name() string { return "Embed" }
func (k *embed[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2); err != nil {
		return nil, err
	}
	return tensor.Shape{k.feed.N(), in[0][1]}, nil
}
func (k *embed[T]) forward(in [][]T, out []T) (float64, error) {
	if len(k.feed.Inputs) != k.feed.N() {
		return 0, fmt.Errorf("feed has %d inputs, want %d", len(k.feed.Inputs), k.feed.N())
	}
	return 0, kern.Embed(in[0], len(out)/k.feed.N(), k.feed.Inputs, out)
}
func (k *embed[T]) backward(in [][]T, out, dout []T, g [][]T) error {
	kern.EmbedBack(g[0], len(out)/k.feed.N(), k.feed.Inputs, dout)
	return nil
}

// rmsNorm normalises rows of x (N×H) and scales by w (H).
type rmsNorm[T Float] struct {
	c    kern.Cores
	eps  float64
	rinv []T
	part []T // per-chunk weight-gradient sums, reused
}

func (k *rmsNorm[T]) name() string { return "RMSNorm" }
func (k *rmsNorm[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 1); err != nil {
		return nil, err
	}
	if in[0][1] != in[1][0] {
		return nil, fmt.Errorf("RMSNorm: x %v and weight %v disagree", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (k *rmsNorm[T]) forward(in [][]T, out []T) (float64, error) {
	k.rinv = grow(k.rinv, len(in[0])/len(in[1]))
	kern.RMSNorm(k.c, in[0], in[1], k.eps, out, k.rinv)
	return 0, nil
}
func (k *rmsNorm[T]) backward(in [][]T, out, dout []T, g [][]T) error {
	k.part = grow(k.part, kern.RMSNormPartLen(len(in[0])/len(in[1]), len(in[1])))
	kern.RMSNormBack(k.c, in[0], in[1], k.rinv, dout, g[0], g[1], k.part)
	return nil
}

func (k *rmsNorm[T]) overwrites(int) bool { return true }

// linear is y = x·Wᵀ for x N×in and W out×in, optionally plus a LoRA path
// s·(drop(x)·Aᵀ)·Bᵀ with A r×in and B out×r (inputs 2 and 3).
type linear[T Float] struct {
	c           kern.Cores
	lora        bool
	scale       T
	feed        *Feed
	mask        string // dropout mask name in the feed, if any
	n, in, o, r int
	xm, h       []T // x after dropout; drop(x)·Aᵀ (N×r)
	// Buffers reused across runs: the masked input, dL/dh (N×r) and the
	// LoRA path's masked input gradient.
	xmBuf, dh, dxl []T
}

func (k *linear[T]) name() string {
	if k.lora {
		return "LoRALinear"
	}
	return "Linear"
}
func (k *linear[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	ranks := []int{2, 2}
	if k.lora {
		ranks = []int{2, 2, 2, 2}
	}
	if err := wantRank(k.name(), in, ranks...); err != nil {
		return nil, err
	}
	x, w := in[0], in[1]
	if x[1] != w[1] {
		return nil, fmt.Errorf("%s: x %v and weight %v disagree on the input size", k.name(), x, w)
	}
	k.n, k.in, k.o = x[0], w[1], w[0]
	if k.lora {
		a, b := in[2], in[3]
		if a[1] != w[1] || b[0] != w[0] || a[0] != b[1] {
			return nil, fmt.Errorf("%s: lora_A %v and lora_B %v do not fit weight %v", k.name(), a, b, w)
		}
		k.r = a[0]
	}
	return tensor.Shape{x[0], w[0]}, nil
}

func (k *linear[T]) dropMask() []float32 {
	if k.feed == nil || k.mask == "" || k.feed.Masks == nil {
		return nil
	}
	return k.feed.Masks[k.mask]
}

func (k *linear[T]) forward(in [][]T, out []T) (float64, error) {
	x, w := in[0], in[1]
	kern.Gemm(k.c, false, true, k.n, k.o, k.in, 1, x, k.in, w, k.in, 0, out, k.o)
	return 0, k.addLoRA(in, out)
}

// addLoRA adds the LoRA path to out = x·Wᵀ (none without LoRA).
func (k *linear[T]) addLoRA(in [][]T, out []T) error {
	if !k.lora {
		return nil
	}
	x, a, b := in[0], in[2], in[3]
	k.xm = x
	if m := k.dropMask(); m != nil {
		if len(m) != len(x) {
			return fmt.Errorf("dropout mask %s has %d entries, want %d", k.mask, len(m), len(x))
		}
		k.xmBuf = grow(k.xmBuf, len(x))
		k.xm = k.xmBuf
		for i := range x {
			k.xm[i] = x[i] * T(m[i])
		}
	}
	k.h = grow(k.h, k.n*k.r)
	kern.Gemm(k.c, false, true, k.n, k.r, k.in, 1, k.xm, k.in, a, k.in, 0, k.h, k.r)
	kern.Gemm(k.c, false, true, k.n, k.o, k.r, k.scale, k.h, k.r, b, k.r, 1, out, k.o)
	return nil
}

// backward: dx = dy·W (+ (s·dy·B·A)⊙mask), dW = dyᵀ·x, dB = s·dyᵀ·h,
// dA = (s·dy·B)ᵀ·drop(x). Every needed gradient is assigned (beta 0).
func (k *linear[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	x, w := in[0], in[1]
	if g[0] != nil {
		kern.Gemm(k.c, false, false, k.n, k.in, k.o, 1, dy, k.o, w, k.in, 0, g[0], k.in)
	}
	if g[1] != nil {
		kern.Gemm(k.c, true, false, k.o, k.in, k.n, 1, dy, k.o, x, k.in, 0, g[1], k.in)
	}
	return k.loraBack(in, dy, g)
}

// loraBack adds the LoRA path's part of dx to g[0] (which holds dy·W) and
// sets dA and dB.
func (k *linear[T]) loraBack(in [][]T, dy []T, g [][]T) error {
	x := in[0]
	if !k.lora || (g[0] == nil && g[2] == nil && g[3] == nil) {
		return nil
	}
	a, b := in[2], in[3]
	if g[3] != nil {
		kern.Gemm(k.c, true, false, k.o, k.r, k.n, k.scale, dy, k.o, k.h, k.r, 0, g[3], k.r)
	}
	k.dh = grow(k.dh, k.n*k.r)
	dh := k.dh
	kern.Gemm(k.c, false, false, k.n, k.r, k.o, k.scale, dy, k.o, b, k.r, 0, dh, k.r)
	if g[2] != nil {
		kern.Gemm(k.c, true, false, k.r, k.in, k.n, 1, dh, k.r, k.xm, k.in, 0, g[2], k.in)
	}
	if g[0] != nil {
		if m := k.dropMask(); m != nil {
			k.dxl = grow(k.dxl, len(x))
			dxl := k.dxl
			kern.Gemm(k.c, false, false, k.n, k.in, k.r, 1, dh, k.r, a, k.in, 0, dxl, k.in)
			for i := range dxl {
				g[0][i] += dxl[i] * T(m[i])
			}
		} else {
			kern.Gemm(k.c, false, false, k.n, k.in, k.r, 1, dh, k.r, a, k.in, 1, g[0], k.in)
		}
	}
	return nil
}

func (k *linear[T]) overwrites(int) bool { return true }

// rope rotates every head of x (N×heads·d); row n is position n mod T,
// or the feed's Positions[n] when it has them.
type rope[T Float] struct {
	c                      kern.Cores
	seqLen, headDim, width int
	cos, sin               []float32
	feed                   *Feed
	pcos, psin             []float32 // gathered at Positions by forward
}

// tables returns the RoPE tables and their period for the feed's rows.
func (k *rope[T]) tables(gather bool) ([]float32, []float32, int, error) {
	pos := k.feed.Positions
	if pos == nil {
		return k.cos, k.sin, k.seqLen, nil
	}
	if gather {
		k.pcos, k.psin = grow(k.pcos, len(pos)*k.headDim), grow(k.psin, len(pos)*k.headDim)
		if err := kern.RopeGather(k.pcos, k.psin, k.cos, k.sin, k.headDim, pos); err != nil {
			return nil, nil, 0, err
		}
	}
	return k.pcos, k.psin, len(pos), nil
}

func (k *rope[T]) name() string { return "RoPE" }
func (k *rope[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2); err != nil {
		return nil, err
	}
	if in[0][1]%k.headDim != 0 || in[0][0]%k.seqLen != 0 {
		return nil, fmt.Errorf("RoPE: input %v does not split into heads of %d and sequences of %d", in[0], k.headDim, k.seqLen)
	}
	k.width = in[0][1]
	return in[0].Clone(), nil
}
func (k *rope[T]) forward(in [][]T, out []T) (float64, error) {
	if pos := k.feed.Positions; pos != nil && len(pos)*k.width != len(in[0]) {
		return 0, fmt.Errorf("RoPE: %d positions for %d tokens", len(pos), len(in[0])/k.width)
	}
	cos, sin, period, err := k.tables(true)
	if err != nil {
		return 0, err
	}
	kern.RoPE(k.c, in[0], out, k.width, period, k.headDim, cos, sin, false)
	return 0, nil
}
func (k *rope[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	cos, sin, period, _ := k.tables(false)
	kern.RoPE(k.c, dy, g[0], k.width, period, k.headDim, cos, sin, true)
	return nil
}

func (k *rope[T]) overwrites(int) bool { return true }

// attention is causal grouped-query attention over q, k, v, within the
// feed's segments when it has them.
type attention[T Float] struct {
	c    kern.Cores
	d    kern.Attn
	feed *Feed
	P    []T
	// Reused across runs: stand-ins for the gradients nobody needs and
	// one T×T score-gradient block per worker.
	dq, dk, dv, ds []T
}

func (k *attention[T]) name() string { return "Attention" }
func (k *attention[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 2, 2); err != nil {
		return nil, err
	}
	d := k.d
	if in[0][0] != d.B*d.T || in[0][1] != d.NH*d.D || in[1][1] != d.NKV*d.D || !in[1].Eq(in[2]) || in[1][0] != in[0][0] {
		return nil, fmt.Errorf("Attention: q %v, k %v, v %v do not fit %d heads, %d kv heads of %d", in[0], in[1], in[2], d.NH, d.NKV, d.D)
	}
	return in[0].Clone(), nil
}
func (k *attention[T]) forward(in [][]T, out []T) (float64, error) {
	if k.d.Recompute {
		// P is per-worker scratch, not read by backward: share ds's memory.
		k.ds = grow(k.ds, max(kern.AttnProbsLen(k.c, k.d), kern.AttnScratchLen(k.c, k.d)))
		k.P = k.ds
	} else {
		k.P = grow(k.P, kern.AttnProbsLen(k.c, k.d))
	}
	// Backward reuses k.d, so both passes see the segments of this run.
	k.d.Seg = k.feed.Segments
	if k.d.Seg != nil && len(k.d.Seg) != k.d.B*k.d.T {
		return 0, fmt.Errorf("Attention: %d segment ids for %d tokens", len(k.d.Seg), k.d.B*k.d.T)
	}
	kern.Attention(k.c, k.d, in[0], in[1], in[2], out, k.P)
	return 0, nil
}
func (k *attention[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	dq, dk, dv := g[0], g[1], g[2]
	// The kernel computes all three; give it scratch for the ones not needed.
	if dq == nil {
		k.dq = grow(k.dq, len(in[0]))
		dq = k.dq
	}
	if dk == nil {
		k.dk = grow(k.dk, len(in[1]))
		dk = k.dk
	}
	if dv == nil {
		k.dv = grow(k.dv, len(in[2]))
		dv = k.dv
	}
	k.ds = grow(k.ds, kern.AttnScratchLen(k.c, k.d))
	kern.AttentionBack(k.c, k.d, in[0], in[1], in[2], k.P, dy, dq, dk, dv, k.ds)
	return nil
}

func (k *attention[T]) overwrites(int) bool { return true }

// Probs returns the attention probabilities of the last forward run,
// B·heads×T×T (without Recompute, which holds none).
func (k *attention[T]) Probs() []T { return k.P }

// swiglu is silu(g)·u. With recompute it keeps no sigmoids: forward and
// backward run the kernels a slab of swigluSlab values at a time, the
// backward recomputing the slab's sigmoids with the forward's code
// (element-wise, so the same bits), into scratch of two slabs.
type swiglu[T Float] struct {
	c         kern.Cores
	sig       []T
	recompute bool
	y         []T // recompute: the forward's output for a slab, discarded
}

// swigluSlab is the slab of recompute mode (1 MB of float32).
var swigluSlab = 1 << 18

func (k *swiglu[T]) name() string { return "SwiGLU" }
func (k *swiglu[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2, 2); err != nil {
		return nil, err
	}
	if !in[0].Eq(in[1]) {
		return nil, fmt.Errorf("SwiGLU: gate %v and up %v differ", in[0], in[1])
	}
	return in[0].Clone(), nil
}
func (k *swiglu[T]) forward(in [][]T, out []T) (float64, error) {
	if !k.recompute {
		k.sig = grow(k.sig, len(out))
		kern.SwiGLU(k.c, in[0], in[1], out, k.sig)
		return 0, nil
	}
	k.sig = grow(k.sig, min(len(out), swigluSlab))
	for lo := 0; lo < len(out); lo += swigluSlab {
		hi := min(len(out), lo+swigluSlab)
		kern.SwiGLU(k.c, in[0][lo:hi], in[1][lo:hi], out[lo:hi], k.sig[:hi-lo])
	}
	return 0, nil
}
func (k *swiglu[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	if !k.recompute {
		kern.SwiGLUBack(k.c, in[0], in[1], k.sig, dy, g[0], g[1])
		return nil
	}
	n := len(dy)
	k.sig = grow(k.sig, min(n, swigluSlab))
	k.y = grow(k.y, min(n, swigluSlab))
	part := func(d []T, lo, hi int) []T {
		if d == nil {
			return nil
		}
		return d[lo:hi]
	}
	for lo := 0; lo < n; lo += swigluSlab {
		hi := min(n, lo+swigluSlab)
		sig := k.sig[:hi-lo]
		kern.SwiGLU(k.c, in[0][lo:hi], in[1][lo:hi], k.y[:hi-lo], sig)
		kern.SwiGLUBack(k.c, in[0][lo:hi], in[1][lo:hi], sig, dy[lo:hi], part(g[0], lo, hi), part(g[1], lo, hi))
	}
	return nil
}

func (k *swiglu[T]) overwrites(int) bool { return true }

// add is the residual connection a + b.
type add[T Float] struct{ c kern.Cores }

func (k *add[T]) name() string { return "Add" }
func (k *add[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if len(in) != 2 || !in[0].Eq(in[1]) {
		return nil, fmt.Errorf("Add: shapes %v differ", in)
	}
	return in[0].Clone(), nil
}
func (k *add[T]) forward(in [][]T, out []T) (float64, error) {
	kern.Add(k.c, out, in[0], in[1])
	return 0, nil
}
func (k *add[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	for _, gi := range g {
		if gi != nil {
			copy(gi, dy)
		}
	}
	return nil
}

func (k *add[T]) overwrites(int) bool { return true }

// crossEntropy is the mean next-token loss of logits (N×V) against the
// feed's targets.
type crossEntropy[T Float] struct {
	c       kern.Cores
	feed    *Feed
	probs   []T
	rowLoss []float64
	count   int
	vocab   int
}

func (k *crossEntropy[T]) name() string { return "CrossEntropy" }
func (k *crossEntropy[T]) outShape(in []tensor.Shape) (tensor.Shape, error) {
	if err := wantRank(k.name(), in, 2); err != nil {
		return nil, err
	}
	if in[0][0] != k.feed.N() {
		return nil, fmt.Errorf("CrossEntropy: logits %v for %d positions", in[0], k.feed.N())
	}
	k.vocab = in[0][1]
	return tensor.ScalarShape(), nil
}
func (k *crossEntropy[T]) forward(in [][]T, out []T) (float64, error) {
	if len(k.feed.Targets) != k.feed.N() {
		return 0, fmt.Errorf("feed has %d targets, want %d", len(k.feed.Targets), k.feed.N())
	}
	k.probs = grow(k.probs, len(in[0]))
	if cap(k.rowLoss) < k.feed.N() {
		k.rowLoss = make([]float64, k.feed.N())
	}
	rows := k.rowLoss[:k.feed.N()]
	count, err := kern.CrossEntropyOn(k.c, in[0], k.vocab, k.feed.Targets, k.probs, rows)
	k.count = count
	if err != nil || count == 0 {
		return 0, err
	}
	var total float64
	for _, l := range rows {
		total += l
	}
	return total / float64(count), nil
}
func (k *crossEntropy[T]) backward(in [][]T, out, dy []T, g [][]T) error {
	if k.count == 0 {
		clear(g[0])
		return nil
	}
	kern.CrossEntropyBackOn(k.c, k.probs, k.vocab, k.feed.Targets, dy[0]/T(k.count), g[0])
	return nil
}

func (k *crossEntropy[T]) overwrites(int) bool { return true }

// grow returns a slice of length n, reusing buf when it is large enough.
func grow[T Float](buf []T, n int) []T {
	if cap(buf) >= n {
		return buf[:n]
	}
	return make([]T, n)
}
