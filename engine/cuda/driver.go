//go:build lenscuda

package cuda

// A minimal binding to the CUDA driver API, resolved at run time.
//
// Why not gorgonia.org/cu (already in go.mod): it links libcuda.so.1 as a
// NEEDED library and calls cuInit from a package init, exiting the process
// when that fails, so a binary built with it cannot even start on a machine
// without a GPU or a driver. The backend must instead report itself
// unavailable there so that device=auto falls back to the CPU. So this file
// opens libcuda.so.1 with dlopen, looks every entry point up with dlsym, and
// calls them through the function pointers below; only the types come from
// cuda.h, nothing links against libcuda.

/*
#cgo LDFLAGS: -ldl
#include <cuda.h>
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef CUresult (*lens_pInit)(unsigned int);
typedef CUresult (*lens_pDriverGetVersion)(int *);
typedef CUresult (*lens_pDeviceGetCount)(int *);
typedef CUresult (*lens_pDeviceGet)(CUdevice *, int);
typedef CUresult (*lens_pDeviceGetName)(char *, int, CUdevice);
typedef CUresult (*lens_pPrimaryCtxRetain)(CUcontext *, CUdevice);
typedef CUresult (*lens_pPrimaryCtxRelease)(CUdevice);
typedef CUresult (*lens_pCtxSetCurrent)(CUcontext);
typedef CUresult (*lens_pCtxSynchronize)(void);
typedef CUresult (*lens_pModuleLoadDataEx)(CUmodule *, const void *, unsigned int, CUjit_option *, void **);
typedef CUresult (*lens_pModuleUnload)(CUmodule);
typedef CUresult (*lens_pModuleGetFunction)(CUfunction *, CUmodule, const char *);
typedef CUresult (*lens_pMemAlloc)(CUdeviceptr *, size_t);
typedef CUresult (*lens_pMemFree)(CUdeviceptr);
typedef CUresult (*lens_pMemcpyHtoD)(CUdeviceptr, const void *, size_t);
typedef CUresult (*lens_pMemcpyDtoH)(void *, CUdeviceptr, size_t);
typedef CUresult (*lens_pMemsetD32)(CUdeviceptr, unsigned int, size_t);
typedef CUresult (*lens_pLaunchKernel)(CUfunction, unsigned int, unsigned int, unsigned int, unsigned int,
                                       unsigned int, unsigned int, unsigned int, CUstream, void **, void **);
typedef CUresult (*lens_pGetErrorName)(CUresult, const char **);
typedef CUresult (*lens_pGetErrorString)(CUresult, const char **);

static void *lens_lib;
static lens_pInit lens_fInit;
static lens_pDriverGetVersion lens_fDriverGetVersion;
static lens_pDeviceGetCount lens_fDeviceGetCount;
static lens_pDeviceGet lens_fDeviceGet;
static lens_pDeviceGetName lens_fDeviceGetName;
static lens_pPrimaryCtxRetain lens_fPrimaryCtxRetain;
static lens_pPrimaryCtxRelease lens_fPrimaryCtxRelease;
static lens_pCtxSetCurrent lens_fCtxSetCurrent;
static lens_pCtxSynchronize lens_fCtxSynchronize;
static lens_pModuleLoadDataEx lens_fModuleLoadDataEx;
static lens_pModuleUnload lens_fModuleUnload;
static lens_pModuleGetFunction lens_fModuleGetFunction;
static lens_pMemAlloc lens_fMemAlloc;
static lens_pMemFree lens_fMemFree;
static lens_pMemcpyHtoD lens_fMemcpyHtoD;
static lens_pMemcpyDtoH lens_fMemcpyDtoH;
static lens_pMemsetD32 lens_fMemsetD32;
static lens_pLaunchKernel lens_fLaunchKernel;
static lens_pGetErrorName lens_fGetErrorName;
static lens_pGetErrorString lens_fGetErrorString;

static char lens_err[512];

// lens_load opens libcuda.so.1 and resolves every entry point. It returns
// NULL on success, else a description of what failed (in a static buffer:
// the Go side calls it once, under a sync.Once).
static const char *lens_load(void) {
	lens_lib = dlopen("libcuda.so.1", RTLD_NOW | RTLD_LOCAL);
	if (!lens_lib) {
		const char *e = dlerror();
		snprintf(lens_err, sizeof lens_err, "%s", e ? e : "dlopen failed");
		return lens_err;
	}
#define LENS_SYM(var, type, name)                                               \
	if (!(var = (type)dlsym(lens_lib, name))) {                                 \
		snprintf(lens_err, sizeof lens_err, "libcuda.so.1 has no symbol %s", name); \
		return lens_err;                                                        \
	}
	LENS_SYM(lens_fInit, lens_pInit, "cuInit")
	LENS_SYM(lens_fDriverGetVersion, lens_pDriverGetVersion, "cuDriverGetVersion")
	LENS_SYM(lens_fDeviceGetCount, lens_pDeviceGetCount, "cuDeviceGetCount")
	LENS_SYM(lens_fDeviceGet, lens_pDeviceGet, "cuDeviceGet")
	LENS_SYM(lens_fDeviceGetName, lens_pDeviceGetName, "cuDeviceGetName")
	LENS_SYM(lens_fPrimaryCtxRetain, lens_pPrimaryCtxRetain, "cuDevicePrimaryCtxRetain")
	// cuda.h maps cuDevicePrimaryCtxRelease to the _v2 entry point (CUDA 11+);
	// older drivers only have the unversioned one.
	lens_fPrimaryCtxRelease = (lens_pPrimaryCtxRelease)dlsym(lens_lib, "cuDevicePrimaryCtxRelease_v2");
	if (!lens_fPrimaryCtxRelease) {
		LENS_SYM(lens_fPrimaryCtxRelease, lens_pPrimaryCtxRelease, "cuDevicePrimaryCtxRelease")
	}
	LENS_SYM(lens_fCtxSetCurrent, lens_pCtxSetCurrent, "cuCtxSetCurrent")
	LENS_SYM(lens_fCtxSynchronize, lens_pCtxSynchronize, "cuCtxSynchronize")
	LENS_SYM(lens_fModuleLoadDataEx, lens_pModuleLoadDataEx, "cuModuleLoadDataEx")
	LENS_SYM(lens_fModuleUnload, lens_pModuleUnload, "cuModuleUnload")
	LENS_SYM(lens_fModuleGetFunction, lens_pModuleGetFunction, "cuModuleGetFunction")
	LENS_SYM(lens_fMemAlloc, lens_pMemAlloc, "cuMemAlloc_v2")
	LENS_SYM(lens_fMemFree, lens_pMemFree, "cuMemFree_v2")
	LENS_SYM(lens_fMemcpyHtoD, lens_pMemcpyHtoD, "cuMemcpyHtoD_v2")
	LENS_SYM(lens_fMemcpyDtoH, lens_pMemcpyDtoH, "cuMemcpyDtoH_v2")
	LENS_SYM(lens_fMemsetD32, lens_pMemsetD32, "cuMemsetD32_v2")
	LENS_SYM(lens_fLaunchKernel, lens_pLaunchKernel, "cuLaunchKernel")
	LENS_SYM(lens_fGetErrorName, lens_pGetErrorName, "cuGetErrorName")
	LENS_SYM(lens_fGetErrorString, lens_pGetErrorString, "cuGetErrorString")
#undef LENS_SYM
	return NULL;
}

static CUresult lens_cuInit(unsigned int flags) { return lens_fInit(flags); }
static CUresult lens_cuDriverGetVersion(int *v) { return lens_fDriverGetVersion(v); }
static CUresult lens_cuDeviceGetCount(int *n) { return lens_fDeviceGetCount(n); }
static CUresult lens_cuDeviceGet(CUdevice *d, int ordinal) { return lens_fDeviceGet(d, ordinal); }
static CUresult lens_cuDeviceGetName(char *name, int len, CUdevice d) { return lens_fDeviceGetName(name, len, d); }
static CUresult lens_cuDevicePrimaryCtxRetain(CUcontext *c, CUdevice d) { return lens_fPrimaryCtxRetain(c, d); }
static CUresult lens_cuDevicePrimaryCtxRelease(CUdevice d) { return lens_fPrimaryCtxRelease(d); }
static CUresult lens_cuCtxSetCurrent(CUcontext c) { return lens_fCtxSetCurrent(c); }
static CUresult lens_cuCtxSynchronize(void) { return lens_fCtxSynchronize(); }
static CUresult lens_cuModuleUnload(CUmodule m) { return lens_fModuleUnload(m); }
static CUresult lens_cuModuleGetFunction(CUfunction *f, CUmodule m, const char *name) {
	return lens_fModuleGetFunction(f, m, name);
}
static CUresult lens_cuMemAlloc(CUdeviceptr *p, size_t bytes) { return lens_fMemAlloc(p, bytes); }
static CUresult lens_cuMemFree(CUdeviceptr p) { return lens_fMemFree(p); }
static CUresult lens_cuMemcpyHtoD(CUdeviceptr dst, const void *src, size_t bytes) {
	return lens_fMemcpyHtoD(dst, src, bytes);
}
static CUresult lens_cuMemcpyDtoH(void *dst, CUdeviceptr src, size_t bytes) { return lens_fMemcpyDtoH(dst, src, bytes); }
static CUresult lens_cuMemsetD32(CUdeviceptr p, unsigned int v, size_t n) { return lens_fMemsetD32(p, v, n); }

// lens_cuModuleLoadData loads a NUL-terminated PTX image; a JIT failure
// leaves the compiler's messages in log (logSize bytes, NUL-terminated).
static CUresult lens_cuModuleLoadData(CUmodule *m, const char *ptx, char *log, size_t logSize) {
	CUjit_option opts[2] = {CU_JIT_ERROR_LOG_BUFFER, CU_JIT_ERROR_LOG_BUFFER_SIZE_BYTES};
	void *vals[2] = {log, (void *)(uintptr_t)logSize};
	return lens_fModuleLoadDataEx(m, ptx, 2, opts, vals);
}

// lens_args holds one launch's kernel arguments: each in its own 8-byte
// slot, with ptr[i] = &slot[i] (cuLaunchKernel's kernelParams). It lives
// in C memory because cgo forbids handing C a Go pointer to memory that
// itself holds Go pointers.
#define LENS_MAXARGS 24
typedef struct {
	unsigned long long slot[LENS_MAXARGS];
	void *ptr[LENS_MAXARGS];
} lens_args;

static lens_args *lens_args_new(void) {
	lens_args *a = (lens_args *)calloc(1, sizeof *a);
	if (a)
		for (int i = 0; i < LENS_MAXARGS; i++) a->ptr[i] = &a->slot[i];
	return a;
}

static void lens_args_free(lens_args *a) { free(a); }

// lens_cuLaunchKernel launches f on the default stream with no dynamic
// shared memory; the driver copies the argument values before returning.
static CUresult lens_cuLaunchKernel(CUfunction f, unsigned int gx, unsigned int gy, unsigned int gz, unsigned int bx,
                                    unsigned int by, unsigned int bz, lens_args *a) {
	return lens_fLaunchKernel(f, gx, gy, gz, bx, by, bz, 0, NULL, a->ptr, NULL);
}

static CUresult lens_cuGetErrorName(CUresult r, const char **s) { return lens_fGetErrorName(r, s); }
static CUresult lens_cuGetErrorString(CUresult r, const char **s) { return lens_fGetErrorString(r, s); }
*/
import "C"

import (
	"errors"
	"fmt"
	"strings"
	"sync"
	"unsafe"
)

// maxArgs is LENS_MAXARGS: the most arguments a kernel takes here.
const maxArgs = C.LENS_MAXARGS

var (
	loadOnce sync.Once
	loadErr  error
)

// load opens libcuda.so.1 and resolves the entry points, once per process.
func load() error {
	loadOnce.Do(func() {
		if msg := C.lens_load(); msg != nil {
			loadErr = fmt.Errorf("no CUDA driver (libcuda.so.1): %s", C.GoString(msg))
		}
	})
	return loadErr
}

// Error is a failed driver call.
type Error struct {
	Call string // the call and what it was asked, e.g. "cuMemAlloc(4096 bytes)"
	Code int    // the driver's CUresult
	Name string // e.g. CUDA_ERROR_OUT_OF_MEMORY
	Msg  string // the driver's description, e.g. "out of memory"
}

func (e *Error) Error() string {
	return fmt.Sprintf("cuda: %s: %s: %s", e.Call, e.Name, e.Msg)
}

// check turns a driver status into nil or an *Error naming call.
func check(call string, r C.CUresult) error {
	if r == C.CUDA_SUCCESS {
		return nil
	}
	e := &Error{Call: call, Code: int(r), Name: fmt.Sprintf("CUresult(%d)", int(r)), Msg: "unknown error"}
	var s *C.char
	if C.lens_cuGetErrorName(r, &s) == C.CUDA_SUCCESS && s != nil {
		e.Name = C.GoString(s)
	}
	s = nil
	if C.lens_cuGetErrorString(r, &s) == C.CUDA_SUCCESS && s != nil {
		e.Msg = C.GoString(s)
	}
	return e
}

// args packs one launch's arguments into C memory (see lens_args).
type args struct {
	a *C.lens_args
	n int
}

func newArgs() (*args, error) {
	a := C.lens_args_new()
	if a == nil {
		return nil, fmt.Errorf("cuda: cannot allocate launch arguments")
	}
	return &args{a: a}, nil
}

func (a *args) free() {
	if a.a != nil {
		C.lens_args_free(a.a)
		a.a = nil
	}
}

func (a *args) reset() { a.n = 0 }

func (a *args) next() *C.ulonglong {
	if a.n == maxArgs {
		panic("cuda: too many kernel arguments")
	}
	s := &a.a.slot[a.n]
	*s = 0
	a.n++
	return s
}

// int is a long long argument.
func (a *args) int(v int) { *a.next() = C.ulonglong(int64(v)) }

// bool is a long long 0 or 1.
func (a *args) bool(v bool) {
	if v {
		a.int(1)
	} else {
		a.int(0)
	}
}

// float is a float argument: 4 bytes at the start of its slot.
func (a *args) float(v float32) { *(*float32)(unsafe.Pointer(a.next())) = v }

// ptr is a device pointer argument.
func (a *args) ptr(p dptr) { *a.next() = C.ulonglong(p) }

// minDriver is the oldest driver (CUDA_VERSION encoding, 1000·major +
// 10·minor) that can JIT kernels.ptx: nvcc 11.8 writes PTX ISA 7.8, which
// older drivers reject with CUDA_ERROR_UNSUPPORTED_PTX_VERSION. Regenerating
// the PTX with another nvcc changes its .version line; TestPTXVersion
// then fails until ptxISA and minDriver are updated together.
const (
	minDriver = 11080
	ptxISA    = "7.8"
)

var (
	initOnce sync.Once
	initErr  error
)

// driverInit loads the driver, checks its version, initializes it and
// checks that there is a device, once per process; its error says why the
// backend is unavailable.
func driverInit() error {
	initOnce.Do(func() {
		if err := load(); err != nil {
			initErr = err
			return
		}
		var v C.int
		if err := check("cuDriverGetVersion", C.lens_cuDriverGetVersion(&v)); err != nil {
			initErr = err
			return
		}
		if v < minDriver {
			initErr = fmt.Errorf("the CUDA driver (libcuda.so.1) supports CUDA %d.%d; the kernels need %d.%d or newer",
				v/1000, v%1000/10, minDriver/1000, minDriver%1000/10)
			return
		}
		if r := C.lens_cuInit(0); r != C.CUDA_SUCCESS {
			e := check("cuInit(0)", r).(*Error)
			initErr = fmt.Errorf("CUDA driver (libcuda.so.1) found, but cuInit failed: %s: %s", e.Name, e.Msg)
			return
		}
		var n C.int
		if err := check("cuDeviceGetCount", C.lens_cuDeviceGetCount(&n)); err != nil {
			initErr = err
			return
		}
		if n == 0 {
			initErr = errors.New("CUDA driver (libcuda.so.1) found, but no CUDA device")
		}
	})
	return initErr
}

// The driver's handles, for the cgo-free rest of the package.
type (
	cuDevice   = C.CUdevice
	cuContext  = C.CUcontext
	cuModule   = C.CUmodule
	cuFunction = C.CUfunction
)

// dptr is a device address (CUdeviceptr).
type dptr uint64

// Go wrappers of the entry points. Each needs the driver loaded
// (driverInit) and, from cuCtxSetCurrent on, a current context.

func cuDeviceGet(ordinal int) (cuDevice, error) {
	var d C.CUdevice
	return d, check(fmt.Sprintf("cuDeviceGet(%d)", ordinal), C.lens_cuDeviceGet(&d, C.int(ordinal)))
}

func cuDeviceGetName(d cuDevice) (string, error) {
	var name [256]C.char
	if err := check("cuDeviceGetName", C.lens_cuDeviceGetName(&name[0], C.int(len(name)), d)); err != nil {
		return "", err
	}
	return C.GoString(&name[0]), nil
}

func cuDevicePrimaryCtxRetain(d cuDevice) (cuContext, error) {
	var c C.CUcontext
	return c, check("cuDevicePrimaryCtxRetain", C.lens_cuDevicePrimaryCtxRetain(&c, d))
}

func cuDevicePrimaryCtxRelease(d cuDevice) error {
	return check("cuDevicePrimaryCtxRelease", C.lens_cuDevicePrimaryCtxRelease(d))
}

func cuCtxSetCurrent(c cuContext) error {
	return check("cuCtxSetCurrent", C.lens_cuCtxSetCurrent(c))
}

// cuCtxSynchronize waits for the context's work; why says what for, in
// the error.
func cuCtxSynchronize(why string) error {
	return check("cuCtxSynchronize ("+why+")", C.lens_cuCtxSynchronize())
}

// cuModuleLoadPTX JIT-compiles a PTX image; a failure carries the JIT log.
func cuModuleLoadPTX(what, ptx string) (cuModule, error) {
	const logSize = 16 << 10
	cptx := C.CString(ptx)
	defer C.free(unsafe.Pointer(cptx))
	log := (*C.char)(C.calloc(1, logSize))
	if log == nil {
		return nil, errors.New("cuda: cannot allocate the JIT log")
	}
	defer C.free(unsafe.Pointer(log))
	var m C.CUmodule
	err := check(fmt.Sprintf("cuModuleLoadDataEx(%s, %d bytes)", what, len(ptx)), C.lens_cuModuleLoadData(&m, cptx, log, logSize))
	if err != nil {
		if msg := strings.TrimSpace(C.GoStringN(log, C.int(C.strnlen(log, logSize)))); msg != "" {
			err = fmt.Errorf("%w\nJIT log:\n%s", err, msg)
		}
		return nil, err
	}
	return m, nil
}

func cuModuleUnload(m cuModule) error {
	return check("cuModuleUnload", C.lens_cuModuleUnload(m))
}

func cuModuleGetFunction(m cuModule, name string) (cuFunction, error) {
	cname := C.CString(name)
	defer C.free(unsafe.Pointer(cname))
	var f C.CUfunction
	return f, check("cuModuleGetFunction("+name+")", C.lens_cuModuleGetFunction(&f, m, cname))
}

// The wrappers below run often; they format their error only on failure.

func cuMemAlloc(bytes int) (dptr, error) {
	var p C.CUdeviceptr
	if r := C.lens_cuMemAlloc(&p, C.size_t(bytes)); r != C.CUDA_SUCCESS {
		return 0, check(fmt.Sprintf("cuMemAlloc(%d bytes)", bytes), r)
	}
	return dptr(p), nil
}

func cuMemFree(p dptr) error {
	return check("cuMemFree", C.lens_cuMemFree(C.CUdeviceptr(p)))
}

// cuMemcpyHtoD copies bytes from host memory at src (Go memory free of Go
// pointers, which cgo pins for the call).
func cuMemcpyHtoD(dst dptr, src unsafe.Pointer, bytes int) error {
	if r := C.lens_cuMemcpyHtoD(C.CUdeviceptr(dst), src, C.size_t(bytes)); r != C.CUDA_SUCCESS {
		return check(fmt.Sprintf("cuMemcpyHtoD(%d bytes)", bytes), r)
	}
	return nil
}

// cuMemcpyDtoH is synchronous: it returns once the data is in dst.
func cuMemcpyDtoH(dst unsafe.Pointer, src dptr, bytes int) error {
	if r := C.lens_cuMemcpyDtoH(dst, C.CUdeviceptr(src), C.size_t(bytes)); r != C.CUDA_SUCCESS {
		return check(fmt.Sprintf("cuMemcpyDtoH(%d bytes)", bytes), r)
	}
	return nil
}

// cuMemsetD32 sets n 32-bit words to v.
func cuMemsetD32(p dptr, v uint32, n int) error {
	if r := C.lens_cuMemsetD32(C.CUdeviceptr(p), C.uint(v), C.size_t(n)); r != C.CUDA_SUCCESS {
		return check(fmt.Sprintf("cuMemsetD32(%d words)", n), r)
	}
	return nil
}

// cuLaunchKernel launches f (named name) on a gx×gy×gz grid of bx-thread
// blocks on the default stream, with the arguments packed in a.
func cuLaunchKernel(f cuFunction, name string, gx, gy, gz, bx int, a *args) error {
	if r := C.lens_cuLaunchKernel(f, C.uint(gx), C.uint(gy), C.uint(gz), C.uint(bx), 1, 1, a.a); r != C.CUDA_SUCCESS {
		return check(fmt.Sprintf("cuLaunchKernel(%s, grid %d×%d×%d, block %d)", name, gx, gy, gz, bx), r)
	}
	return nil
}
