package accel

import (
	"fmt"
	"math"

	"lens/engine/kern"
)

var _ Decoder = Host{}

func (Host) Copy(dst Buf, dstOff int, src Buf, srcOff, n int) error {
	if err := checkRange("copy: dst", dst, dstOff, n); err != nil {
		return err
	}
	if err := checkRange("copy: src", src, srcOff, n); err != nil {
		return err
	}
	copy(fl(dst)[dstOff:dstOff+n], fl(src)[srcOff:srcOff+n])
	return nil
}

func checkRange(what string, b Buf, off, n int) error {
	if off < 0 || n < 0 || off > b.Len() || n > b.Len()-off {
		return fmt.Errorf("%s: elements [%d, %d) of a buffer of %d", what, off, off+n, b.Len())
	}
	return nil
}

// CachedAttention runs one head per worker: scores by kern.Gemm, the
// causal softmax in float64 (as engine/generate's CPU path), then P·V.
func (Host) CachedAttention(out, p, q, k, v Buf, a CacheAttn) error {
	if err := checkCacheAttn(a); err != nil {
		return err
	}
	M, L, NH, D := a.M, a.L(), a.NH, a.D
	G, qw, kw := NH/a.NKV, NH*D, a.NKV*D
	for _, c := range []struct {
		name string
		b    Buf
		n    int
	}{{"out", out, M * qw}, {"p", p, NH * M * L}, {"q", q, M * qw}, {"k", k, L * kw}, {"v", v, L * kw}} {
		if c.b.Len() < c.n {
			return fmt.Errorf("cached attention: %s has %d elements, needs %d", c.name, c.b.Len(), c.n)
		}
	}
	if M == 0 {
		return nil
	}
	Q, K, V, O, P := fl(q), fl(k), fl(v), fl(out), fl(p)
	alpha := float32(a.Scale)
	if a.Scale == 0 {
		alpha = float32(1 / math.Sqrt(float64(D)))
	}
	cores.ParallelFor(NH, 1, func(_, lo, hi int) {
		for h := lo; h < hi; h++ {
			g := h / G
			sc := P[h*M*L : (h+1)*M*L]
			kern.Gemm(1, false, true, M, L, D, alpha, Q[h*D:], qw, K[g*D:], kw, 0, sc, L)
			for i := range M {
				row, first := sc[i*L:(i+1)*L], 0
				if a.Window > 0 {
					first = max(0, a.Pos+i-a.Window+1)
				}
				clear(row[:first]) // outside the window: probability 0
				kern.SoftmaxPrefix(row[first:], a.Pos+i+1-first)
			}
			kern.Gemm(1, false, false, M, D, L, 1, sc, L, V[g*D:], kw, 0, O[h*D:], qw)
		}
	})
	return nil
}

func checkCacheAttn(a CacheAttn) error {
	switch {
	case a.M < 0 || a.Pos < 0 || a.Window < 0:
		return fmt.Errorf("cached attention: M %d, Pos %d and Window %d must not be negative", a.M, a.Pos, a.Window)
	case a.NH <= 0 || a.NKV <= 0 || a.D <= 0:
		return fmt.Errorf("cached attention: NH %d, NKV %d and D %d must be positive", a.NH, a.NKV, a.D)
	case a.NH%a.NKV != 0:
		return fmt.Errorf("cached attention: NH %d is not a multiple of NKV %d", a.NH, a.NKV)
	}
	return nil
}
