package cuda

import (
	"bytes"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
)

// TestPTXUpToDate recompiles kernels.cu where nvcc is installed (Debian's
// nvidia-cuda-toolkit) and requires the checked-in kernels.ptx to match,
// so an edited kernel cannot ship with stale PTX. It needs no GPU and no
// build tag.
func TestPTXUpToDate(t *testing.T) {
	nvcc, err := exec.LookPath("nvcc")
	if err != nil {
		t.Skip("nvcc not installed (apt-get install nvidia-cuda-toolkit from non-free)")
	}
	// Read the sources here too: go test caches a result by the files the
	// test itself opens, and nvcc's reads would not count.
	for _, src := range []string{"kernels.cu", "family.cu", "quant.cu"} {
		if _, err := os.ReadFile(src); err != nil {
			t.Fatal(err)
		}
	}
	out := filepath.Join(t.TempDir(), "kernels.ptx")
	if b, err := exec.Command(nvcc, "-ptx", "-arch=compute_70", "-o", out, "kernels.cu").CombinedOutput(); err != nil {
		t.Fatalf("nvcc: %v\n%s", err, b)
	}
	want, err := os.ReadFile(out)
	if err != nil {
		t.Fatal(err)
	}
	have, err := os.ReadFile("kernels.ptx")
	if err != nil {
		t.Fatal(err)
	}
	if !bytes.Equal(want, have) {
		t.Fatal("kernels.ptx is stale: run go generate ./engine/cuda")
	}
}
