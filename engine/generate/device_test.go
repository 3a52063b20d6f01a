package generate_test

import (
	"testing"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
)

// TestHostDecodeKernels: the Host's cached attention equals rows of the
// training attention; Copy copies ranges and refuses out-of-range ones.
func TestHostDecodeKernels(t *testing.T) { acceltest.DecodeKernels(t, accel.Host{}, 1e-5) }

// TestOnHost: decoding through the device path on accel.Host gives the
// CPU generator's tokens, with logits within 1e-4, for GQA and MQA models
// with and without an adapter.
func TestOnHost(t *testing.T) { acceltest.Decode(t, accel.Host{}, 1e-4, 40) }
