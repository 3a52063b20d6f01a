package analyze

import (
	"fmt"
	"math"
	"math/rand/v2"
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
	s.Q05, s.Q50, s.Q95 = exactQuantiles3(x, 0.05, 0.5, 0.95)
	s.Hist = histogram(x, s.Min, s.Max, bins)
	return s, nil
}

// exactQuantiles3 returns the p1 ≤ p2 ≤ p3 quantiles of x (type 7, as
// quantile) by selection on a float32 copy, in expected linear time: each
// quantile needs the order statistics k and k+1, and after selecting k the
// (k+1)-th is the minimum of what lies right of it, so the next selection
// only searches that part. A strided sample read a fixed set of columns
// of a row-major activation (every 8th key position of an attention
// pattern), so it is not used however large the input.
func exactQuantiles3(x []float32, p1, p2, p3 float64) (float64, float64, float64) {
	a := slices.Clone(x)
	var out [3]float64
	lo := 0 // a[:lo] holds only values ≤ a[lo-1], all selected already
	for i, p := range []float64{p1, p2, p3} {
		h := p * float64(len(a)-1)
		k := int(math.Floor(h))
		if k >= lo {
			selectKth(a[lo:], k-lo)
			lo = k
		}
		v := float64(a[k])
		if k+1 < len(a) && h > float64(k) {
			next := a[k+1]
			for _, w := range a[k+1:] {
				if less32(w, next) {
					next = w
				}
			}
			v += (h - float64(k)) * (float64(next) - v)
		}
		out[i] = v
	}
	return out[0], out[1], out[2]
}

// less32 orders float32s as slices.Sort does: NaN before every number.
func less32(a, b float32) bool { return a < b || (a != a && b == b) }

// selectKth reorders a so that a[k] is the value sorting would put there,
// with no larger value before it and no smaller one after it. Pivots are
// the median of three positions drawn from a fixed-seed generator (the
// result does not depend on them; only the time does) and the partition
// is three-way, so the many equal values of masked attention patterns or
// dead units cost one pass.
func selectKth(a []float32, k int) {
	rng := rand.New(rand.NewPCG(0x5e1ec7, uint64(len(a))))
	for len(a) > 1 {
		p := median3(a[rng.IntN(len(a))], a[rng.IntN(len(a))], a[rng.IntN(len(a))])
		// a[:lt] < p, a[lt:i] == p, a[gt:] > p.
		lt, i, gt := 0, 0, len(a)
		for i < gt {
			switch v := a[i]; {
			case less32(v, p):
				a[lt], a[i] = a[i], a[lt]
				lt++
				i++
			case less32(p, v):
				gt--
				a[i], a[gt] = a[gt], a[i]
			default:
				i++
			}
		}
		switch {
		case k < lt:
			a = a[:lt]
		case k >= gt:
			a, k = a[gt:], k-gt
		default:
			return
		}
	}
}

func median3(a, b, c float32) float32 {
	if less32(b, a) {
		a, b = b, a
	}
	if less32(c, b) {
		b = c
		if less32(b, a) {
			b = a
		}
	}
	return b
}

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
