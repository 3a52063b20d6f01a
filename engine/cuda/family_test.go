//go:build lenscuda

package cuda

import (
	"testing"

	"lens/engine/accel/acceltest"
)

// TestFamilies: the step on the GPU computes rope_scaling, attention
// biases and Qwen3's q/k norms within 1e-3 of the graph.
func TestFamilies(t *testing.T) { acceltest.Families(t, open(t), 1e-3) }
