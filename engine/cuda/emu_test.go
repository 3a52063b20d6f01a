//go:build lenscuda

package cuda

import (
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestEmulated runs TestKernels, TestStep, TestFullStep, TestProbe,
// TestQuantStep, TestZeroSize, TestDecodeKernels, TestDecode and TestDecodeFamilies
// against testdata/emu: a
// CPU stand-in for libcuda.so.1 that runs kernels.cu compiled as C++ (each
// block's threads as fibers with real barriers and warp shuffles). The
// binding, the launch configurations, the argument packing and the
// kernels' indexing and reductions are then checked on any machine with
// g++ and cuda.h; what only a GPU shows (its memory model, the PTX JIT,
// speed) is left to a real one.
func TestEmulated(t *testing.T) {
	emulated(t, "TestKernels", "TestStep", "TestFullStep", "TestProbe", "TestQuantStep", "TestZeroSize", "TestDecodeKernels", "TestDecode", "TestDecodeFamilies")
}

// TestEmulatedFamilies runs TestFamilies against testdata/emu: every
// family's step, Gemma 3 (local and global layers, packed rows) and
// Mistral's window shorter than the sequence among them.
func TestEmulatedFamilies(t *testing.T) { emulated(t, "TestFamilies") }

// emulated builds the emulator and reruns this test binary's tests named
// in tests against it, requiring each to pass.
func emulated(t *testing.T, tests ...string) {
	if testing.Short() {
		t.Skip("minutes of emulated kernels")
	}
	if os.Getenv("LENS_CUDA_EMULATED") != "" {
		t.Skip("already inside the emulated run")
	}
	gxx, err := exec.LookPath("g++")
	if err != nil {
		t.Skip("g++ not installed")
	}
	inc := cudaInclude()
	if inc == "" {
		t.Skip("cuda.h not found in /usr/include or CGO_CFLAGS (Debian non-free nvidia-cuda-dev)")
	}
	dir := t.TempDir()
	out, err := exec.Command(gxx, "-std=c++20", "-O1", "-shared", "-fPIC", "-Wno-unknown-pragmas", "-I", inc,
		"-o", filepath.Join(dir, "libcuda.so.1"), filepath.Join("testdata", "emu", "libcuda_emu.cc")).CombinedOutput()
	require.NoError(t, err, "build the emulator: %s", out)
	self, err := os.Executable()
	require.NoError(t, err)
	cmd := exec.Command(self, "-test.v", "-test.count=1", "-test.run", "^("+strings.Join(tests, "|")+")$")
	cmd.Env = append(os.Environ(), "LD_LIBRARY_PATH="+dir, "LENS_CUDA_EMULATED=1")
	b, err := cmd.CombinedOutput()
	log := string(b)
	require.NoError(t, err, log)
	for _, name := range tests {
		require.Contains(t, log, "--- PASS: "+name, log)
	}
	require.Contains(t, log, "lens CPU emulator", "the emulated library was not the one loaded")
	t.Log(log)
}

// cudaInclude is the directory holding cuda.h: /usr/include or one named
// by -I in CGO_CFLAGS (how CI points at its unpacked copy).
func cudaInclude() string {
	dirs := []string{"/usr/include"}
	f := strings.Fields(os.Getenv("CGO_CFLAGS"))
	for i, s := range f {
		if d, ok := strings.CutPrefix(s, "-I"); ok {
			if d == "" && i+1 < len(f) {
				d = f[i+1]
			}
			dirs = append(dirs, d)
		}
	}
	for _, d := range dirs {
		if _, err := os.Stat(filepath.Join(d, "cuda.h")); err == nil {
			return d
		}
	}
	return ""
}
