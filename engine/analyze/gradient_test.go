package analyze

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestGlobalNorm(t *testing.T) {
	cases := []struct {
		name    string
		tensors [][]float32
		want    float64
	}{
		{"3-4-5 across tensors, not 3+4", [][]float32{{3}, {4}}, 5},
		{"one tensor", [][]float32{{1, 2, 2}}, 3},
		{"with empty", [][]float32{{}, {0, 5}, {12}}, 13},
		{"none", nil, 0},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.InDelta(t, tc.want, GlobalNorm(tc.tensors...), 1e-12)
		})
	}
}

func TestNoiseScaleExpectations(t *testing.T) {
	// With exact expectations E‖G_b‖² = ‖G‖² + trΣ/b the estimators are exact.
	cases := []struct{ g2, tr, b, B float64 }{
		{4, 100, 1, 8},
		{0.5, 3, 4, 64},
		{10, 0, 2, 3},
	}
	for _, tc := range cases {
		g2, tr, err := NoiseScale(tc.b, tc.g2+tc.tr/tc.b, tc.B, tc.g2+tc.tr/tc.B)
		require.NoError(t, err)
		assert.InDelta(t, tc.g2, g2, 1e-9)
		assert.InDelta(t, tc.tr, tr, 1e-9)
	}
	for _, bad := range [][2]float64{{4, 4}, {8, 4}, {0, 4}} {
		_, _, err := NoiseScale(bad[0], 1, bad[1], 1)
		assert.Error(t, err, "b=%g B=%g", bad[0], bad[1])
	}
}

func TestNoiseScaleEstimatorSynthetic(t *testing.T) {
	// Per-example gradients G + ξ, ξ ~ N(0, diag σ²): tr Σ = Σσ², ‖G‖² known.
	rng := rand.New(rand.NewPCG(31, 32))
	const d, steps = 200, 3000
	G := make([]float64, d)
	sigma := make([]float64, d)
	var g2, tr float64
	for k := range G {
		G[k] = 0.1 * float64(1+k%2)
		sigma[k] = 0.2 * float64(1+k%3)
		g2 += G[k] * G[k]
		tr += sigma[k] * sigma[k]
	}
	cases := []struct {
		name string
		b, B int
		beta float64
	}{
		{"micro-batch 1 of 8", 1, 8, 0.999},
		{"micro-batch 4 of 32", 4, 32, 0.999},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			est := NoiseScaleEstimator{Beta: tc.beta}
			_, ok := est.BSimple()
			assert.False(t, ok, "no data yet")
			small, big := make([]float64, d), make([]float64, d)
			for s := 0; s < steps; s++ {
				clear(small)
				clear(big)
				for e := 0; e < tc.B; e++ {
					for k := range big {
						x := G[k] + sigma[k]*rng.NormFloat64()
						big[k] += x / float64(tc.B)
						if e < tc.b {
							small[k] += x / float64(tc.b)
						}
					}
				}
				require.NoError(t, est.Add(float64(tc.b), sq(small), float64(tc.B), sq(big)))
			}
			got, ok := est.BSimple()
			require.True(t, ok)
			assert.InDelta(t, tr/g2, got, 0.1*tr/g2, "B_simple")
			assert.InDelta(t, g2, est.GradSq(), 0.1*g2)
			assert.InDelta(t, tr, est.TraceSigma(), 0.1*tr)
		})
	}
	bad := NoiseScaleEstimator{Beta: 1}
	assert.Error(t, bad.Add(1, 1, 2, 1))
}

func sq(x []float64) float64 {
	var s float64
	for _, v := range x {
		s += v * v
	}
	return s
}

func TestSpikes(t *testing.T) {
	rng := rand.New(rand.NewPCG(41, 42))
	noisy := make([]float64, 200)
	rising := make([]float64, 200)
	falling := make([]float64, 200)
	for i := range noisy {
		noisy[i] = 1 + 0.01*rng.NormFloat64()
		rising[i] = 0.5 + 0.01*float64(i) + 0.002*rng.NormFloat64()
		falling[i] = 5*math.Exp(-float64(i)/50) + 0.01*rng.NormFloat64()
	}
	withSpike := func(x []float64, at int, v float64) []float64 {
		y := append([]float64(nil), x...)
		y[at] += v
		return y
	}
	cases := []struct {
		name   string
		series []float64
		want   []int
	}{
		{"planted spike in noise", withSpike(noisy, 120, 1), []int{120}},
		{"two spikes, the first does not mask the second", withSpike(withSpike(noisy, 60, 0.5), 63, 0.5), []int{60, 63}},
		{"spike on a rising trend", withSpike(rising, 150, 1), []int{150}},
		{"smooth rising trend", rising, nil},
		{"smooth falling curve", falling, nil},
		{"constant with spike", withSpike(make([]float64, 50), 30, 1e-3), []int{30}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			assert.Equal(t, tc.want, Spikes(tc.series, 20, 6))
		})
	}
	assert.Nil(t, Spikes(noisy, 1, 6))
}

func TestConsistency(t *testing.T) {
	a := []float32{1, 2, 3}
	na := []float32{-1, -2, -3}
	cases := []struct {
		name  string
		grads [][]float32
		want  float64
	}{
		{"identical", [][]float32{a, a, a}, 1},
		{"alternating", [][]float32{a, na, a}, -1},
		{"orthogonal", [][]float32{{1, 0}, {0, 1}, {1, 0}}, 0},
		{"one flip", [][]float32{a, a, na}, 0},
		{"45 degrees", [][]float32{{1, 0}, {1, 1}}, 1 / math.Sqrt2},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, err := Consistency(tc.grads)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-7)
		})
	}
	_, err := Consistency([][]float32{a})
	assert.Error(t, err)
	_, err = Consistency([][]float32{a, {1}})
	assert.ErrorIs(t, err, errShape)
}

func TestUpdateRatio(t *testing.T) {
	cases := []struct {
		name          string
		before, after []float32
		want          float64
		relative      bool
	}{
		{"1e-3 step", []float32{3, 4}, []float32{3.003, 4.004}, 1e-3, true},
		{"no change", []float32{1, 1}, []float32{1, 1}, 0, true},
		{"B from zero: absolute", []float32{0, 0}, []float32{0.03, 0.04}, 0.05, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got, rel, err := UpdateRatio(tc.before, tc.after)
			require.NoError(t, err)
			assert.InDelta(t, tc.want, got, 1e-6)
			assert.Equal(t, tc.relative, rel)
		})
	}
	_, _, err := UpdateRatio([]float32{1}, []float32{1, 2})
	assert.ErrorIs(t, err, errShape)
}
