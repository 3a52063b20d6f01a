package accel_test

import (
	"testing"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
)

// TestStepFamilies runs acceltest.Families on the host device: loss and
// every gradient within 1e-4 of the graph's for rope_scaling, attention
// biases and Qwen3's q/k norms; Gemma and short windows refused.
func TestStepFamilies(t *testing.T) { acceltest.Families(t, accel.Host{}, 1e-4) }
