package report

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"
)

func TestLinearTicks(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		target int
		vals   []float64
		labels []string
	}{
		{"narrow small range", 0.001, 0.0013, 5,
			[]float64{0.001, 0.0011, 0.0012, 0.0013},
			[]string{"0.0010", "0.0011", "0.0012", "0.0013"}},
		{"six decades", 1, 1e6, 5,
			[]float64{0, 2e5, 4e5, 6e5, 8e5, 1e6},
			[]string{"0", "2.0e5", "4.0e5", "6.0e5", "8.0e5", "1.0e6"}},
		{"straddles zero", -3, 5, 5,
			[]float64{-4, -2, 0, 2, 4, 6},
			[]string{"-4", "-2", "0", "2", "4", "6"}},
		{"reversed bounds", 5, -3, 5,
			[]float64{-4, -2, 0, 2, 4, 6},
			[]string{"-4", "-2", "0", "2", "4", "6"}},
		{"constant", 5, 5, 5,
			[]float64{4.4, 4.6, 4.8, 5, 5.2, 5.4, 5.6},
			[]string{"4.4", "4.6", "4.8", "5.0", "5.2", "5.4", "5.6"}},
		{"constant negative", -2, -2, 5,
			[]float64{-2.2, -2.1, -2, -1.9, -1.8},
			[]string{"-2.2", "-2.1", "-2.0", "-1.9", "-1.8"}},
		{"constant zero", 0, 0, 5,
			[]float64{-1, -0.5, 0, 0.5, 1},
			[]string{"-1.0", "-0.5", "0", "0.5", "1.0"}},
		{"nearly constant", 1, 1 + 1e-15, 5,
			[]float64{0.9, 0.95, 1, 1.05, 1.1},
			[]string{"0.90", "0.95", "1.00", "1.05", "1.10"}},
		{"steps", 0, 1000, 9,
			[]float64{0, 100, 200, 300, 400, 500, 600, 700, 800, 900, 1000},
			[]string{"0", "100", "200", "300", "400", "500", "600", "700", "800", "900", "1000"}},
		{"decimal accumulation", 0, 0.7, 8,
			[]float64{0, 0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7},
			[]string{"0", "0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7"}},
		{"tiny values", 1e-7, 3e-7, 3,
			[]float64{1e-7, 2e-7, 3e-7},
			[]string{"1e-7", "2e-7", "3e-7"}},
		{"NaN bound", math.NaN(), 1, 3,
			[]float64{0, 0.5, 1},
			[]string{"0", "0.5", "1.0"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := linearTicks(tt.lo, tt.hi, tt.target)
			assert.Equal(t, tt.vals, got.vals)
			assert.Equal(t, tt.labels, got.labels)
			assert.Equal(t, tt.vals[0], got.lo)
			assert.Equal(t, tt.vals[len(tt.vals)-1], got.hi)
			assert.False(t, got.log)
		})
	}
}

// TestLinearTickProperties checks, over many random ranges, that ticks cover
// the range, are evenly spaced with a 1-2-5 step, stay near the target count
// and have distinct labels.
func TestLinearTickProperties(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 2000 {
		scale := math.Pow(10, float64(r.IntN(24)-12))
		lo := (r.Float64()*2 - 1) * scale
		hi := lo + r.Float64()*scale*math.Pow(10, float64(r.IntN(5)-2))
		target := 2 + r.IntN(10)
		tk := linearTicks(lo, hi, target)
		require.GreaterOrEqual(t, len(tk.vals), 2)
		assert.LessOrEqual(t, tk.lo, lo, "[%g, %g]", lo, hi)
		assert.GreaterOrEqual(t, tk.hi, hi, "[%g, %g]", lo, hi)
		assert.LessOrEqual(t, len(tk.vals), 2*target+2, "[%g, %g] target %d", lo, hi, target)
		step := tk.vals[1] - tk.vals[0]
		m := step / math.Pow10(floorLog10(step))
		assert.True(t, math.Abs(m-1) < 1e-6 || math.Abs(m-2) < 1e-6 || math.Abs(m-5) < 1e-6 || math.Abs(m-10) < 1e-6, "step %g", step)
		seen := map[string]bool{}
		for i, v := range tk.vals {
			assert.InDelta(t, tk.vals[0]+float64(i)*step, v, step*1e-6)
			assert.False(t, seen[tk.labels[i]], "duplicate label %q in %v", tk.labels[i], tk.labels)
			seen[tk.labels[i]] = true
		}
	}
}

func TestLogTicks(t *testing.T) {
	tests := []struct {
		name   string
		lo, hi float64
		target int
		vals   []float64
		labels []string
	}{
		{"six decades", 1, 1e6, 10,
			[]float64{1, 10, 100, 1000, 1e4, 1e5, 1e6},
			[]string{"1", "10", "100", "1000", "1e4", "1e5", "1e6"}},
		{"six decades, few ticks", 1, 1e6, 4,
			[]float64{1, 100, 1e4, 1e6},
			[]string{"1", "100", "1e4", "1e6"}},
		{"inside one decade gets 2 and 5", 2, 8, 10,
			[]float64{1, 2, 5, 10},
			[]string{"1", "2", "5", "10"}},
		{"three decades get 2 and 5", 0.03, 4, 10,
			[]float64{0.01, 0.02, 0.05, 0.1, 0.2, 0.5, 1, 2, 5, 10},
			[]string{"0.01", "0.02", "0.05", "0.1", "0.2", "0.5", "1", "2", "5", "10"}},
		{"small values", 2e-6, 3e-3, 10,
			[]float64{1e-6, 1e-5, 1e-4, 1e-3, 1e-2},
			[]string{"1e-6", "1e-5", "1e-4", "0.001", "0.01"}},
		{"exact decade bounds", 0.001, 1000, 10,
			[]float64{0.001, 0.01, 0.1, 1, 10, 100, 1000},
			[]string{"0.001", "0.01", "0.1", "1", "10", "100", "1000"}},
		{"constant at a decade", 10, 10, 10,
			[]float64{1, 2, 5, 10, 20, 50, 100},
			[]string{"1", "2", "5", "10", "20", "50", "100"}},
		{"stride aligned below zero exponent", 3e-7, 2e4, 5,
			[]float64{1e-9, 1e-6, 1e-3, 1, 1e3, 1e6},
			[]string{"1e-9", "1e-6", "0.001", "1", "1000", "1e6"}},
		{"non-positive bound", 0, 5, 10,
			[]float64{1, 2, 5, 10},
			[]string{"1", "2", "5", "10"}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			got := logTicks(tt.lo, tt.hi, tt.target)
			assert.Equal(t, tt.vals, got.vals)
			assert.Equal(t, tt.labels, got.labels)
			assert.True(t, got.log)
			if tt.lo > 0 {
				assert.LessOrEqual(t, got.lo, tt.lo)
				assert.GreaterOrEqual(t, got.hi, tt.hi)
			}
			assert.InDelta(t, 0, got.frac(got.lo), 1e-12)
			assert.InDelta(t, 1, got.frac(got.hi), 1e-12)
		})
	}
}

func TestFloorLog10(t *testing.T) {
	tests := []struct {
		v    float64
		want int
	}{
		{1, 0}, {9.999, 0}, {10, 1}, {1000, 3}, {999.9999, 2}, {1e-3, -3}, {0.00099, -4}, {1e300, 300}, {1e-300, -300}, {3e-305, -305},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, floorLog10(tt.v), "%g", tt.v)
	}
}

func TestNumberFormatting(t *testing.T) {
	tests := []struct {
		v    float64
		prec int
		want string
	}{
		{1.23456, 3, "1.23"}, {1234567, 3, "1.23e6"}, {1.5e-7, 3, "1.5e-7"}, {0, 3, "0"},
		{math.NaN(), 3, "NaN"}, {math.Inf(1), 3, "+Inf"}, {math.Inf(-1), 3, "-Inf"}, {-0.5, 6, "-0.5"},
	}
	for _, tt := range tests {
		assert.Equal(t, tt.want, fmtNum(tt.v, tt.prec), "%g", tt.v)
	}
	assert.Equal(t, "1e5", tidyExp("1e+05"))
	assert.Equal(t, "2.5e-10", tidyExp("2.5e-10"))
	assert.Equal(t, "3", tidyExp("3e+00"))
	assert.Equal(t, "0", num(-0.04))
	assert.Equal(t, "12.3", num(12.34))
	assert.Equal(t, "-7", num(-7))
}
