// Kernels of the pieces model families add to the Llama block, included by
// kernels.cu (and so compiled into kernels.ptx and the emulator with it).
// Each mirrors its engine/kern kernel, which accel.Host runs.

// geglu sets y = gelu_tanh(g)·u, PyTorch's gelu(approximate="tanh")
// (Gemma's gelu_pytorch_tanh), and keeps the tanh in th for the backward.
#define GELU_C 0.7978845608028654f  // √(2/π)

extern "C" __global__ void geglu(float* y, float* th, const float* g, const float* u, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = g[i];
    float t = tanhf(GELU_C * (x + 0.044715f * x * x * x));
    th[i] = t;
    y[i] = 0.5f * x * (1.f + t) * u[i];
}

// geglu_back: gelu_tanh'(x) = (1+t)/2 + x/2·(1−t²)·√(2/π)·(1 + 3·0.044715x²).
extern "C" __global__ void geglu_back(float* dg, float* du, const float* g, const float* u, const float* th,
                                      const float* dy, long long n) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i >= n) return;
    float x = g[i], t = th[i];
    float d = 0.5f * (1.f + t) + 0.5f * x * (1.f - t * t) * GELU_C * (1.f + 3.f * 0.044715f * x * x);
    dg[i] = dy[i] * u[i] * d;
    du[i] = dy[i] * 0.5f * x * (1.f + t);
}

// scale sets dst = s·x; dst may be x.
extern "C" __global__ void scale(float* dst, const float* x, long long n, float s) {
    long long i = (long long)blockIdx.x * blockDim.x + threadIdx.x;
    if (i < n) dst[i] = x[i] * s;
}
