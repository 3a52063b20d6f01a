// Package accel runs the training step, LoRA or full fine-tuning, on an
// accelerator. A Device is a small set of kernels over device buffers
// (matrix product, embedding and its gradient, RMSNorm, rotary embeddings,
// causal attention with sliding windows and packed rows, SwiGLU and GeGLU,
// cross-entropy, AdamW, the widening of packed base weights and a few
// elementwise ones); Step lays the forward and backward pass of every model
// family out over those kernels, keeping the weights (packed ones packed:
// QLoRA), the activations and the optimizer state in device memory.
//
// Host is a Device whose kernels are engine/kern's, the same functions the
// gorgonia graph (engine/nn) runs. It is the reference the CUDA kernels are
// tested against, and it lets Step's layout be checked against the graph
// on any machine. Backends register by name
// (Register); engine/cuda registers "cuda" when built with -tags lenscuda.
package accel

import (
	"fmt"
	"sort"
	"sync"
	"unsafe"

	"lens/engine/kern"
)

// Buf is a buffer in device memory: float32 elements unless it came from
// AllocInt (int32) or AllocBytes (bytes: packed weights).
type Buf interface{ Len() int }

// Attn is the shape of a causal grouped-query attention: q is B·T×NH·D,
// k and v are B·T×NKV·D.
type Attn = kern.Attn

// Kernels are the operations Step needs. Matrices are row-major; ld* are
// leading dimensions (row strides). Kernels may run asynchronously: a
// launch error can surface at the next Download.
type Kernels interface {
	// Gemm sets c = alpha·op(a)·op(b) + beta·c, op(a) m×k, op(b) k×n.
	Gemm(transA, transB bool, m, n, k int, alpha float32, a Buf, lda int, b Buf, ldb int, beta float32, c Buf, ldc int) error
	// Embed copies rows ids[i] of table (·×dim) into out (n×dim).
	Embed(out, table, ids Buf, n, dim int) error
	// RMSNorm sets out = x·rsqrt(mean(x²)+eps)·(w+off) per row and keeps
	// the reciprocal root per row in rinv; off is model.Config.NormOffset
	// (1 for Gemma's (1 + w) norms, else 0).
	RMSNorm(out, rinv, x, w Buf, rows, h int, eps, off float32) error
	// RMSNormBack sets dx from dy (through the weight w+off) and, when dw
	// is not nil, the weight's gradient dw = Σ_rows dy⊙x·rinv (assigned,
	// not added; the offset does not change it).
	RMSNormBack(dx, dw, x, w, rinv, dy Buf, rows, h int, off float32) error
	// EmbedBack adds row r of dout into row ids[r] of dtable (·×dim) for
	// every r < n: the embedding table's gradient.
	EmbedBack(dtable, ids, dout Buf, n, dim int) error
	// RoPE rotates every head of each row (HF rotate-half); row n is at
	// position n mod seqLen; back applies the transpose.
	RoPE(y, x, cos, sin Buf, rows, rowLen, seqLen, headDim int, back bool) error
	// Attention sets out = softmax(q·kᵀ·scale + mask)·v and keeps the
	// probabilities in p (B·NH×T×T): scale is a.Scale (0: 1/√D), the mask
	// causal, cut to a.Window keys when it is positive and to each
	// token's segment when a.Seg is set (packed rows).
	Attention(out, p, q, k, v Buf, a Attn) error
	// AttentionBack sets dq, dk, dv; ds is scratch of p's size.
	AttentionBack(dq, dk, dv, ds, q, k, v, p, out, dout Buf, a Attn) error
	// SwiGLU sets y = silu(g)·u and keeps σ(g) in sig.
	SwiGLU(y, sig, g, u Buf, n int) error
	// SwiGLUBack sets dg and du.
	SwiGLUBack(dg, du, g, u, sig, dy Buf, n int) error
	// GeGLU sets y = gelu_tanh(g)·u (PyTorch's gelu_pytorch_tanh, Gemma)
	// and keeps the tanh in th.
	GeGLU(y, th, g, u Buf, n int) error
	// GeGLUBack sets dg and du.
	GeGLUBack(dg, du, g, u, th, dy Buf, n int) error
	// Scale sets dst = s·x (dst may be x): Gemma's embedding times
	// √hidden and its gradient.
	Scale(dst, x Buf, n int, s float32) error
	// Add sets dst = a + b.
	Add(dst, a, b Buf, n int) error
	// Mul sets dst = a⊙m when acc is false, dst += a⊙m when it is true.
	Mul(dst, a, m Buf, n int, acc bool) error
	// CrossEntropy computes the softmax cross-entropy of every row of
	// logits (rows×vocab) against targets (negative: ignored), writes
	// dlogits = (softmax − onehot)·scale for counted rows (0 elsewhere)
	// and each row's loss into rowLoss.
	CrossEntropy(dlogits, rowLoss, logits, targets Buf, rows, vocab int, scale float32) error
	// Sum sets dst[0] = Σ x.
	Sum(dst, x Buf, n int) error
	// AdamW updates p, m and v from g (scaled by gscale): m, v moments;
	// p = p·decay − step·m/(√v·sq + eps).
	AdamW(p, g, m, v Buf, n int, h AdamParams) error
	// DequantNF4 sets out[i] = quant.NF4[code i]·scales[i/quant.BlockSize]
	// for i < n, as quant.DequantNF4 does: codes is a byte buffer
	// (AllocBytes) of (n+1)/2 bytes, two codes a byte with the first value
	// in the high nibble, and scales the float32 block scales
	// (quant.NF4Tensor.Scales, double-quantized ones already widened).
	DequantNF4(out, codes, scales Buf, n int) error
	// WidenBF16 sets out[i] to bfloat16 value i < n of bits, a byte buffer
	// holding 2 bytes a value in the host's byte order (BF16Bytes).
	WidenBF16(out, bits Buf, n int) error
}

// AdamParams are one AdamW update's scalars for one tensor.
type AdamParams = kern.AdamParams

// Device is an accelerator: memory plus Kernels.
type Device interface {
	Kernels
	// Name describes the device ("cuda:0 NVIDIA H200", "host").
	Name() string
	Alloc(n int) (Buf, error) // zeroed float32
	AllocInt(n int) (Buf, error)
	// AllocBytes allocates n zeroed bytes (Len n), aligned for 2-byte
	// reads: packed base weights (NF4 codes, bf16 bits) that DequantNF4
	// and WidenBF16 widen.
	AllocBytes(n int) (Buf, error)
	Upload(dst Buf, src []float32) error
	UploadInt(dst Buf, src []int32) error
	UploadBytes(dst Buf, src []byte) error
	// Download copies src into dst and waits for the kernels before it.
	Download(dst []float32, src Buf) error
	Zero(b Buf) error
	Free(b Buf)
	Close() error
}

// Backend opens devices of one kind.
type Backend interface {
	// Available reports whether a device can be opened here, and if not why.
	Available() (bool, string)
	Open() (Device, error)
}

var (
	mu       sync.Mutex
	backends = map[string]Backend{}
)

// Register makes a backend available under name; a second registration of
// a name panics.
func Register(name string, b Backend) {
	mu.Lock()
	defer mu.Unlock()
	if _, dup := backends[name]; dup {
		panic("accel: backend " + name + " registered twice")
	}
	backends[name] = b
}

// Lookup returns the backend registered under name.
func Lookup(name string) (Backend, bool) {
	mu.Lock()
	defer mu.Unlock()
	b, ok := backends[name]
	return b, ok
}

// Names lists the registered backends.
func Names() []string {
	mu.Lock()
	defer mu.Unlock()
	var out []string
	for n := range backends {
		out = append(out, n)
	}
	sort.Strings(out)
	return out
}

// Open opens a device of the named backend.
func Open(name string) (Device, error) {
	b, ok := Lookup(name)
	if !ok {
		return nil, fmt.Errorf("accel: no backend %q in this build", name)
	}
	if ok, why := b.Available(); !ok {
		return nil, fmt.Errorf("accel: %s: %s", name, why)
	}
	return b.Open()
}

// BF16Bytes is bits as the bytes WidenBF16 reads, without a copy: the
// values in the host's byte order, which is the device's (little-endian on
// every host a CUDA GPU runs on).
func BF16Bytes(bits []uint16) []byte {
	if len(bits) == 0 {
		return nil
	}
	return unsafe.Slice((*byte)(unsafe.Pointer(unsafe.SliceData(bits))), 2*len(bits))
}
