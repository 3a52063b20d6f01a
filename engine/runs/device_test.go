package runs

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/train"
	"lens/kv"
)

// hostBackend stands in for the CUDA backend in builds without it, so the
// device path (Resolve, Prepare, UseDevice, checkpoints, resume) runs end
// to end on any machine with accel's plain-Go kernels.
type hostBackend struct{}

func (hostBackend) Available() (bool, string)   { return true, "" }
func (hostBackend) Open() (accel.Device, error) { return accel.Host{}, nil }

// cpuAndCrashedDeviceRun trains the tiny spec for steps steps on the CPU,
// then again on "cuda" (the host stand-in where the real backend is
// absent) until it crashes after step crashAt; it returns both records.
func cpuAndCrashedDeviceRun(t *testing.T, steps, crashAt int) (*kv.Store, kv.RunMeta, kv.RunMeta) {
	t.Helper()
	if b, ok := accel.Lookup("cuda"); !ok {
		accel.Register("cuda", hostBackend{})
	} else if ok, why := b.Available(); !ok {
		t.Skipf("the cuda backend is built in but cannot run here: %s", why)
	}
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.Train.Steps = steps
	cpuJob, err := Prepare(spec, base)
	require.NoError(t, err)
	m1, err := cpuJob.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	spec.Device = "cuda"
	devJob, err := Prepare(spec, base)
	require.NoError(t, err)
	require.NotEqual(t, "cpu", devJob.Trainer.DeviceName())
	m2, err := devJob.Run(context.Background(), st, Options{Hooks: []train.Hooks{{AfterStep: func(tr *train.Trainer, s *train.StepInfo) error {
		if s.Step == crashAt {
			return errors.New("simulated crash")
		}
		return nil
	}}}})
	require.Error(t, err)
	return st, m1, m2
}

// TestDeviceRunMatchesCPU trains the same run on the CPU and on a "cuda"
// device (the host stand-in where the real backend is absent), the device
// run crashing at step 5 and resuming from its step-4 checkpoint: losses
// and the final adapter agree.
func TestDeviceRunMatchesCPU(t *testing.T) {
	st, m1, m2 := cpuAndCrashedDeviceRun(t, 8, 5)
	m2, err := Resume(context.Background(), st, m2.ID, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m2.Status)

	sameMetric(t, st, m1.ID, m2.ID, "loss")
	// Evaluation ran on the device too (Step.Loss), at steps 0, 2, 4, …
	sameMetric(t, st, m1.ID, m2.ID, "eval/opticks")
	_, a1, _, err := Weights(st, m1.ID, -1)
	require.NoError(t, err)
	_, a2, _, err := Weights(st, m2.ID, -1)
	require.NoError(t, err)
	for _, m := range a1.Modules {
		for _, pair := range [][2][]float32{{a1.A[m].Data, a2.A[m].Data}, {a1.B[m].Data, a2.B[m].Data}} {
			scale := 0.0
			for _, v := range pair[0] {
				scale = max(scale, math.Abs(float64(v)))
			}
			for i := range pair[0] {
				require.InDelta(t, pair[0][i], pair[1][i], 1e-3*scale, "%s[%d]", m, i)
			}
		}
	}
}

// TestResumeOnOtherDevice: a run trained on "cuda" that dies finishes on
// the CPU with Options.Device, and ends with the losses of a run that
// stayed on the CPU throughout.
func TestResumeOnOtherDevice(t *testing.T) {
	st, m1, m2 := cpuAndCrashedDeviceRun(t, 6, 3)
	var on string
	m2, err := Resume(context.Background(), st, m2.ID, Options{Device: "cpu", OnStart: func(_ string, tr *train.Trainer) error {
		on = tr.DeviceName()
		return nil
	}})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m2.Status)
	require.Equal(t, "cpu", on)
	sameMetric(t, st, m1.ID, m2.ID, "loss")
	_, err = Resume(context.Background(), st, m2.ID, Options{Device: "tpu"})
	require.ErrorContains(t, err, `device = "tpu"`)
}

// sameMetric requires two runs to have a metric at the same steps with
// values within 1e-4 relative.
func sameMetric(t *testing.T, st *kv.Store, id1, id2, name string) {
	t.Helper()
	a, err := st.ReadMetric(id1, name)
	require.NoError(t, err)
	b, err := st.ReadMetric(id2, name)
	require.NoError(t, err)
	require.NotEmpty(t, a, name)
	require.Len(t, b, len(a), name)
	for i := range a {
		require.Equal(t, a[i].Step, b[i].Step, name)
		require.InEpsilon(t, a[i].Value, b[i].Value, 1e-4, "%s at step %d", name, a[i].Step)
	}
}
