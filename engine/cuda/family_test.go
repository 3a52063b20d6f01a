//go:build lenscuda

package cuda

import (
	"testing"

	"lens/engine/accel/acceltest"
)

// TestFamilies: the step on the GPU computes rope_scaling, attention
// biases, Qwen3's q/k norms, Mistral's short sliding windows and Gemma 3's
// block (local and global layers), packed rows too, within 1e-3 of the
// graph. The kernels it adds (GeGLU, Scale, the norm offset, windowed and
// segmented attention with Gemma's scale) are in TestKernels.
func TestFamilies(t *testing.T) { acceltest.Families(t, open(t), 1e-3) }
