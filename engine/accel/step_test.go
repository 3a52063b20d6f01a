package accel_test

import (
	"runtime"
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

// Full fine-tuning on the device: the loss and every weight's gradient
// (embedding, tied or untied head, norms, every linear) match the graph
// built with trainBase.
func TestFullStepMatchesGraph(t *testing.T) {
	acceltest.FullStep(t, accel.Host{}, 1e-4)
}

func TestNewStepWantsAdapters(t *testing.T) {
	m, _ := acceltest.Model(t)
	_, err := accel.NewStep(accel.Host{}, m, nil, 1, 8)
	if err == nil || !strings.Contains(err.Error(), "NewFullStep") {
		t.Fatalf("NewStep without adapters: %v, want an error naming NewFullStep", err)
	}
}

func TestOpenUnknownBackend(t *testing.T) {
	_, err := accel.Open("tpu")
	if err == nil || !strings.Contains(err.Error(), `no backend "tpu"`) {
		t.Fatalf("Open(tpu): %v", err)
	}
}

// The kernel harness passes the reference against itself and catches a
// device whose kernel is slightly wrong, so a failure on a GPU points at
// the GPU's kernel, not at the harness.
func TestKernelHarness(t *testing.T) {
	acceltest.Kernels(t, accel.Host{}, 1e-6)
	for _, bad := range []string{"gemm", "attention", "adamw"} {
		r := &recorder{TB: t}
		done := make(chan struct{})
		go func() {
			defer close(done)
			acceltest.Kernels(r, skewed{Host: accel.Host{}, kernel: bad}, 1e-4)
		}()
		<-done
		if !r.failed {
			t.Errorf("the harness passed a device whose %s is off by 1%%", bad)
		}
	}
}

// recorder is a testing.TB that records failures instead of ending the
// test (FailNow ends only the goroutine the harness runs in).
type recorder struct {
	testing.TB
	failed bool
}

func (r *recorder) Errorf(string, ...any) { r.failed = true }
func (r *recorder) Fatalf(string, ...any) { r.failed = true; runtime.Goexit() }
func (r *recorder) Fail()                 { r.failed = true }
func (r *recorder) FailNow()              { r.failed = true; runtime.Goexit() }
func (r *recorder) Failed() bool          { return r.failed }
func (r *recorder) Helper()               {}

// skewed is the host device with one kernel's output scaled by 1.01.
type skewed struct {
	accel.Host
	kernel string
}

func (s skewed) scale(b accel.Buf) {
	v := make([]float32, b.Len())
	_ = s.Host.Download(v, b)
	for i := range v {
		v[i] *= 1.01
	}
	_ = s.Host.Upload(b, v)
}

func (s skewed) Gemm(ta, tb bool, m, n, k int, alpha float32, a accel.Buf, lda int, b accel.Buf, ldb int, beta float32, c accel.Buf, ldc int) error {
	err := s.Host.Gemm(ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, c, ldc)
	if s.kernel == "gemm" {
		s.scale(c)
	}
	return err
}

func (s skewed) Attention(out, p, q, k, v accel.Buf, a accel.Attn) error {
	err := s.Host.Attention(out, p, q, k, v, a)
	if s.kernel == "attention" {
		s.scale(out)
	}
	return err
}

func (s skewed) AdamW(p, g, m, v accel.Buf, n int, h accel.AdamParams) error {
	err := s.Host.AdamW(p, g, m, v, n, h)
	if s.kernel == "adamw" {
		s.scale(p)
	}
	return err
}

// The collectors' probe on a forward-only step reads the graph's hook
// points: same names, shapes and values.
func TestProbeMatchesGraph(t *testing.T) { acceltest.Probe(t, accel.Host{}, 1e-4) }

// QLoRA on the device: over nf4, nf4-dq and bf16 bases (Llama tied and
// untied, Qwen2, Qwen3) the step's loss and LoRA gradients match the graph
// over the same packed model, and checkpointing changes no bit.
func TestQuantStepMatchesGraph(t *testing.T) { acceltest.QuantStep(t, accel.Host{}, 1e-4, true) }
