package analyze

import (
	"math"
	"slices"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestSummary(t *testing.T) {
	ramp := make([]float32, 101) // 0, 1, …, 100
	for i := range ramp {
		ramp[i] = float32(i)
	}
	s, err := Summary(ramp, 0, 10)
	require.NoError(t, err)
	assert.Equal(t, 101, s.N)
	assert.InDelta(t, 50, s.Mean, 1e-12)
	assert.InDelta(t, math.Sqrt((101*101-1)/12.0), s.Std, 1e-9)
	assert.Equal(t, 0.0, s.Min)
	assert.Equal(t, 100.0, s.Max)
	assert.InDelta(t, 5, s.Q05, 1e-12)
	assert.InDelta(t, 50, s.Q50, 1e-12)
	assert.InDelta(t, 95, s.Q95, 1e-12)
	assert.InDelta(t, 1.0/101, s.FracZero, 1e-12)
	assert.InDelta(t, float64(GlobalNorm(ramp)), s.Norm, 1e-9, "one row")
	require.Len(t, s.Hist.Edges, 11)
	assert.Equal(t, []int{10, 10, 10, 10, 10, 10, 10, 10, 10, 11}, s.Hist.Counts)
	assert.InDelta(t, 30, s.Hist.Edges[3], 1e-12)

	cases := []struct {
		name     string
		x        []float32
		width    int
		norm     float64
		fracZero float64
		q50      float64
	}{
		{"rows 3-4-5 and zero", []float32{3, 4, 0, 0}, 2, 2.5, 0.5, 1.5},
		{"sparse below 1e-6", []float32{1e-7, -1e-7, 1, 0}, 4, math.Sqrt(1 + 2e-14), 0.75, 5e-8},
		{"quantile interpolation", []float32{0, 10}, 1, 5, 0.5, 5},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			s, err := Summary(tc.x, tc.width, 4)
			require.NoError(t, err)
			assert.InDelta(t, tc.norm, s.Norm, 1e-6)
			assert.InDelta(t, tc.fracZero, s.FracZero, 1e-12)
			assert.InDelta(t, tc.q50, s.Q50, 1e-6)
			total := 0
			for _, c := range s.Hist.Counts {
				total += c
			}
			assert.Equal(t, len(tc.x), total)
			assert.True(t, slices.IsSorted(s.Hist.Edges))
		})
	}
	c, err := Summary([]float32{2, 2, 2}, 0, 3)
	require.NoError(t, err)
	assert.Equal(t, []int{3, 0, 0}, c.Hist.Counts, "constant input")
	assert.Equal(t, 0.0, c.Std)

	_, err = Summary(nil, 0, 3)
	assert.Error(t, err)
	_, err = Summary(ramp, 10, 3)
	assert.ErrorIs(t, err, errShape)
}

func TestDeadUnits(t *testing.T) {
	acts := []float32{
		1, 0, -2, 1e-9,
		0, 0, 0, -1e-9,
		3, 0, 0.5, 0,
	}
	cases := []struct {
		thresh float64
		want   int
	}{
		{0, 1},    // column 1 exactly zero
		{1e-6, 2}, // and column 3 is tiny
		{2, 3},    // column 0 peaks at 3, columns 1–3 at ≤ 2
	}
	for _, tc := range cases {
		got, err := DeadUnits(acts, 3, 4, tc.thresh)
		require.NoError(t, err)
		assert.Equal(t, tc.want, got, "thresh %g", tc.thresh)
	}
	got, err := DeadUnits(acts, 3, 4, 5)
	require.NoError(t, err)
	assert.Equal(t, 4, got)
	_, err = DeadUnits(acts, 4, 4, 0)
	assert.ErrorIs(t, err, errShape)
}
