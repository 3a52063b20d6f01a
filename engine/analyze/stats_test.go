package analyze

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
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

// TestSummaryQuantilesExact: quantiles are exact at every size (they came
// from a strided sample above 16,384 values, whose stride fits the row
// width, so a 512×128 activation read only every 4th column). Checked
// against a full sort with type-7 interpolation on random, tied, NaN-free
// inputs, and against numpy.quantile when /usr/bin/python3 has numpy.
func TestSummaryQuantilesExact(t *testing.T) {
	rng := rand.New(rand.NewPCG(7, 8))
	columns := make([]float32, 512*128) // columns ≡ 0 mod 4 are zero, the rest ~N(3, 1)
	for i := range columns {
		if i%128%4 != 0 {
			columns[i] = float32(3 + rng.NormFloat64())
		}
	}
	causal := make([]float32, 4*128*128) // attention pattern: zeros above the diagonal
	for h := range 4 {
		for q := range 128 {
			for k := 0; k <= q; k++ {
				causal[(h*128+q)*128+k] = float32(1 / float64(q+1))
			}
		}
	}
	normal := make([]float32, 100003)
	for i := range normal {
		normal[i] = float32(rng.NormFloat64())
	}
	ties := make([]float32, 40000)
	for i := range ties {
		ties[i] = float32(rng.IntN(3))
	}
	names := []string{"one", "two", "columns", "causal pattern", "normal", "ties"}
	inputs := [][]float32{{4}, {1, -1}, columns, causal, normal, ties}
	ps := []float64{0.05, 0.5, 0.95}
	ref := numpyQuantiles(t, inputs, ps)
	for c, name := range names {
		t.Run(name, func(t *testing.T) {
			x := inputs[c]
			s, err := Summary(x, 0, 4)
			require.NoError(t, err)
			sorted := make([]float64, len(x))
			for i, v := range x {
				sorted[i] = float64(v)
			}
			slices.Sort(sorted)
			got := []float64{s.Q05, s.Q50, s.Q95}
			for i, p := range ps {
				require.Equal(t, quantile(sorted, p), got[i], "q%.2f", p)
				if ref != nil {
					require.InDelta(t, ref[c][i], got[i], 1e-12*max(1, math.Abs(ref[c][i])), "numpy q%.2f", p)
				}
			}
		})
	}
	// The strided sample's answer on the column case: the median of a
	// matrix three quarters ~N(3, 1) is near 2.7, not 0.
	s, err := Summary(columns, 128, 4)
	require.NoError(t, err)
	require.Greater(t, s.Q50, 2.0)
}

// numpyQuantiles returns numpy.quantile(x, ps) (linear, numpy's default)
// of each input, or nil when /usr/bin/python3 lacks numpy.
func numpyQuantiles(t *testing.T, inputs [][]float32, ps []float64) [][]float64 {
	if exec.Command("/usr/bin/python3", "-c", "import numpy").Run() != nil {
		t.Log("skipping the numpy cross-check: /usr/bin/python3 with numpy not found (apt-get install python3-numpy)")
		return nil
	}
	var files []string
	for k, x := range inputs {
		f := filepath.Join(t.TempDir(), fmt.Sprintf("x%d.f32", k))
		buf := make([]byte, 4*len(x))
		for i, v := range x {
			binary.LittleEndian.PutUint32(buf[4*i:], math.Float32bits(v))
		}
		require.NoError(t, os.WriteFile(f, buf, 0o644))
		files = append(files, f)
	}
	fs, _ := json.Marshal(files)
	pj, _ := json.Marshal(ps)
	script := fmt.Sprintf("import numpy as np, json\nprint(json.dumps([np.quantile(np.fromfile(f, dtype='<f4').astype(np.float64), %s).tolist() for f in %s]))", pj, fs)
	out, err := exec.Command("/usr/bin/python3", "-c", script).Output()
	require.NoError(t, err)
	var ref [][]float64
	require.NoError(t, json.Unmarshal(out, &ref))
	return ref
}
