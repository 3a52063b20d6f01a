// Widening of packed base weights (base_quant, engine/quant) into float32,
// included at the end of kernels.cu. Each kernel gives engine/quant's
// values bit for bit: one float32 product per NF4 value, a bit move per
// bf16 value.

// nf4_code is quant.NF4, bitsandbytes' code book: the same decimal
// literals, so the same float32 values.
__constant__ float nf4_code[16] = {
    -1.0f, -0.6961928009986877f, -0.5250730514526367f, -0.39491748809814453f,
    -0.28444138169288635f, -0.18477343022823334f, -0.09105003625154495f, 0.0f,
    0.07958029955625534f, 0.16093020141124725f, 0.24611230194568634f, 0.33791524171829224f,
    0.44070982933044434f, 0.5626170039176941f, 0.7229568362236023f, 1.0f,
};

// dequant_nf4: out[i] = nf4_code[code i]·scales[i/64] (quant.BlockSize),
// two codes a byte with the first value in the high nibble.
extern "C" __global__ void dequant_nf4(float* out, const unsigned char* codes, const float* scales, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    unsigned c = codes[i >> 1];
    c = (i & 1) ? c & 15u : c >> 4;
    out[i] = __fmul_rn(nf4_code[c], scales[i >> 6]);  // never contracted into an FMA
}

// widen_bf16: a bfloat16 value is the top half of its float32.
extern "C" __global__ void widen_bf16(float* out, const unsigned short* bits, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) out[i] = __uint_as_float((unsigned)bits[i] << 16);
}
