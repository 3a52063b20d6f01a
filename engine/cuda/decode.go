//go:build lenscuda

package cuda

import (
	"math"

	"lens/engine/accel"
)

var _ accel.Decoder = (*Device)(nil)

// Copy launches copy_f32 on the two ranges, their offsets added to the
// pointers here.
func (d *Device) Copy(dst accel.Buf, dstOff int, src accel.Buf, srcOff, n int) error {
	c := d.call(kCopy)
	c.dims("dstOff", dstOff, "srcOff", srcOff, "n", n)
	if c.err != nil {
		return c.err
	}
	if n == 0 {
		return nil
	}
	D, S := c.f("dst", dst, c.size(1, dstOff+n)), c.f("src", src, c.size(1, srcOff+n))
	return c.launch(blocks(n), 1, threads, D+dptr(4*dstOff), S+dptr(4*srcOff), n)
}

// CachedAttention is Attention's three launches with the keys and values
// read from the cache: S = Q·Kᵀ·scale per head into p (M×L each), the
// softmax of each row over the positions its query sees (within the
// window), and out = P·V.
// Query head h reads cache head h/G through sgemm_batched's grouping.
func (d *Device) CachedAttention(out, p, q, k, v accel.Buf, a accel.CacheAttn) error {
	c := &call{d: d, k: kSgemmBatched, name: "cached_attention"}
	c.dims("M", a.M, "Pos", a.Pos, "NH", a.NH, "NKV", a.NKV, "D", a.D, "Window", a.Window)
	if c.err != nil {
		return c.err
	}
	switch {
	case a.NH <= 0 || a.NKV <= 0 || a.D <= 0:
		c.fail("NH %d, NKV %d and D %d must be positive", a.NH, a.NKV, a.D)
	case a.NH%a.NKV != 0:
		c.fail("NH %d is not a multiple of NKV %d", a.NH, a.NKV)
	case a.NH > maxGridY:
		c.fail("NH = %d products exceed the grid's %d", a.NH, maxGridY)
	}
	if c.err != nil || a.M == 0 {
		return c.err
	}
	M, L, D, NH := a.M, a.L(), a.D, a.NH
	G, qw, kw := NH/a.NKV, NH*D, a.NKV*D
	if !c.grid((L+tile-1)/tile, (M+tile-1)/tile) {
		return c.err
	}
	qn, kn := c.size(M, qw), c.size(L, kw)
	O, P := c.f("out", out, qn), c.f("p", p, c.size(NH, M, L))
	Q, K, V := c.f("q", q, qn), c.f("k", k, kn), c.f("v", v, kn)
	if c.err != nil {
		return c.err
	}
	scale := float32(a.Scale)
	if a.Scale == 0 {
		scale = float32(1 / math.Sqrt(float64(D)))
	}
	ps := operand{P, L, 0, M * L, 1}
	return d.do("cached_attention", func() error {
		if err := d.batched(false, true, M, L, D, scale, operand{Q, qw, 0, D, 1}, operand{K, kw, 0, D, G}, 0, ps, NH, NH); err != nil {
			return err
		}
		if err := d.run(kSoftmaxCached, rowBlocks(NH*M), 1, threads, P, NH*M, M, L, a.Pos, a.Window); err != nil {
			return err
		}
		return d.batched(false, false, M, D, L, 1, ps, operand{V, kw, 0, D, G}, 0, operand{O, qw, 0, D, 1}, NH, NH)
	})
}
