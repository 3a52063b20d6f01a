package tensorboard

import (
	"math"
	"sort"
)

// defaultLimits are TensorFlow's default histogram bucket limits
// (InitDefaultBucketsInner in tensorflow/core/lib/histogram/histogram.cc):
// ±1e-12·1.1^k up to 1e20, ±DBL_MAX at the ends and 0 in the middle. They
// are built by the same repeated multiplication, so the limits match TF's
// bit for bit.
var defaultLimits = func() []float64 {
	var pos []float64
	for v := 1e-12; v < 1e20; v *= 1.1 {
		pos = append(pos, v)
	}
	pos = append(pos, math.MaxFloat64)
	out := make([]float64, 0, 2*len(pos)+1)
	for i := len(pos) - 1; i >= 0; i-- {
		out = append(out, -pos[i])
	}
	out = append(out, 0)
	return append(out, pos...)
}()

// histogram is a HistogramProto's content. Bucket i counts the values in
// [limits[i-1], limits[i]) (from -DBL_MAX for i = 0).
type histogram struct {
	min, max, num, sum, sumSquares float64
	limits, counts                 []float64
}

// newHistogram bins the finite values over the default limits and returns
// how many values were left out for being NaN or infinite. Runs of empty
// buckets are collapsed into one, as TF's EncodeToProto does by default
// (preserve_zero_buckets=false): the file stays small and TensorBoard reads
// it the same way.
func newHistogram(values []float32) (*histogram, int) {
	counts := make([]float64, len(defaultLimits))
	h := &histogram{min: math.Inf(1), max: math.Inf(-1)}
	skipped := 0
	for _, f := range values {
		v := float64(f)
		if math.IsNaN(v) || math.IsInf(v, 0) {
			skipped++
			continue
		}
		// upper_bound, as TF: a value equal to a limit falls in the next bucket.
		i := sort.Search(len(defaultLimits), func(i int) bool { return defaultLimits[i] > v })
		counts[i]++
		h.min, h.max = min(h.min, v), max(h.max, v)
		h.num++
		h.sum += v
		h.sumSquares += v * v
	}
	for i := 0; i < len(counts); {
		end, c := defaultLimits[i], counts[i]
		i++
		if c == 0 {
			for i < len(counts) && counts[i] == 0 {
				end = defaultLimits[i]
				i++
			}
		}
		h.limits = append(h.limits, end)
		h.counts = append(h.counts, c)
	}
	return h, skipped
}
