// Package quant holds base weights in compact forms that widen to float32
// on demand: 4-bit NormalFloat (NF4) in bitsandbytes' layout, and bfloat16.
//
// NF4 follows bitsandbytes' quantize_4bit/dequantize_4bit: the tensor is
// read flat in blocks of 64 values; each block keeps its absolute maximum
// (absmax) and each value x becomes the index of the NF4 code book entry
// nearest to x·(1/absmax), decided by the midpoints of the kernel's
// decision tree (ties go to the lower entry, as its strict `>` tests do).
// Two codes share a byte, the first value in the high nibble. Dequantizing
// is NF4[code]·absmax in float32. With double quantization
// (compress_statistics) the absmax vector has its mean subtracted and is
// itself quantized to 8 bits in blocks of 256 with bitsandbytes' signed
// dynamic code map; dequantizing restores code8[q]·absmax2 + mean.
//
// The widening types implement nn.Packed's method set (Dims, Widen), so a
// graph can use them as frozen linear weights without holding float32
// copies: each use widens into a scratch buffer.
package quant
