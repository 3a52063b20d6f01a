package train

import (
	"math"
	"testing"

	"github.com/stretchr/testify/require"
)

func TestSchedules(t *testing.T) {
	c := Config{Steps: 110, LR: 1, Warmup: 10, MinLRRatio: 0.1}
	for _, tc := range []struct {
		schedule string
		step     int
		want     float64
	}{
		{"cosine", 0, 0.1},  // warmup: (step+1)/warmup
		{"cosine", 9, 1.0},  // end of warmup
		{"cosine", 10, 1.0}, // decay starts at the peak
		{"cosine", 60, 0.1 + 0.9*0.5},
		{"cosine", 110, 0.1},
		{"linear", 60, 0.1 + 0.9*0.5},
		{"linear", 35, 0.1 + 0.9*0.75},
		{"constant", 100, 1.0},
	} {
		c.Schedule = tc.schedule
		require.InDelta(t, tc.want, c.LRAt(tc.step), 1e-12, "%s at %d", tc.schedule, tc.step)
	}
}

func TestConfigErrors(t *testing.T) {
	for _, tc := range []struct {
		edit func(*Config)
		want string
	}{
		{func(c *Config) { c.Steps = -1 }, "steps = -1"},
		{func(c *Config) { c.LR = -1 }, "lr = -1"},
		{func(c *Config) { c.Beta2 = 1 }, "beta"},
		{func(c *Config) { c.Schedule = "exp" }, "schedule"},
		{func(c *Config) { c.Warmup = -3 }, "warmup"},
		{func(c *Config) { c.ClipNorm = math.NaN() }, "clip_norm"},
	} {
		c := Defaults()
		tc.edit(&c)
		require.ErrorContains(t, c.Validate(), tc.want)
	}
	require.NoError(t, Defaults().Validate())
}

// TestAdamWStep checks one update against the formulas of Loshchilov &
// Hutter (decoupled decay) with bias-corrected moments, computed here in
// float64 by hand, including clipping's gradient scale and LoRA+'s ratio.
func TestAdamWStep(t *testing.T) {
	c := Config{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, WeightDecay: 0.1}
	tr := &Trainer{Config: c}
	p := &Param{Data: []float32{1, -2, 0.5}, Grad: []float32{0.3, -0.1, 0}, M: make([]float32, 3), V: make([]float32, 3), LRScale: 2, Decay: true}
	tr.Params = []*Param{p}
	w0 := []float64{1, -2, 0.5}
	g := []float64{0.3, -0.1, 0}
	const lr, scale = 0.01, 0.5
	tr.adamw(lr, scale)
	for i := range w0 {
		gi := g[i] * scale
		m := (1 - 0.9) * gi
		v := (1 - 0.99) * gi * gi
		mh, vh := m/(1-0.9), v/(1-0.99)
		plr := lr * 2
		want := w0[i]*(1-plr*0.1) - plr*mh/(math.Sqrt(vh)+1e-8)
		require.InDelta(t, want, float64(p.Data[i]), 1e-6, "weight %d", i)
		require.InDelta(t, m, float64(p.M[i]), 1e-7)
		require.InDelta(t, v, float64(p.V[i]), 1e-9+1e-6*v)
	}
}
