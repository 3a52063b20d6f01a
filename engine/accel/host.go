package accel

import (
	"fmt"
	"unsafe"

	"lens/engine/kern"
	"lens/engine/quant"
)

// Host is a Device in main memory whose kernels are engine/kern's, the
// same functions the gorgonia graph (engine/nn) runs: the reference the
// other backends' kernels are compared with, and the device on which
// Step's layout is checked against the graph on any machine.
type Host struct{}

type hostBuf struct {
	f  []float32
	i  []int32
	u8 []byte // AllocBytes: a view of a []uint16, so bf16 bits read in place
}

func (b *hostBuf) Len() int {
	switch {
	case b.i != nil:
		return len(b.i)
	case b.u8 != nil:
		return len(b.u8)
	}
	return len(b.f)
}

// fl is a float buffer's data; nil for a nil Buf (an output not wanted).
func fl(b Buf) []float32 {
	if b == nil {
		return nil
	}
	return b.(*hostBuf).f
}

func in(b Buf) []int32 { return b.(*hostBuf).i }

func u8(b Buf) []byte { return b.(*hostBuf).u8 }

// cores: the host kernels use every CPU; their results do not depend on
// how many there are.
const cores = kern.Cores(0)

func (Host) Name() string             { return "host" }
func (Host) Alloc(n int) (Buf, error) { return &hostBuf{f: make([]float32, n)}, nil }
func (Host) Free(Buf)                 {}
func (Host) Close() error             { return nil }
func (Host) Zero(b Buf) error         { clear(fl(b)); return nil }
func (Host) AllocInt(n int) (Buf, error) {
	return &hostBuf{i: make([]int32, n)}, nil
}

func (Host) AllocBytes(n int) (Buf, error) {
	w := make([]uint16, (n+1)/2+1) // +1: a non-nil view even for n = 0
	return &hostBuf{u8: BF16Bytes(w)[:n]}, nil
}

func (Host) UploadBytes(dst Buf, src []byte) error {
	b := dst.(*hostBuf)
	if b.u8 == nil {
		return fmt.Errorf("upload: %d bytes into a buffer that is not from AllocBytes", len(src))
	}
	if len(src) != len(b.u8) {
		return fmt.Errorf("upload: %d bytes into a buffer of %d", len(src), len(b.u8))
	}
	copy(b.u8, src)
	return nil
}

func (Host) Upload(dst Buf, src []float32) error {
	if len(src) != dst.Len() {
		return fmt.Errorf("upload: %d values into a buffer of %d", len(src), dst.Len())
	}
	copy(fl(dst), src)
	return nil
}

func (Host) UploadInt(dst Buf, src []int32) error {
	if len(src) != dst.Len() {
		return fmt.Errorf("upload: %d values into a buffer of %d", len(src), dst.Len())
	}
	copy(in(dst), src)
	return nil
}

func (Host) Download(dst []float32, src Buf) error {
	if len(dst) != src.Len() {
		return fmt.Errorf("download: %d values from a buffer of %d", src.Len(), len(dst))
	}
	copy(dst, fl(src))
	return nil
}

func (Host) Gemm(ta, tb bool, m, n, k int, alpha float32, a Buf, lda int, b Buf, ldb int, beta float32, c Buf, ldc int) error {
	kern.Gemm(cores, ta, tb, m, n, k, alpha, fl(a), lda, fl(b), ldb, beta, fl(c), ldc)
	return nil
}

func (Host) Embed(out, table, ids Buf, n, dim int) error {
	return kern.Embed(fl(table), dim, in(ids)[:n], fl(out)[:n*dim])
}

func (Host) EmbedBack(dtable, ids, dout Buf, n, dim int) error {
	kern.EmbedBack(fl(dtable), dim, in(ids)[:n], fl(dout)[:n*dim])
	return nil
}

// normWeight is w + off, computed as the graph's HeadRMSNorm does (w
// itself when off is 0).
func normWeight(w Buf, h int, off float32) []float32 {
	ws := fl(w)[:h]
	if off == 0 {
		return ws
	}
	wo := make([]float32, h)
	for i, v := range ws {
		wo[i] = v + off
	}
	return wo
}

func (Host) RMSNorm(out, rinv, x, w Buf, rows, h int, eps, off float32) error {
	kern.RMSNorm(cores, fl(x)[:rows*h], normWeight(w, h, off), float64(eps), fl(out), fl(rinv))
	return nil
}

func (Host) RMSNormBack(dx, dw, x, w, rinv, dy Buf, rows, h int, off float32) error {
	part := make([]float32, kern.RMSNormPartLen(rows, h))
	var dW []float32
	if dw != nil {
		dW = fl(dw)[:h]
	}
	kern.RMSNormBack(cores, fl(x)[:rows*h], normWeight(w, h, off), fl(rinv), fl(dy), fl(dx), dW, part)
	return nil
}

func (Host) RoPE(y, x, cos, sin Buf, rows, rowLen, seqLen, headDim int, back bool) error {
	kern.RoPE(cores, fl(x)[:rows*rowLen], fl(y), rowLen, seqLen, headDim, fl(cos), fl(sin), back)
	return nil
}

func (Host) Attention(out, p, q, k, v Buf, a Attn) error {
	kern.Attention(cores, a, fl(q), fl(k), fl(v), fl(out), fl(p))
	return nil
}

// AttentionBack takes its per-worker scratch from ds, which is larger:
// there are at most B·NKV workers and ds holds B·NH score blocks.
func (Host) AttentionBack(dq, dk, dv, ds, q, k, v, p, out, dout Buf, a Attn) error {
	kern.AttentionBack(cores, a, fl(q), fl(k), fl(v), fl(p), fl(dout), fl(dq), fl(dk), fl(dv), fl(ds))
	return nil
}

func (Host) SwiGLU(y, sig, g, u Buf, n int) error {
	kern.SwiGLU(cores, fl(g)[:n], fl(u), fl(y), fl(sig))
	return nil
}

func (Host) SwiGLUBack(dg, du, g, u, sig, dy Buf, n int) error {
	kern.SwiGLUBack(cores, fl(g)[:n], fl(u), fl(sig), fl(dy), fl(dg), fl(du))
	return nil
}

func (Host) GeGLU(y, th, g, u Buf, n int) error {
	kern.GeGLU(cores, fl(g)[:n], fl(u), fl(y), fl(th))
	return nil
}

func (Host) GeGLUBack(dg, du, g, u, th, dy Buf, n int) error {
	kern.GeGLUBack(cores, fl(g)[:n], fl(u), fl(th), fl(dy), fl(dg), fl(du))
	return nil
}

func (Host) Scale(dst, x Buf, n int, s float32) error {
	kern.Scale(cores, fl(x)[:n], fl(dst), s)
	return nil
}

func (Host) Add(dst, a, b Buf, n int) error {
	kern.Add(cores, fl(dst)[:n], fl(a), fl(b))
	return nil
}

func (Host) Mul(dst, a, m Buf, n int, acc bool) error {
	kern.Mul(cores, fl(dst)[:n], fl(a), fl(m), acc)
	return nil
}

// CrossEntropy computes the softmax in dlogits and scales it there.
func (Host) CrossEntropy(dlogits, rowLoss, logits, targets Buf, rows, vocab int, scale float32) error {
	tg := in(targets)[:rows]
	loss := make([]float64, rows)
	if _, err := kern.CrossEntropy(fl(logits), vocab, tg, fl(dlogits), loss); err != nil {
		return err
	}
	kern.CrossEntropyBack(fl(dlogits), vocab, tg, scale, fl(dlogits))
	rl := fl(rowLoss)
	for r, l := range loss {
		rl[r] = float32(l)
	}
	return nil
}

func (Host) Sum(dst, x Buf, n int) error {
	var s float64
	for _, v := range fl(x)[:n] {
		s += float64(v)
	}
	fl(dst)[0] = float32(s)
	return nil
}

func (Host) AdamW(p, g, m, v Buf, n int, h AdamParams) error {
	kern.AdamW(fl(p)[:n], fl(g), fl(m), fl(v), h)
	return nil
}

// DequantNF4 is quant.DequantNF4, the CPU graph's own dequantization.
func (Host) DequantNF4(out, codes, scales Buf, n int) error {
	nb := (n + quant.BlockSize - 1) / quant.BlockSize
	c, sc, o := u8(codes), fl(scales), fl(out)
	if len(c) < (n+1)/2 || len(sc) < nb || len(o) < n {
		return fmt.Errorf("dequant nf4 of %d values: %d code bytes, %d scales, %d outputs", n, len(c), len(sc), len(o))
	}
	quant.DequantNF4(o[:n], c, sc[:nb])
	return nil
}

// WidenBF16 is quant.WidenBF16 over the buffer's bytes read as uint16s.
func (Host) WidenBF16(out, bits Buf, n int) error {
	b, o := u8(bits), fl(out)
	if len(b) < 2*n || len(o) < n {
		return fmt.Errorf("widen bf16 of %d values: %d bytes, %d outputs", n, len(b), len(o))
	}
	if n == 0 {
		return nil
	}
	quant.WidenBF16(o, unsafe.Slice((*uint16)(unsafe.Pointer(unsafe.SliceData(b))), n))
	return nil
}
