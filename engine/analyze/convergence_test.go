package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestEMA(t *testing.T) {
	cases := []struct {
		name   string
		series []float64
		beta   float64
		want   []float64
	}{
		{"constant is unchanged from the first step", []float64{3, 3, 3}, 0.9, []float64{3, 3, 3}},
		{"bias-corrected by hand", []float64{1, 2}, 0.5, []float64{1, 1.25 / 0.75}},
		{"beta 0 is the identity", []float64{1, 5, 2}, 0, []float64{1, 5, 2}},
		{"empty", nil, 0.9, []float64{}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDeltaSlice(t, tc.want, EMA(tc.series, tc.beta), 1e-12)
		})
	}
}

func TestGLAndTrainingProgress(t *testing.T) {
	assert.InDeltaSlice(t, []float64{0, 0, 10, 0, 50}, GL([]float64{3, 2, 2.2, 1.8, 2.7}), 1e-9)
	p := TrainingProgress([]float64{2, 1, 1, 1}, 2)
	assert.True(t, math.IsNaN(p[0]))
	assert.InDeltaSlice(t, []float64{500, 0, 0}, p[1:], 1e-9)
	for _, v := range TrainingProgress([]float64{1, 2}, 3) {
		assert.True(t, math.IsNaN(v), "strip longer than the series")
	}
}

func TestEarlyStop(t *testing.T) {
	// Eval falls to 1.9 at index 9, then rises by 0.1 per entry; train falls
	// linearly, 10 − 0.1·t. Strips of k = 5 end at 4, 9, 14, 19.
	eval := []float64{10, 9, 8, 7, 6, 5, 4, 3, 2, 1.9, 2, 2.1, 2.2, 2.3, 2.4, 2.5, 2.6, 2.7, 2.8, 2.9}
	train := make([]float64, len(eval))
	for i := range train {
		train[i] = 10 - 0.1*float64(i)
	}
	// PQ at 14: GL = 100·(2.4/1.9 − 1), P_5 = 1000·(44/(5·8.6) − 1).
	pq14 := 100 * (2.4/1.9 - 1) / (1000 * (44/(5*8.6) - 1))
	pq19 := 100 * (2.9/1.9 - 1) / (1000 * (41.5/(5*8.1) - 1))
	falling := make([]float64, 20)
	for i := range falling {
		falling[i] = 5 - 0.1*float64(i)
	}
	cases := []struct {
		name    string
		eval    []float64
		alphaGL float64
		alphaPQ float64
		s       int
		want    []StopSignal
	}{
		{"all three", eval, 5, 1, 2, []StopSignal{{"GL", 10, 100 * (2/1.9 - 1)}, {"PQ", 14, pq14}, {"UP", 19, 2}}},
		{"stricter PQ, UP_1", eval, 20, 2, 1, []StopSignal{{"GL", 13, 100 * (2.3/1.9 - 1)}, {"PQ", 19, pq19}, {"UP", 14, 1}}},
		{"GL only", eval, 50, -1, 0, []StopSignal{{"GL", 19, 100 * (2.9/1.9 - 1)}}},
		{"still improving: nothing fires", falling, 0, 0, 1, nil},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := EarlyStop(train, tc.eval, 5, tc.alphaGL, tc.alphaPQ, tc.s)
			require.NoError(t, err)
			require.Len(t, got, len(tc.want))
			for i := range got {
				assert.Equal(t, tc.want[i].Criterion, got[i].Criterion)
				assert.Equal(t, tc.want[i].Index, got[i].Index, tc.want[i].Criterion)
				assert.InDelta(t, tc.want[i].Value, got[i].Value, 1e-9, tc.want[i].Criterion)
			}
		})
	}
	_, err := EarlyStop(train[:3], eval, 5, 1, 1, 1)
	assert.ErrorIs(t, err, errShape)
	_, err = EarlyStop(train, eval, 0, 1, 1, 1)
	assert.Error(t, err)
}

func TestFitPowerLaw(t *testing.T) {
	rng := rand.New(rand.NewPCG(51, 52))
	var ts, noisy, exact, linear []float64
	for s := 10; s <= 2000; s += 5 {
		x := float64(s)
		ts = append(ts, x)
		exact = append(exact, 2+3*math.Pow(x, -0.5))
		noisy = append(noisy, 2+3*math.Pow(x, -0.5)+0.01*rng.NormFloat64())
		linear = append(linear, 5-0.001*x+0.01*rng.NormFloat64())
	}
	t.Run("noisy power law recovers L∞ within its error", func(t *testing.T) {
		f, err := FitPowerLaw(ts, noisy)
		require.NoError(t, err)
		assert.True(t, f.Converged)
		assert.Less(t, f.LInfStdErr, 0.02)
		assert.Greater(t, f.LInfStdErr, 0.0)
		assert.InDelta(t, 2, f.LInf, 3*f.LInfStdErr)
		assert.InDelta(t, 0.5, f.B, 0.05)
		assert.InDelta(t, 0.01, f.RMSE, 0.002)
	})
	t.Run("exact power law", func(t *testing.T) {
		f, err := FitPowerLaw(ts, exact)
		require.NoError(t, err)
		assert.True(t, f.Converged)
		assert.InDelta(t, 2, f.LInf, 1e-6)
		assert.InDelta(t, 3, f.A, 1e-5)
		assert.InDelta(t, 0.5, f.B, 1e-6)
		assert.InDelta(t, 3/math.Sqrt(2000), f.Remaining, 1e-5)
	})
	t.Run("still-falling line is not converged", func(t *testing.T) {
		f, err := FitPowerLaw(ts, linear)
		require.NoError(t, err)
		assert.False(t, f.Converged)
	})
	errCases := []struct {
		name   string
		steps  []float64
		losses []float64
	}{
		{"length mismatch", ts, noisy[:10]},
		{"too few", ts[:4], noisy[:4]},
		{"non-positive step", []float64{0, 1, 2, 3, 4}, []float64{5, 4, 3, 2, 1}},
		{"NaN loss", []float64{1, 2, 3, 4, 5}, []float64{5, 4, math.NaN(), 2, 1}},
	}
	for _, tc := range errCases {
		_, err := FitPowerLaw(tc.steps, tc.losses)
		assert.Error(t, err, tc.name)
	}
}

func TestPlateau(t *testing.T) {
	rng := rand.New(rand.NewPCG(61, 62))
	const n = 600
	planted := make([]float64, n)
	curve := make([]float64, 2000)
	falling := make([]float64, n)
	flat := make([]float64, n)
	for i := range planted {
		base := 2.0
		if i < 300 {
			base = 3 - float64(i)/300
		}
		planted[i] = base + 0.01*rng.NormFloat64()
		falling[i] = 3 - float64(i)/300 + 0.01*rng.NormFloat64()
		flat[i] = 1 + 0.01*rng.NormFloat64()
	}
	for i := range curve {
		curve[i] = 2 + 3*math.Pow(float64(i+1), -0.5) + 0.01*rng.NormFloat64()
	}
	cases := []struct {
		name   string
		series []float64
		lo, hi int
	}{
		// Planted knee at 300; windows starting a few steps before it barely move.
		{"planted plateau at 300", planted, 275, 325},
		// Drift 1.5·t^−1.5·49 falls below 2σ = 0.02 near t ≈ 238.
		{"power-law curve", curve, 150, 400},
		{"still falling", falling, -1, -1},
		{"flat noise from the start", flat, 0, 0},
		{"noise-free constant", make([]float64, 100), 0, 0},
		{"shorter than the window", flat[:10], -1, -1},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := Plateau(tc.series, 50)
			assert.GreaterOrEqual(t, got, tc.lo)
			assert.LessOrEqual(t, got, tc.hi)
		})
	}
}
