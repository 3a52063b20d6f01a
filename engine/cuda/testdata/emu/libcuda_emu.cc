// A CPU stand-in for libcuda.so.1, for testing engine/cuda without a GPU.
//
// It implements the driver entry points engine/cuda's binding looks up,
// with host memory as "device" memory, and runs the kernels of
// ../../kernels.cu compiled as C++: each block in turn, its threads as
// cooperative fibers (ucontext) on one OS thread, with real barriers for
// __syncthreads/__syncwarp and warp shuffles through a per-warp exchange
// buffer. A fiber runs until it reaches a barrier, and resumes only once
// every thread the barrier counts has arrived there (a returned thread
// counts no more, as on the GPU; a barrier nobody can reach is reported as
// a failed launch). Fibers instead of OS threads: creating and joining up
// to 1,024 threads per block made the emulated suite take tens of minutes
// on two cores. So the
// binding, the launch configurations, the argument packing and the kernels'
// own indexing and reductions all run for real; only the hardware is
// missing (no memory model, warp scheduling or PTX JIT). Built by the test
// TestEmulated.
#include <cuda.h>
#include <setjmp.h>
#include <ucontext.h>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <functional>
#include <memory>
#include <string>
#include <vector>
namespace emu {
struct dim { unsigned x = 0, y = 0, z = 0; };
// A barrier counts the live threads it waits for (a thread that returns
// drops out, as on the GPU); gen advances at each release.
struct barrier {
  unsigned expected = 0, arrived = 0, gen = 0;
};
// A fiber starts on its own stack through makecontext/setcontext; after
// that every switch is _setjmp/_longjmp, which (unlike swapcontext) saves
// no signal mask and so makes no system call.
struct fiber {
  ucontext_t ctx;
  jmp_buf jb;
  bool started = false;
  dim tid;
  barrier *wait = nullptr;  // the barrier this fiber waits at, or null
  unsigned gen = 0;         // its generation when the fiber arrived
  bool done = false;
};
dim blockIdx, blockDim, gridDim;
fiber *cur;  // the running fiber
jmp_buf sched;
barrier block_bar;
std::vector<barrier> warp_bar;
float (*warp_buf)[32];
inline void release(barrier &b) {
  if (b.expected > 0 && b.arrived == b.expected) {
    b.arrived = 0;
    b.gen++;
  }
}
// arrive waits at b: the last thread to arrive releases the others and
// goes on; the others yield to the scheduler until the release.
inline void arrive(barrier &b) {
  b.arrived++;
  unsigned g = b.gen;
  release(b);
  if (b.gen != g) return;
  cur->wait = &b;
  cur->gen = g;
  if (!_setjmp(cur->jb)) _longjmp(sched, 1);
}
inline void syncthreads() { arrive(block_bar); }
inline void syncwarp() { arrive(warp_bar[cur->tid.x / 32]); }
inline float shfl_xor(float v, int o) {
  unsigned w = cur->tid.x / 32, l = cur->tid.x % 32;
  warp_buf[w][l] = v;
  syncwarp();
  float r = warp_buf[w][l ^ o];
  syncwarp();
  return r;
}
}  // namespace emu
#define __global__
#define __device__
#define __forceinline__ inline
#define __restrict__
#define __shared__ static
#define __constant__ static
static inline float __fmul_rn(float a, float b) { return a * b; }
static inline float __uint_as_float(unsigned u) {
  float f;
  memcpy(&f, &u, sizeof f);
  return f;
}
#define threadIdx (emu::cur->tid)
#define blockIdx emu::blockIdx
#define blockDim emu::blockDim
#define __syncthreads() emu::syncthreads()
#define __syncwarp() emu::syncwarp()
#define __shfl_xor_sync(mask, v, o) emu::shfl_xor(v, o)
static inline float rsqrtf(float x) { return 1.0f / sqrtf(x); }
#include <math.h>  // expf, logf, fmaf, fmaxf, sqrtf, INFINITY in the global namespace

#include "../../kernels.cu"

#undef threadIdx
#undef blockIdx
#undef blockDim

namespace {
typedef long long ll;
typedef std::function<void(void **)> Kernel;
template <class T> T arg(void **p, int i) { return *(T *)p[i]; }
#define F(i) arg<float *>(p, i)
#define I(i) arg<int *>(p, i)
#define L(i) arg<ll>(p, i)
#define R(i) arg<float>(p, i)

struct Fn {
  const char *name;
  Kernel run;
};
Fn fns[] = {
    {"sgemm",
     [](void **p) { sgemm(L(0), L(1), L(2), L(3), L(4), R(5), F(6), L(7), F(8), L(9), R(10), F(11), L(12), L(13), F(14)); }},
    {"sgemm_reduce", [](void **p) { sgemm_reduce(F(0), F(1), L(2), L(3), L(4), L(5), R(6), R(7)); }},
    {"embed", [](void **p) { embed(F(0), F(1), I(2), L(3), L(4)); }},
    {"rmsnorm", [](void **p) { rmsnorm(F(0), F(1), F(2), F(3), L(4), L(5), R(6), R(7)); }},
    {"rmsnorm_back", [](void **p) { rmsnorm_back(F(0), F(1), F(2), F(3), F(4), L(5), L(6), R(7)); }},
    {"rope", [](void **p) { rope(F(0), F(1), F(2), F(3), L(4), L(5), L(6), L(7), L(8)); }},
    {"sgemm_batched",
     [](void **p) {
       sgemm_batched(L(0), L(1), L(2), L(3), L(4), R(5), F(6), L(7), F(8), L(9), R(10), F(11), L(12), L(13), L(14),
                     L(15), L(16), L(17), L(18), L(19), L(20), L(21));
     }},
    {"softmax_causal", [](void **p) { softmax_causal(F(0), L(1), L(2), L(3), L(4), I(5)); }},
    {"softmax_back", [](void **p) { softmax_back(F(0), F(1), F(2), F(3), L(4), L(5), L(6), L(7)); }},
    {"swiglu", [](void **p) { swiglu(F(0), F(1), F(2), F(3), L(4)); }},
    {"swiglu_back", [](void **p) { swiglu_back(F(0), F(1), F(2), F(3), F(4), F(5), L(6)); }},
    {"add", [](void **p) { add(F(0), F(1), F(2), L(3)); }},
    {"mul", [](void **p) { mul(F(0), F(1), F(2), L(3), L(4)); }},
    {"cross_entropy", [](void **p) { cross_entropy(F(0), F(1), F(2), I(3), L(4), L(5), R(6)); }},
    {"sum", [](void **p) { sum(F(0), F(1), L(2)); }},
    {"adamw", [](void **p) { adamw(F(0), F(1), F(2), F(3), L(4), R(5), R(6), R(7), R(8), R(9), R(10), R(11)); }},
    {"embed_back", [](void **p) { embed_back(F(0), I(1), F(2), L(3), L(4)); }},
    {"rmsnorm_dw", [](void **p) { rmsnorm_dw(F(0), F(1), F(2), F(3), L(4), L(5)); }},
    {"copy_f32", [](void **p) { copy_f32(F(0), F(1), L(2)); }},
    {"softmax_cached", [](void **p) { softmax_cached(F(0), L(1), L(2), L(3), L(4), L(5)); }},
    {"geglu", [](void **p) { geglu(F(0), F(1), F(2), F(3), L(4)); }},
    {"geglu_back", [](void **p) { geglu_back(F(0), F(1), F(2), F(3), F(4), F(5), L(6)); }},
    {"scale", [](void **p) { scale(F(0), F(1), L(2), R(3)); }},
    {"dequant_nf4", [](void **p) { dequant_nf4(F(0), arg<unsigned char *>(p, 1), F(2), L(3)); }},
    {"widen_bf16", [](void **p) { widen_bf16(F(0), arg<unsigned short *>(p, 1), L(2)); }},
};
int ctx_token, mod_token;
}  // namespace

extern "C" {
CUresult cuInit(unsigned int) { return CUDA_SUCCESS; }
CUresult cuDriverGetVersion(int *v) { *v = 12000; return CUDA_SUCCESS; }
CUresult cuDeviceGetCount(int *n) { *n = 1; return CUDA_SUCCESS; }
CUresult cuDeviceGet(CUdevice *d, int i) { *d = i; return i == 0 ? CUDA_SUCCESS : CUDA_ERROR_INVALID_DEVICE; }
CUresult cuDeviceGetName(char *name, int len, CUdevice) {
  snprintf(name, len, "lens CPU emulator");
  return CUDA_SUCCESS;
}
CUresult cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice) { *c = (CUcontext)&ctx_token; return CUDA_SUCCESS; }
CUresult cuDevicePrimaryCtxRelease_v2(CUdevice) { return CUDA_SUCCESS; }
CUresult cuCtxSetCurrent(CUcontext) { return CUDA_SUCCESS; }
CUresult cuCtxSynchronize(void) { return CUDA_SUCCESS; }
CUresult cuModuleLoadDataEx(CUmodule *m, const void *, unsigned int, CUjit_option *, void **) {
  *m = (CUmodule)&mod_token;
  return CUDA_SUCCESS;
}
CUresult cuModuleUnload(CUmodule) { return CUDA_SUCCESS; }
CUresult cuModuleGetFunction(CUfunction *f, CUmodule, const char *name) {
  for (auto &fn : fns)
    if (strcmp(fn.name, name) == 0) {
      *f = (CUfunction)&fn;
      return CUDA_SUCCESS;
    }
  return CUDA_ERROR_NOT_FOUND;
}
CUresult cuMemAlloc_v2(CUdeviceptr *p, size_t bytes) {
  void *m = calloc(1, bytes);
  if (!m) return CUDA_ERROR_OUT_OF_MEMORY;
  *p = (CUdeviceptr)m;
  return CUDA_SUCCESS;
}
CUresult cuMemFree_v2(CUdeviceptr p) { free((void *)p); return CUDA_SUCCESS; }
CUresult cuMemcpyHtoD_v2(CUdeviceptr d, const void *s, size_t n) { memcpy((void *)d, s, n); return CUDA_SUCCESS; }
CUresult cuMemcpyDtoH_v2(void *d, CUdeviceptr s, size_t n) { memcpy(d, (void *)s, n); return CUDA_SUCCESS; }
CUresult cuMemsetD32_v2(CUdeviceptr d, unsigned int v, size_t n) {
  unsigned int *p = (unsigned int *)d;
  for (size_t i = 0; i < n; i++) p[i] = v;
  return CUDA_SUCCESS;
}
CUresult cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                        unsigned int by, unsigned int bz, unsigned int shmem, CUstream, void **params, void **) {
  if (gz == 0 || by != 1 || bz != 1 || shmem != 0 || bx == 0 || bx > 1024) return CUDA_ERROR_INVALID_VALUE;
  Fn *fn = (Fn *)f;
  // The argument slots belong to the caller; copy them as the driver does.
  std::vector<unsigned long long> slots(24);  // LENS_MAXARGS in driver.go
  std::vector<void *> ptrs(24);
  for (int i = 0; i < 24; i++) {
    memcpy(&slots[i], params[i], 8);
    ptrs[i] = &slots[i];
  }
  emu::blockDim = {bx, 1, 1};
  emu::gridDim = {gx, gy, gz};
  unsigned warps = (bx + 31) / 32;
  std::vector<float[32]> wbuf(warps);
  emu::warp_buf = wbuf.data();
  // Fibers and their stacks are reused from launch to launch.
  static std::vector<emu::fiber> fibers;
  static std::vector<std::unique_ptr<char[]>> stacks;
  const size_t stack = 256 << 10;
  if (fibers.size() < bx) fibers.resize(bx);
  while (stacks.size() < bx) stacks.emplace_back(new char[stack]);
  struct run_t {
    Fn *fn;
    void **args;
  } run{fn, ptrs.data()};
  static run_t *running;
  running = &run;
  // A fiber's life is a loop: run the kernel for the current block, drop
  // out of the barriers, park; the next block (or launch) resumes it.
  static void (*entry)() = [] {
    for (;;) {
      running->fn->run(running->args);
      emu::fiber *f = emu::cur;
      f->done = true;
      emu::block_bar.expected--;
      emu::release(emu::block_bar);
      emu::barrier &w = emu::warp_bar[f->tid.x / 32];
      w.expected--;
      emu::release(w);
      if (!_setjmp(f->jb)) _longjmp(emu::sched, 1);
    }
  };
  for (unsigned t = 0; t < bx; t++) {
    emu::fiber &f = fibers[t];
    if (f.started) continue;
    getcontext(&f.ctx);
    f.ctx.uc_stack.ss_sp = stacks[t].get();
    f.ctx.uc_stack.ss_size = stack;
    f.ctx.uc_link = nullptr;  // the entry never returns
    makecontext(&f.ctx, entry, 0);
  }
  for (unsigned z = 0; z < gz; z++)
    for (unsigned y = 0; y < gy; y++)
      for (unsigned x = 0; x < gx; x++) {
        emu::blockIdx = {x, y, z};
        emu::block_bar = {bx, 0, 0};
        emu::warp_bar.assign(warps, {});
        for (unsigned w = 0; w < warps; w++) emu::warp_bar[w].expected = std::min(32u, bx - 32 * w);
        for (unsigned t = 0; t < bx; t++) {
          emu::fiber &f = fibers[t];
          f.tid = {t, 0, 0};
          f.wait = nullptr;
          f.done = false;
        }
        // Round robin over the fibers that can run: not done, and not
        // waiting at a barrier that has not been released since.
        for (unsigned live = bx; live > 0;) {
          bool ran = false;
          for (unsigned t = 0; t < bx; t++) {
            emu::fiber &f = fibers[t];
            if (f.done || (f.wait && f.wait->gen == f.gen)) continue;
            f.wait = nullptr;
            emu::cur = &f;
            if (!_setjmp(emu::sched)) {
              if (f.started) _longjmp(f.jb, 1);
              f.started = true;
              setcontext(&f.ctx);
            }
            ran = true;
            if (f.done) live--;
          }
          if (!ran && live > 0) {
            fprintf(stderr, "emulator: kernel %s deadlocked at a barrier (block %u,%u,%u)\n", fn->name, x, y, z);
            // The stuck fibers start afresh at the next launch.
            for (unsigned t = 0; t < bx; t++)
              if (!fibers[t].done) fibers[t].started = false;
            return CUDA_ERROR_LAUNCH_FAILED;
          }
        }
      }
  return CUDA_SUCCESS;
}
CUresult cuGetErrorName(CUresult r, const char **s) { *s = r == CUDA_SUCCESS ? "CUDA_SUCCESS" : "CUDA_ERROR"; return CUDA_SUCCESS; }
CUresult cuGetErrorString(CUresult r, const char **s) { *s = r == CUDA_SUCCESS ? "no error" : "emulator error"; return CUDA_SUCCESS; }
}
