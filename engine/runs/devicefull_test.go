package runs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// Full training runs on a device (the host stand-in for "cuda" where the
// backend is absent) and ends with the CPU run's losses and weights.
func TestFullTrainingOnDevice(t *testing.T) {
	useHostAsCUDA(t)
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.LoRA, spec.Train.Steps = nil, 6
	cpu, err := Prepare(spec, base)
	require.NoError(t, err)
	m1, err := cpu.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	spec.Device, spec.Name = "cuda", "t-cuda"
	dev, err := Prepare(spec, base)
	require.NoError(t, err)
	m2, err := dev.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m2.Status)
	sameMetric(t, st, m1.ID, m2.ID, "loss")
	sameMetric(t, st, m1.ID, m2.ID, "eval/opticks")
	w1, _, _, err := Weights(st, m1.ID, -1)
	require.NoError(t, err)
	w2, _, _, err := Weights(st, m2.ID, -1)
	require.NoError(t, err)
	for _, n := range w1.Names() {
		a, b := w1.Weights[n].Data, w2.Weights[n].Data
		for i := range a {
			require.InDelta(t, a[i], b[i], 1e-4, "%s[%d]", n, i)
		}
	}
}
