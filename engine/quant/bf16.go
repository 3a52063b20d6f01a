package quant

import (
	"fmt"
	"math"
)

// BF16Tensor is a tensor held as bfloat16 bits: the top 16 bits of each
// float32, rounded to nearest even as torch's .to(torch.bfloat16) does.
// Values already representable in bf16 (weights stored as BF16) are kept
// exactly, so widening gives back the float32 values they were read as.
type BF16Tensor struct {
	Shape []int
	Bits  []uint16
}

// ToBF16 rounds x (row-major, of the given shape) to bfloat16.
func ToBF16(x []float32, shape []int) (*BF16Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(x) {
		return nil, fmt.Errorf("to bf16: shape %v needs %d values, have %d", shape, n, len(x))
	}
	t := &BF16Tensor{Shape: append([]int(nil), shape...), Bits: make([]uint16, n)}
	for i, v := range x {
		t.Bits[i] = bf16Bits(v)
	}
	return t, nil
}

func bf16Bits(v float32) uint16 {
	u := math.Float32bits(v)
	if v != v { // NaN: keep it a quiet NaN
		return uint16(u>>16) | 0x40
	}
	return uint16((u + 0x7FFF + (u>>16)&1) >> 16)
}

// Dims returns (out, in) of a 2-D weight.
func (t *BF16Tensor) Dims() (int, int) { return dims2(t.Shape) }

// Widen writes the float32 values to dst (len ≥ the element count).
func (t *BF16Tensor) Widen(dst []float32) { WidenBF16(dst, t.Bits) }

// WidenBF16 writes the float32 values of bfloat16 bits to dst (len ≥
// len(bits)): each is the bits in the top half of a float32, exactly.
func WidenBF16(dst []float32, bits []uint16) {
	dst = dst[:len(bits)]
	for i, b := range bits {
		dst[i] = math.Float32frombits(uint32(b) << 16)
	}
}

// Bytes is the memory the bf16 form holds.
func (t *BF16Tensor) Bytes() int { return 2 * len(t.Bits) }

// BF16FromBits holds bits (bfloat16 values, as a BF16 safetensors tensor
// stores them) as a tensor of the given shape without rounding anything.
func BF16FromBits(bits []uint16, shape []int) (*BF16Tensor, error) {
	n := 1
	for _, d := range shape {
		n *= d
	}
	if n != len(bits) {
		return nil, fmt.Errorf("bf16 tensor: shape %v needs %d values, have %d", shape, n, len(bits))
	}
	return &BF16Tensor{Shape: append([]int(nil), shape...), Bits: bits}, nil
}

// WidenRows writes rows r0..r1 of a 2-D tensor (row-major) to dst.
func (t *BF16Tensor) WidenRows(r0, r1 int, dst []float32) {
	_, in := t.Dims()
	WidenBF16(dst, t.Bits[r0*in:r1*in])
}

// WidenCols writes columns c0..c1 of every row of a 2-D tensor to dst,
// row-major (rows × (c1-c0)).
func (t *BF16Tensor) WidenCols(c0, c1 int, dst []float32) {
	out, in := t.Dims()
	w := c1 - c0
	for r := range out {
		WidenBF16(dst[r*w:(r+1)*w], t.Bits[r*in+c0:r*in+c1])
	}
}

// RoundBF16 writes src rounded to bfloat16 (as ToBF16 does) to dst, so a
// large tensor can be converted a piece at a time.
func RoundBF16(dst []uint16, src []float32) {
	dst = dst[:len(src)]
	for i, v := range src {
		dst[i] = bf16Bits(v)
	}
}
