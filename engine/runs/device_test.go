package runs

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/collect"
	"lens/engine/train"
	"lens/kv"
)

// hostBackend stands in for the CUDA backend in builds without it, so the
// device path (Resolve, Prepare, UseDevice, checkpoints, resume) runs end
// to end on any machine with accel's plain-Go kernels.
type hostBackend struct{}

func (hostBackend) Available() (bool, string)   { return true, "" }
func (hostBackend) Open() (accel.Device, error) { return accel.Host{}, nil }

// useHostAsCUDA registers the host stand-in as "cuda" unless the real
// backend is built in (then the test runs on it, or skips without a GPU).
func useHostAsCUDA(t *testing.T) {
	t.Helper()
	if b, ok := accel.Lookup("cuda"); !ok {
		accel.Register("cuda", hostBackend{})
	} else if ok, why := b.Available(); !ok {
		t.Skipf("the cuda backend is built in but cannot run here: %s", why)
	}
}

// cpuAndCrashedDeviceRun trains the tiny spec for steps steps on the CPU,
// then again on "cuda" (the host stand-in where the real backend is
// absent) until it crashes after step crashAt; it returns both records.
func cpuAndCrashedDeviceRun(t *testing.T, steps, crashAt int) (*kv.Store, kv.RunMeta, kv.RunMeta) {
	t.Helper()
	useHostAsCUDA(t)
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

// TestDeviceCollectorsMatchCPU: on a device the probe-batch collectors
// read the device's activations (a forward-only step beside the training
// step) and store what the CPU run stores: every hook point, the same
// statistics, the same LoRA norms.
func TestDeviceCollectorsMatchCPU(t *testing.T) {
	useHostAsCUDA(t)
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.Train.Steps, spec.ProbeBatch = 4, 3
	spec.Collect = []collect.Spec{{Name: "lora_activations", Every: 2},
		{Name: "activations", Every: 2, Options: map[string]any{"hooks": []any{"*"}}}}
	var ids []string
	for _, dev := range []string{"cpu", "cuda"} {
		spec.Device = dev
		job, err := Prepare(spec, base)
		require.NoError(t, err)
		m, err := job.Run(context.Background(), st, Options{})
		require.NoError(t, err)
		ids = append(ids, m.ID)
	}
	la, err := collect.Read[collect.LoRAActivation](st, ids[0], "lora_activations")
	require.NoError(t, err)
	lb, err := collect.Read[collect.LoRAActivation](st, ids[1], "lora_activations")
	require.NoError(t, err)
	require.Equal(t, 2*4, len(la)) // steps 2 and 4 × 2 layers × q, v
	require.Equal(t, len(la), len(lb))
	for i := range la {
		a, b := la[i], lb[i]
		require.Equal(t, [2]any{a.Step, a.Name}, [2]any{b.Step, b.Name})
		for _, f := range [][2]float64{{a.Value.InNorm, b.Value.InNorm}, {a.Value.MidNorm, b.Value.MidNorm},
			{a.Value.LoRANorm, b.Value.LoRANorm}, {a.Value.BaseNorm, b.Value.BaseNorm}} {
			require.Greater(t, f[0], 0.0, "%s at step %d", a.Name, a.Step)
			require.InEpsilon(t, f[0], f[1], 1e-4, "%s at step %d", a.Name, a.Step)
		}
	}
	aa, err := collect.Read[collect.ActivationStats](st, ids[0], "activations")
	require.NoError(t, err)
	ab, err := collect.Read[collect.ActivationStats](st, ids[1], "activations")
	require.NoError(t, err)
	// 2 steps × (embed, final norm, and per layer 14 block hooks, the
	// pattern and 7 linear modules' in and out).
	require.Equal(t, 2*(2+2*(14+1+14)), len(aa))
	require.Equal(t, len(aa), len(ab))
	for i := range aa {
		a, b := aa[i], ab[i]
		require.Equal(t, [2]any{a.Step, a.Name}, [2]any{b.Step, b.Name})
		for _, f := range [][2]float64{{a.Value.Mean, b.Value.Mean}, {a.Value.Std, b.Value.Std},
			{a.Value.RowNorm, b.Value.RowNorm}, {a.Value.Min, b.Value.Min}, {a.Value.Max, b.Value.Max}} {
			require.InDelta(t, f[0], f[1], 1e-4*(math.Abs(f[0])+a.Value.Std), "%s at step %d", a.Name, a.Step)
		}
	}
}
