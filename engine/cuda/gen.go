// Package cuda is the CUDA backend of engine/accel: a Device whose kernels
// (kernels.cu, compiled to the embedded kernels.ptx) run on an NVIDIA GPU.
// It is built only with -tags lenscuda, and registers itself as accel
// backend "cuda" from init.
//
// The tag is not plain "cuda" because gorgonia.org/gorgonia (which
// engine/accel reaches through engine/nn) has its own files under that tag:
// with -tags cuda it compiles gorgonia.org/cu and gorgonia.org/cu/dnn, which
// need cudnn.h to build and, once built, link libcuda.so.1 and call cuInit
// from a package init that exits the process when it fails.
//
// It talks to the GPU through the CUDA driver API alone (no runtime, no
// cuBLAS), and it does not link libcuda at build time: libcuda.so.1 is
// opened with dlopen when the backend is first asked whether it is
// available. A binary built with -tags lenscuda therefore starts on machines
// without a GPU or a driver; there the backend reports itself unavailable
// and device=auto falls back to the CPU.
//
// Without the lenscuda tag the package holds nothing but this file.
package cuda

// kernels.ptx is checked in, so that building needs no nvcc; regenerate it
// after editing kernels.cu. compute_70 is a virtual architecture: the
// driver JIT-compiles the PTX for the GPU it finds (Volta or newer).
//go:generate nvcc -ptx -arch=compute_70 -o kernels.ptx kernels.cu
