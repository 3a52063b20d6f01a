package quant

import (
	"fmt"
	"math"
	"sort"
)

// NF4 is the 4-bit NormalFloat code book, exactly as bitsandbytes publishes
// it (functional.get_4bit_type("nf4")): quantiles of N(0,1) scaled to
// [-1, 1], with an exact zero.
var NF4 = [16]float32{
	-1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453,
	-0.28444138169288635, -0.18477343022823334, -0.09105003625154495, 0.0,
	0.07958029955625534, 0.16093020141124725, 0.24611230194568634, 0.33791524171829224,
	0.44070982933044434, 0.5626170039176941, 0.7229568362236023, 1.0,
}

// nf4Mid are the decision thresholds of bitsandbytes' dQuantizeNF4 (float32
// literals of its CUDA kernel): value i+1 is chosen over i when x > nf4Mid[i].
var nf4Mid = [15]float32{
	-0.8480964004993439, -0.6106329262256622, -0.4599952697753906, -0.33967943489551544,
	-0.23460740596055984, -0.13791173323988914, -0.045525018125772476, 0.03979014977812767,
	0.1202552504837513, 0.2035212516784668, 0.2920137718319893, 0.3893125355243683,
	0.5016634166240692, 0.6427869200706482, 0.8614784181118011,
}

// BlockSize is the number of values sharing one NF4 scale (bitsandbytes'
// default for QLoRA).
const BlockSize = 64

// NestedBlockSize is the block size of the double-quantized scales.
const NestedBlockSize = 256

// nf4Code returns the code of a normalised value. NaN (a block of zeros:
// 0·(1/0)) compares false everywhere and gets code 0, as in the kernel;
// it dequantizes to 0 because that block's absmax is 0.
func nf4Code(x float32) byte {
	var c byte
	for _, t := range nf4Mid {
		if x > t {
			c++
		} else {
			break
		}
	}
	return c
}

// NF4Tensor is a tensor quantized to NF4. Exactly one of Absmax and
// Nested holds the block scales.
type NF4Tensor struct {
	Shape  []int
	Codes  []byte    // (n+1)/2 bytes, first value of each pair in the high nibble
	Absmax []float32 // one per block of BlockSize, when not nested
	Nested *Blockwise8
}

// Blockwise8 is bitsandbytes' 8-bit blockwise quantization of a float32
// vector with a code map (the nested state of a double-quantized NF4
// tensor): value i is Code[Q[i]]·Absmax[i/BlockSize] + Offset.
type Blockwise8 struct {
	Q         []byte
	Absmax    []float32
	Code      [256]float32
	BlockSize int
	Offset    float32
}

// Len is the number of values the tensor holds.
func (t *NF4Tensor) Len() int {
	n := 1
	for _, d := range t.Shape {
		n *= d
	}
	return n
}

// QuantizeNF4 quantizes x (row-major, of the given shape) to NF4 in blocks
// of BlockSize; double also quantizes the block scales (bitsandbytes'
// compress_statistics).
func QuantizeNF4(x []float32, shape []int, double bool) (*NF4Tensor, error) {
	n := 1
	for _, d := range shape {
		if d < 0 {
			return nil, fmt.Errorf("quantize nf4: negative dimension in shape %v", shape)
		}
		n *= d
	}
	if n != len(x) {
		return nil, fmt.Errorf("quantize nf4: shape %v needs %d values, have %d", shape, n, len(x))
	}
	blocks := (n + BlockSize - 1) / BlockSize
	t := &NF4Tensor{Shape: append([]int(nil), shape...), Codes: make([]byte, (n+1)/2), Absmax: make([]float32, blocks)}
	for b := range blocks {
		lo, hi := b*BlockSize, min((b+1)*BlockSize, n)
		var m float32
		for _, v := range x[lo:hi] {
			m = max(m, float32(math.Abs(float64(v))))
		}
		t.Absmax[b] = m
		inv := 1 / m // multiply by the reciprocal, as the kernel does
		for i := lo; i < hi; i++ {
			c := nf4Code(x[i] * inv)
			if i%2 == 0 {
				t.Codes[i/2] = c << 4
			} else {
				t.Codes[i/2] |= c
			}
		}
		if hi%2 == 1 { // odd tail: the kernel quantizes a padding zero
			t.Codes[hi/2] |= nf4Code(0 * inv)
		}
	}
	if double {
		t.Nested = quantizeNested(t.Absmax)
		t.Absmax = nil
	}
	return t, nil
}

// Scales returns the block scales, dequantizing nested ones.
func (t *NF4Tensor) Scales() []float32 {
	if t.Nested == nil {
		return t.Absmax
	}
	return t.Nested.Dequantize()
}

// Dequantize writes the tensor's values to dst (len ≥ Len).
func (t *NF4Tensor) Dequantize(dst []float32) { DequantNF4(dst[:t.Len()], t.Codes, t.Scales()) }

// DequantNF4 writes the first len(dst) values of an NF4 tensor held as
// codes (two a byte, the first in the high nibble) and float32 block scales
// (one per BlockSize values: Scales) to dst: NF4[code]·scale, one float32
// product per value. It is the whole dequantization, shared with the
// device step's host reference (engine/accel), whose GPU kernel computes
// the same product.
func DequantNF4(dst []float32, codes []byte, scales []float32) {
	for b, s := range scales {
		lo, hi := b*BlockSize, min((b+1)*BlockSize, len(dst))
		for i := lo; i < hi; i++ {
			c := codes[i/2]
			if i%2 == 0 {
				c >>= 4
			}
			dst[i] = NF4[c&0xF] * s
		}
	}
}

// Dims returns (out, in) of a 2-D weight.
func (t *NF4Tensor) Dims() (int, int) { return dims2(t.Shape) }

// Widen dequantizes into dst, as nn.Packed asks.
func (t *NF4Tensor) Widen(dst []float32) { t.Dequantize(dst) }

// WidenRows dequantizes rows r0..r1 of a 2-D tensor (row-major) into dst,
// the same values Dequantize gives them, without the whole tensor's
// scales (nn.PackedTable).
func (t *NF4Tensor) WidenRows(r0, r1 int, dst []float32) {
	_, in := t.Dims()
	t.widenRange(r0*in, r1*in, dst)
}

// WidenCols dequantizes columns c0..c1 of every row of a 2-D tensor into
// dst, row-major (rows × (c1-c0)). Slabs aligned to BlockSize (when the
// row length is a multiple of it) touch each block once.
func (t *NF4Tensor) WidenCols(c0, c1 int, dst []float32) {
	out, in := t.Dims()
	w := c1 - c0
	for r := range out {
		t.widenRange(r*in+c0, r*in+c1, dst[r*w:(r+1)*w])
	}
}

// widenRange writes values lo..hi (row-major indices) to dst, each as
// DequantNF4 computes it: the code book entry times its block's scale.
func (t *NF4Tensor) widenRange(lo, hi int, dst []float32) {
	dst = dst[:hi-lo]
	for b0 := lo; b0 < hi; {
		b := b0 / BlockSize
		b1 := min(hi, (b+1)*BlockSize)
		var s float32
		if t.Nested == nil {
			s = t.Absmax[b]
		} else {
			s = t.Nested.value(b)
		}
		for i := b0; i < b1; i++ {
			c := t.Codes[i/2]
			if i%2 == 0 {
				c >>= 4
			}
			dst[i-lo] = NF4[c&0xF] * s
		}
		b0 = b1
	}
}

// Bytes is the memory the quantized form holds.
func (t *NF4Tensor) Bytes() int {
	n := len(t.Codes) + 4*len(t.Absmax)
	if t.Nested != nil {
		n += len(t.Nested.Q) + 4*len(t.Nested.Absmax) + 4*256 + 4
	}
	return n
}

func dims2(s []int) (int, int) {
	if len(s) != 2 {
		return 0, 0
	}
	return s[0], s[1]
}

// DynamicMap is bitsandbytes' signed 8-bit dynamic code map
// (create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8)):
// for exponent e = 0..6, the 2^e midpoints of linspace(0.1, 1, 2^e+1)
// times 10^(e-6), with both signs, plus 0 and 1, sorted. Values are
// computed in float32 as torch computes them.
func DynamicMap() [256]float32 {
	var data []float32
	for i := range 7 {
		k := 1<<i + 1
		b := linspace32(0.1, 1, k)
		scale := math.Pow(10, float64(i-6))
		for j := 0; j+1 < k; j++ {
			mean := (b[j] + b[j+1]) / 2
			// torch multiplies a float32 tensor by a Python float in float32.
			v := mean * float32(scale)
			data = append(data, v, -v)
		}
	}
	data = append(data, 0, 1)
	sort.Slice(data, func(i, j int) bool { return data[i] < data[j] })
	var out [256]float32
	copy(out[:], data)
	return out
}

// linspace32 is torch.linspace in float32 as torch's CPU kernel computes
// it (checked against torch 1.13's AVX2 build by TestMatchesTorch): the
// first half counts up from start, the second down from end; values are
// made in vectors of 8 whose first lane is a fused multiply-add and whose
// other lanes add j·step to it, two vectors at a time, and a scalar tail
// of fused multiply-adds. Only the map's last ulps depend on this; the map
// is part of the quantized state, so dequantizing never recomputes it.
func linspace32(start, end float32, steps int) []float32 {
	out := make([]float32, steps)
	if steps == 1 {
		out[0] = start
		return out
	}
	step := (end - start) / float32(steps-1)
	half := steps / 2
	fma := func(a, b, c float32) float32 { return float32(math.FMA(float64(a), float64(b), float64(c))) }
	at := func(i int) float32 {
		if i < half {
			return fma(step, float32(i), start)
		}
		return fma(-step, float32(steps-i-1), end)
	}
	const vec = 8
	i := 0
	for ; i+2*vec <= steps; i += vec {
		for v := i; v < i+2*vec; v += vec {
			base := at(v)
			out[v] = base
			for j := 1; j < vec; j++ {
				out[v+j] = base + float32(j)*step
			}
		}
		i += vec
	}
	for ; i < steps; i++ {
		out[i] = at(i)
	}
	return out
}

// quantizeNested is bitsandbytes' quantize_blockwise(absmax - mean,
// blocksize=256) with the dynamic map: per block, each value times
// 1/absmax goes to the nearest code entry (ties to the lower index).
func quantizeNested(v []float32) *Blockwise8 {
	// The mean is summed in float64 and rounded once; torch's float32 mean
	// (bitsandbytes' offset) may differ from it by an ulp. The offset is
	// stored, so dequantizing does not depend on how it was computed.
	mean := float32(0)
	if len(v) > 0 {
		var s64 float64
		for _, x := range v {
			s64 += float64(x)
		}
		mean = float32(s64 / float64(len(v)))
	}
	nb := &Blockwise8{Code: DynamicMap(), BlockSize: NestedBlockSize, Offset: mean, Q: make([]byte, len(v))}
	blocks := (len(v) + NestedBlockSize - 1) / NestedBlockSize
	nb.Absmax = make([]float32, blocks)
	for b := range blocks {
		lo, hi := b*NestedBlockSize, min((b+1)*NestedBlockSize, len(v))
		var m float32
		for _, x := range v[lo:hi] {
			m = max(m, float32(math.Abs(float64(x-mean))))
		}
		nb.Absmax[b] = m
		inv := 1 / m
		for i := lo; i < hi; i++ {
			nb.Q[i] = nearest(&nb.Code, (v[i]-mean)*inv)
		}
	}
	return nb
}

// nearest returns the index of the code entry closest to x (the lower on a
// tie); code is sorted.
func nearest(code *[256]float32, x float32) byte {
	j := sort.Search(256, func(i int) bool { return code[i] >= x })
	switch {
	case j == 0:
		return 0
	case j == 256:
		return 255
	}
	if x-code[j-1] <= code[j]-x {
		return byte(j - 1)
	}
	return byte(j)
}

// Dequantize returns Code[Q[i]]·Absmax[block] + Offset for every value.
func (b *Blockwise8) Dequantize() []float32 {
	out := make([]float32, len(b.Q))
	for i := range b.Q {
		out[i] = b.value(i)
	}
	return out
}

// value is value i, one expression for Dequantize and NF4's slabs so both
// round alike.
func (b *Blockwise8) value(i int) float32 {
	return b.Code[b.Q[i]]*b.Absmax[i/b.BlockSize] + b.Offset
}
