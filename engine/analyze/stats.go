package analyze

import (
	"fmt"
	"math"
	"slices"
)

// SparsityEps is the |x| below which an activation counts as zero.
const SparsityEps = 1e-6

// Histogram holds Counts[i] of values in [Edges[i], Edges[i+1]) (the last bin
// closed); len(Edges) = len(Counts)+1.
type Histogram struct {
	Edges  []float64
	Counts []int
}

// Stats summarises a tensor of activations.
type Stats struct {
	N             int
	Mean, Std     float64 // population standard deviation
	Norm          float64 // mean L2 norm of rows of the given width
	Min, Max      float64
	Q05, Q50, Q95 float64 // linear-interpolation quantiles (numpy default)
	FracZero      float64 // fraction with |x| < SparsityEps
	Hist          Histogram
}

// Summary computes Stats of x viewed as rows of width values (width ≤ 0: one
// row) with an equal-width histogram of bins bins over [Min, Max].
func Summary(x []float32, width, bins int) (Stats, error) {
	n := len(x)
	if n == 0 {
		return Stats{}, fmt.Errorf("summary: empty input")
	}
	if width <= 0 {
		width = n
	}
	if n%width != 0 || bins < 1 {
		return Stats{}, fmt.Errorf("summary: %d values, row width %d, %d bins: %w", n, width, bins, errShape)
	}
	// One pass for the moments and the range, a second for the centred
	// variance; no float64 copy of x (probe activations run to megabytes).
	s := Stats{N: n, Min: float64(x[0]), Max: float64(x[0])}
	var sum, zero float64
	for _, f := range x {
		v := float64(f)
		sum += v
		if math.Abs(v) < SparsityEps {
			zero++
		}
		s.Min, s.Max = min(s.Min, v), max(s.Max, v)
	}
	s.Mean = sum / float64(n)
	s.FracZero = zero / float64(n)
	var ss float64
	for _, f := range x {
		d := float64(f) - s.Mean
		ss += d * d
	}
	s.Std = math.Sqrt(ss / float64(n))
	for r := 0; r < n/width; r++ {
		s.Norm += norm2(x[r*width : (r+1)*width])
	}
	s.Norm /= float64(n / width)
	// Quantiles from an even-stride sample once the input is large: sorting
	// every activation of a probe batch would dominate a collector's cost.
	m := min(n, QuantileSample)
	q := make([]float64, m)
	for i := range q {
		q[i] = float64(x[i*n/m])
	}
	slices.Sort(q)
	s.Q05, s.Q50, s.Q95 = quantile(q, 0.05), quantile(q, 0.5), quantile(q, 0.95)
	s.Hist = histogram(x, s.Min, s.Max, bins)
	return s, nil
}

// QuantileSample is the largest input whose quantiles Summary computes
// exactly; above it they come from an even-stride sample of this size.
const QuantileSample = 1 << 14

// quantile returns the p-quantile of sorted v by linear interpolation
// between order statistics (Hyndman & Fan type 7).
func quantile(sorted []float64, p float64) float64 {
	h := p * float64(len(sorted)-1)
	lo := int(math.Floor(h))
	hi := min(lo+1, len(sorted)-1)
	return sorted[lo] + (h-float64(lo))*(sorted[hi]-sorted[lo])
}

// histogram bins values into bins equal-width bins over [lo, hi].
func histogram(values []float32, lo, hi float64, bins int) Histogram {
	h := Histogram{Edges: make([]float64, bins+1), Counts: make([]int, bins)}
	for i := range h.Edges {
		h.Edges[i] = lo + (hi-lo)*float64(i)/float64(bins)
	}
	h.Edges[bins] = hi
	for _, f := range values {
		b := 0
		if hi > lo {
			b = min(int((float64(f)-lo)/(hi-lo)*float64(bins)), bins-1)
		}
		h.Counts[b]++
	}
	return h
}

// DeadUnits counts the columns (units) of a rows×cols activation matrix whose
// |activation| ≤ thresh on every row.
func DeadUnits(acts []float32, rows, cols int, thresh float64) (int, error) {
	if rows <= 0 || cols <= 0 || len(acts) != rows*cols {
		return 0, fmt.Errorf("dead units: %d values for %d×%d: %w", len(acts), rows, cols, errShape)
	}
	dead := 0
	for j := 0; j < cols; j++ {
		alive := false
		for i := 0; i < rows && !alive; i++ {
			alive = math.Abs(float64(acts[i*cols+j])) > thresh
		}
		if !alive {
			dead++
		}
	}
	return dead, nil
}
