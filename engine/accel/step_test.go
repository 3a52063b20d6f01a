package accel_test

import (
	"strings"
	"testing"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
)

// The device step's layout (which kernel, which buffer, which transpose)
// matches the gorgonia graph on the host reference kernels; a backend
// then only has to match the host kernel by kernel.
func TestStepMatchesGraph(t *testing.T) {
	acceltest.Step(t, accel.Host{}, 1e-4)
}

func TestNewStepRefusesFullTraining(t *testing.T) {
	m, _ := acceltest.Model(t)
	_, err := accel.NewStep(accel.Host{}, m, nil, 1, 8)
	if err == nil || !strings.Contains(err.Error(), "full fine-tuning") {
		t.Fatalf("NewStep without adapters: %v, want a full fine-tuning error", err)
	}
}

func TestOpenUnknownBackend(t *testing.T) {
	_, err := accel.Open("tpu")
	if err == nil || !strings.Contains(err.Error(), `no backend "tpu"`) {
		t.Fatalf("Open(tpu): %v", err)
	}
}
