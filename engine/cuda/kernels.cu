// Kernels of the CUDA backend (engine/cuda), one per accel.Kernels method.
// `go generate` compiles this file to kernels.ptx with nvcc (-ptx, virtual
// architecture compute_70), which the Go side embeds and the driver JITs
// for whatever GPU it finds. Integer arguments are long long and floats
// are float, matching how device.go packs launch arguments.
//
// Each kernel mirrors its reference in engine/accel/host.go; the CUDA
// tests compare them on random inputs.

#define WARP 32

__device__ __forceinline__ float warp_sum(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v += __shfl_xor_sync(0xffffffff, v, o);
    return v;
}

__device__ __forceinline__ float warp_max(float v) {
    for (int o = WARP / 2; o > 0; o >>= 1) v = fmaxf(v, __shfl_xor_sync(0xffffffff, v, o));
    return v;
}

// block_reduce sums (or maxes) v over a block whose size is a multiple of
// 32 and returns the result to every thread.
__device__ float block_reduce(float v, bool is_max) {
    __shared__ float sh[32];
    int w = threadIdx.x / WARP, l = threadIdx.x % WARP;
    v = is_max ? warp_max(v) : warp_sum(v);
    __syncthreads();  // sh may still be read by a previous call
    if (l == 0) sh[w] = v;
    __syncthreads();
    int nw = blockDim.x / WARP;
    if (w == 0) {
        float x = l < nw ? sh[l] : (is_max ? -INFINITY : 0.f);
        x = is_max ? warp_max(x) : warp_sum(x);
        if (l == 0) sh[0] = x;
    }
    __syncthreads();
    return sh[0];
}

// ---- matrix product: C = alpha·op(A)·op(B) + beta·C, row-major ----
// 64×64 tiles of C per block of 256 threads, each thread 4×4 entries
// strided by 16 so that shared-memory reads do not conflict. The next
// BK-slice of A and B is loaded into registers while the current one is
// multiplied, so global-memory latency overlaps the arithmetic.
//
// Split K: block z takes k in [z·kc, min(K, (z+1)·kc)). The products in a
// LoRA step are small (rank-8 sides, weight gradients summed over the
// tokens), so a grid of 64×64 tiles alone leaves most of the GPU idle while
// each block walks a long K. With W non-null each block stores its raw
// partial product in W (splits × M×N, row stride N) and sgemm_reduce adds
// the partials in order, so the result does not depend on timing.

#define BM 64
#define BN 64
#define BK 16

__device__ __forceinline__ void gemm_load(float ra[4], float rb[4], long long ta, long long tb, long long M, long long N,
                                          long long kend, const float* __restrict__ A, long long lda,
                                          const float* __restrict__ B, long long ldb, long long row0, long long col0,
                                          long long k0) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        int e = threadIdx.x + 256 * q;
        int i, kk;
        if (ta) { i = e % BM; kk = e / BM; } else { i = e / BK; kk = e % BK; }
        long long r = row0 + i, c = k0 + kk;
        ra[q] = r < M && c < kend ? (ta ? A[c * lda + r] : A[r * lda + c]) : 0.f;
        int j;
        if (tb) { kk = e % BK; j = e / BK; } else { kk = e / BN; j = e % BN; }
        r = k0 + kk;
        c = col0 + j;
        rb[q] = r < kend && c < N ? (tb ? B[c * ldb + r] : B[r * ldb + c]) : 0.f;
    }
}

__device__ __forceinline__ void gemm_stage(float (*As)[BM + 4], float (*Bs)[BN + 4], const float ra[4],
                                           const float rb[4], long long ta, long long tb) {
#pragma unroll
    for (int q = 0; q < 4; q++) {
        int e = threadIdx.x + 256 * q;
        if (ta) As[e / BM][e % BM] = ra[q]; else As[e % BK][e / BK] = ra[q];
        if (tb) Bs[e % BK][e / BK] = rb[q]; else Bs[e / BN][e % BN] = rb[q];
    }
}

// gemm_block computes the 64×64 tile of C at (row0, col0) over k in
// [kbeg, kend): into C (alpha, beta) or, with W non-null, raw into W.
__device__ __forceinline__ void gemm_block(long long ta, long long tb, long long M, long long N, float alpha,
                                           const float* __restrict__ A, long long lda, const float* __restrict__ B,
                                           long long ldb, float beta, float* __restrict__ C, long long ldc,
                                           long long row0, long long col0, long long kbeg, long long kend, float* W) {
    __shared__ float As[BK][BM + 4];
    __shared__ float Bs[BK][BN + 4];
    int tx = threadIdx.x % 16, ty = threadIdx.x / 16;
    float acc[4][4];
    for (int i = 0; i < 4; i++)
        for (int j = 0; j < 4; j++) acc[i][j] = 0.f;
    float ra[4], rb[4];
    gemm_load(ra, rb, ta, tb, M, N, kend, A, lda, B, ldb, row0, col0, kbeg);
    for (long long k0 = kbeg; k0 < kend; k0 += BK) {
        gemm_stage(As, Bs, ra, rb, ta, tb);
        __syncthreads();
        if (k0 + BK < kend) gemm_load(ra, rb, ta, tb, M, N, kend, A, lda, B, ldb, row0, col0, k0 + BK);
#pragma unroll
        for (int kk = 0; kk < BK; kk++) {
            float a[4], b[4];
#pragma unroll
            for (int i = 0; i < 4; i++) a[i] = As[kk][ty + 16 * i];
#pragma unroll
            for (int j = 0; j < 4; j++) b[j] = Bs[kk][tx + 16 * j];
#pragma unroll
            for (int i = 0; i < 4; i++)
#pragma unroll
                for (int j = 0; j < 4; j++) acc[i][j] = fmaf(a[i], b[j], acc[i][j]);
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; i++) {
        long long r = row0 + ty + 16 * i;
        if (r >= M) continue;
        for (int j = 0; j < 4; j++) {
            long long c = col0 + tx + 16 * j;
            if (c >= N) continue;
            if (W) {
                W[r * N + c] = acc[i][j];
                continue;
            }
            float v = alpha * acc[i][j];
            if (beta != 0.f) v += beta * C[r * ldc + c];  // beta 0 never reads C
            C[r * ldc + c] = v;
        }
    }
}

extern "C" __global__ void sgemm(long long ta, long long tb, long long M, long long N, long long K, float alpha,
                                 const float* __restrict__ A, long long lda, const float* __restrict__ B, long long ldb,
                                 float beta, float* __restrict__ C, long long ldc, long long kc, float* __restrict__ W) {
    long long kbeg = (long long)blockIdx.z * kc, kend = kbeg + kc < K ? kbeg + kc : K;
    gemm_block(ta, tb, M, N, alpha, A, lda, B, ldb, beta, C, ldc, (long long)blockIdx.y * BM,
               (long long)blockIdx.x * BN, kbeg, kend, W ? W + (long long)blockIdx.z * M * N : (float*)0);
}

// sgemm_batched runs one product per blockIdx.z = z, each operand X at
// X + (z / nh)·xo + ((z % nh) / xg)·xi: with z = batch·heads + head, that
// walks the heads of a B·T×heads·D activation (xo = T·row, xi = D), and
// xg > 1 maps query heads onto their shared key/value head.
extern "C" __global__ void sgemm_batched(long long ta, long long tb, long long M, long long N, long long K,
                                         float alpha, const float* __restrict__ A, long long lda,
                                         const float* __restrict__ B, long long ldb, float beta,
                                         float* __restrict__ C, long long ldc, long long nh, long long ao,
                                         long long ai, long long ag, long long bo, long long bi, long long bg,
                                         long long co, long long ci) {
    long long z = blockIdx.z, zo = z / nh, zi = z % nh;
    gemm_block(ta, tb, M, N, alpha, A + zo * ao + zi / ag * ai, lda, B + zo * bo + zi / bg * bi, ldb, beta,
               C + zo * co + zi * ci, ldc, (long long)blockIdx.y * BM, (long long)blockIdx.x * BN, 0, K,
               (float*)0);
}

// sgemm_reduce finishes a split-K product: C = alpha·Σ_z W[z] + beta·C,
// the partials added in order of z.
extern "C" __global__ void sgemm_reduce(float* C, const float* W, long long splits, long long M, long long N,
                                        long long ldc, float alpha, float beta) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= M * N) return;
    float s = 0.f;
    for (long long z = 0; z < splits; z++) s += W[z * M * N + e];
    long long r = e / N, c = e % N;
    float v = alpha * s;
    if (beta != 0.f) v += beta * C[r * ldc + c];
    C[r * ldc + c] = v;
}

// ---- embedding ----

extern "C" __global__ void embed(float* out, const float* table, const int* ids, long long n, long long dim) {
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= n * dim) return;
    long long r = e / dim, j = e % dim;
    out[e] = table[(long long)ids[r] * dim + j];
}

// Embedding gradient: one thread per column walks the rows in order, so
// rows that share a token id add in a fixed order (no atomics, the same
// result on every run).
extern "C" __global__ void embed_back(float* dtable, const int* ids, const float* dout, long long n, long long dim) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= dim) return;
    for (long long r = 0; r < n; r++) dtable[(long long)ids[r] * dim + j] += dout[r * dim + j];
}

// ---- RMSNorm, one block per row; the weight is w + off (Gemma: 1) ----

extern "C" __global__ void rmsnorm(float* out, float* rinv, const float* x, const float* w, long long rows, long long h,
                                   float eps, float off) {
    long long r = blockIdx.x;
    const float* xs = x + r * h;
    float ss = 0.f;
    for (long long j = threadIdx.x; j < h; j += blockDim.x) ss += xs[j] * xs[j];
    ss = block_reduce(ss, false);
    float inv = rsqrtf(ss / (float)h + eps);
    if (threadIdx.x == 0) rinv[r] = inv;
    for (long long j = threadIdx.x; j < h; j += blockDim.x) out[r * h + j] = xs[j] * inv * (w[j] + off);
}

extern "C" __global__ void rmsnorm_back(float* dx, const float* x, const float* w, const float* rinv, const float* dy,
                                        long long rows, long long h, float off) {
    long long r = blockIdx.x;
    const float *xs = x + r * h, *ds = dy + r * h;
    float dot = 0.f;
    for (long long j = threadIdx.x; j < h; j += blockDim.x) dot += xs[j] * (w[j] + off) * ds[j];
    dot = block_reduce(dot, false);
    float inv = rinv[r];
    float c = dot * inv * inv * inv / (float)h;
    for (long long j = threadIdx.x; j < h; j += blockDim.x) dx[r * h + j] = inv * (w[j] + off) * ds[j] - xs[j] * c;
}

// RMSNorm weight gradient dw[j] = Σ_r dy·x·rinv: one thread per column,
// rows in order (deterministic; reads of a row are coalesced across j).
extern "C" __global__ void rmsnorm_dw(float* dw, const float* x, const float* rinv, const float* dy, long long rows,
                                      long long h) {
    long long j = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (j >= h) return;
    float s = 0.f;
    for (long long r = 0; r < rows; r++) s += dy[r * h + j] * x[r * h + j] * rinv[r];
    dw[j] = s;
}

// ---- rotary embeddings, HF rotate-half; one thread per rotated pair ----

extern "C" __global__ void rope(float* y, const float* x, const float* cosT, const float* sinT, long long rows,
                                long long rowLen, long long seqLen, long long headDim, long long back) {
    long long half = headDim / 2, perRow = rowLen / 2;
    long long e = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (e >= rows * perRow) return;
    long long n = e / perRow, rem = e % perRow;
    long long head = rem / half, i = rem % half;
    long long p = n % seqLen;
    long long o = n * rowLen + head * headDim;
    float a = x[o + i], b = x[o + i + half];
    float ca = cosT[p * headDim + i], cb = cosT[p * headDim + i + half];
    float sa = sinT[p * headDim + i], sb = sinT[p * headDim + i + half];
    if (!back) {
        y[o + i] = a * ca - b * sa;
        y[o + i + half] = b * cb + a * sb;
    } else {
        y[o + i] = a * ca + b * sb;
        y[o + i + half] = b * cb - a * sa;
    }
}

// ---- causal grouped-query attention ----
// Attention and its backward pass are sgemm_batched products over the
// batch·heads (scores, P·V, and the four gradient products) around two row
// kernels, one warp per row of P (B·NH·T rows of T).

// softmax_causal turns raw scores into probabilities: row r = (b·NH +
// h)·T + i is query position i, which sees keys s0 ≤ j ≤ i, where s0 is
// the first key of its segment (start[b·T + i]; 0 without segments, start
// null) cut to the window−1 keys before i when window > 0; the other
// entries become 0. The masked entries of P are exact zeros, so neither
// P·V nor softmax_back needs the mask.
extern "C" __global__ void softmax_causal(float* P, long long rows, long long T, long long NH, long long window,
                                          const int* start) {
    long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (r >= rows) return;
    long long i = r % T, b = r / T / NH;
    long long s0 = start ? (long long)start[b * T + i] : 0;
    if (window > 0 && i - window + 1 > s0) s0 = i - window + 1;
    float* row = P + r * T;
    float mx = -INFINITY;
    for (long long j = s0 + lane; j <= i; j += WARP) mx = fmaxf(mx, row[j]);
    mx = warp_max(mx);
    float sum = 0.f;
    for (long long j = s0 + lane; j <= i; j += WARP) sum += expf(row[j] - mx);
    sum = warp_sum(sum);
    float inv = 1.f / sum;
    for (long long j = lane; j < T; j += WARP) row[j] = j >= s0 && j <= i ? expf(row[j] - mx) * inv : 0.f;
}

// softmax_back turns dP (in ds) into dS = P ⊙ (dP − dO_i·O_i) in place;
// row r = (b·NH + h)·T + i.
extern "C" __global__ void softmax_back(float* ds, const float* P, const float* out, const float* dout, long long rows,
                                        long long T, long long NH, long long D) {
    long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (r >= rows) return;
    long long i = r % T, bh = r / T, b = bh / NH, h = bh % NH;
    long long o = (b * T + i) * NH * D + h * D;
    float di = 0.f;
    for (long long d = lane; d < D; d += WARP) di += dout[o + d] * out[o + d];
    di = warp_sum(di);
    for (long long j = lane; j < T; j += WARP) ds[r * T + j] = P[r * T + j] * (ds[r * T + j] - di);
}

// ---- elementwise ----

// GeGLU and the scale (Gemma) are in family.cu.
#include "family.cu"

extern "C" __global__ void swiglu(float* y, float* sig, const float* g, const float* u, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = 1.f / (1.f + expf(-g[i]));
    sig[i] = s;
    y[i] = g[i] * s * u[i];
}

extern "C" __global__ void swiglu_back(float* dg, float* du, const float* g, const float* u, const float* sig,
                                       const float* dy, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float s = sig[i];
    dg[i] = dy[i] * u[i] * s * (1.f + g[i] * (1.f - s));
    du[i] = dy[i] * g[i] * s;
}

extern "C" __global__ void add(float* dst, const float* a, const float* b, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = a[i] + b[i];
}

extern "C" __global__ void mul(float* dst, const float* a, const float* m, long long n, long long acc) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    if (acc)
        dst[i] += a[i] * m[i];
    else
        dst[i] = a[i] * m[i];
}

// ---- cross-entropy, one block per row ----

extern "C" __global__ void cross_entropy(float* dlogits, float* rowLoss, const float* logits, const int* targets,
                                         long long rows, long long vocab, float scale) {
    long long r = blockIdx.x;
    const float* row = logits + r * vocab;
    float* d = dlogits + r * vocab;
    int t = targets[r];
    if (t < 0) {
        for (long long j = threadIdx.x; j < vocab; j += blockDim.x) d[j] = 0.f;
        if (threadIdx.x == 0) rowLoss[r] = 0.f;
        return;
    }
    float mx = -INFINITY;
    for (long long j = threadIdx.x; j < vocab; j += blockDim.x) mx = fmaxf(mx, row[j]);
    mx = block_reduce(mx, true);
    float sum = 0.f;
    for (long long j = threadIdx.x; j < vocab; j += blockDim.x) sum += expf(row[j] - mx);
    sum = block_reduce(sum, false);
    if (threadIdx.x == 0) rowLoss[r] = logf(sum) + mx - row[t];
    float inv = 1.f / sum;
    for (long long j = threadIdx.x; j < vocab; j += blockDim.x) {
        float p = expf(row[j] - mx) * inv * scale;
        d[j] = j == t ? p - scale : p;
    }
}

// sum: one block adds everything, so the result does not depend on timing.
extern "C" __global__ void sum(float* dst, const float* x, long long n) {
    float s = 0.f;
    for (long long i = threadIdx.x; i < n; i += blockDim.x) s += x[i];
    s = block_reduce(s, false);
    if (threadIdx.x == 0) dst[0] = s;
}

extern "C" __global__ void adamw(float* p, const float* g, float* m, float* v, long long n, float beta1, float beta2,
                                 float eps, float step, float sq, float decay, float gscale) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float gi = g[i] * gscale;
    float mi = beta1 * m[i] + (1.f - beta1) * gi;
    float vi = beta2 * v[i] + (1.f - beta2) * gi * gi;
    m[i] = mi;
    v[i] = vi;
    p[i] = p[i] * decay - step * mi / (sqrtf(vi) * sq + eps);
}

// ---- decoding (engine/generate on a device) ----

// copy_f32 copies n floats; offsets are applied to the pointers by the
// caller (new rows into the key/value cache, rows of the RoPE tables).
extern "C" __global__ void copy_f32(float* dst, const float* src, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = src[i];
}

// softmax_cached is softmax_causal for M query rows at positions pos…
// against L = pos+M cached keys: row r is query i = r mod M, which sees
// keys first ≤ j ≤ pos+i (first = pos+i−window+1 with a positive sliding
// window, else 0); the rest become 0.
extern "C" __global__ void softmax_cached(float* P, long long rows, long long M, long long L, long long pos,
                                          long long window) {
    long long r = (long long)blockIdx.x * (blockDim.x / WARP) + threadIdx.x / WARP;
    int lane = threadIdx.x % WARP;
    if (r >= rows) return;
    long long last = pos + r % M;
    long long first = window > 0 && last - window + 1 > 0 ? last - window + 1 : 0;
    float* row = P + r * L;
    float mx = -INFINITY;
    for (long long j = first + lane; j <= last; j += WARP) mx = fmaxf(mx, row[j]);
    mx = warp_max(mx);
    float sum = 0.f;
    for (long long j = first + lane; j <= last; j += WARP) sum += expf(row[j] - mx);
    sum = warp_sum(sum);
    float inv = 1.f / sum;
    for (long long j = lane; j < L; j += WARP) row[j] = j >= first && j <= last ? expf(row[j] - mx) * inv : 0.f;
}

// ---- packed base weights (QLoRA): dequant_nf4, widen_bf16 ----
#include "quant.cu"
