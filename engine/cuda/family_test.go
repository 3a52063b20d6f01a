//go:build lenscuda

package cuda

import (
	"os"
	"testing"

	"lens/engine/accel/acceltest"
)

// TestFamilies: the step on the GPU computes rope_scaling, attention
// biases, Qwen3's q/k norms, Mistral's short sliding windows and Gemma 3's
// block (local and global layers), packed rows too, within 1e-3 of the
// graph. The kernels it adds (GeGLU, Scale, the norm offset, windowed and
// segmented attention with Gemma's scale) are in TestKernels. Under the
// emulator, whose launches cost milliseconds, only the cases of the
// window and Gemma kernels run.
func TestFamilies(t *testing.T) {
	if os.Getenv("LENS_CUDA_EMULATED") != "" {
		acceltest.Families(t, open(t), 1e-3, "mistral window 8, packed rows", "gemma3_text local and global", "gemma3_text packed rows")
		return
	}
	acceltest.Families(t, open(t), 1e-3)
}
