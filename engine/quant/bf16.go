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
func (t *BF16Tensor) Widen(dst []float32) {
	for i, b := range t.Bits {
		dst[i] = math.Float32frombits(uint32(b) << 16)
	}
}

// Bytes is the memory the bf16 form holds.
func (t *BF16Tensor) Bytes() int { return 2 * len(t.Bits) }
