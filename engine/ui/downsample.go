package ui

import (
	"math"
	"sort"

	"lens/kv"
)

// Downsample reduces the points of pts whose step lies in [from, to] to at
// most about 2·buckets points, for a chart buckets pixels wide: the range is
// cut into buckets of equal step width and each keeps its minimum and
// maximum value in step order (so spikes survive, unlike averaging), plus
// the first and last point. Non-finite values are kept once per bucket so
// gaps stay visible. With 2·buckets points or fewer in range, they are
// returned as they are. One point on each side of the range is added when
// it exists, so a zoomed line runs to the chart's edges. pts must be sorted
// by step, as kv.ReadMetric returns them.
func Downsample(pts []kv.Point, from, to float64, buckets int) []kv.Point {
	lo := sort.Search(len(pts), func(i int) bool { return float64(pts[i].Step) >= from })
	hi := sort.Search(len(pts), func(i int) bool { return float64(pts[i].Step) > to })
	if lo > 0 {
		lo--
	}
	if hi < len(pts) {
		hi++
	}
	in := pts[lo:hi]
	if buckets < 1 || len(in) <= 2*buckets {
		return append([]kv.Point(nil), in...)
	}
	first, last := float64(in[0].Step), float64(in[len(in)-1].Step)
	width := (last - first) / float64(buckets)
	out := make([]kv.Point, 0, 2*buckets+2)
	out = append(out, in[0])
	i := 1
	for b := 0; b < buckets && i < len(in)-1; b++ {
		end := first + width*float64(b+1)
		minI, maxI, bad := -1, -1, -1
		for ; i < len(in)-1 && (float64(in[i].Step) < end || b == buckets-1); i++ {
			v := in[i].Value
			switch {
			case math.IsNaN(v) || math.IsInf(v, 0):
				if bad < 0 {
					bad = i
				}
			case minI < 0:
				minI, maxI = i, i
			case v < in[minI].Value:
				minI = i
			case v > in[maxI].Value:
				maxI = i
			}
		}
		keep := []int{minI, maxI, bad}
		sort.Ints(keep)
		prev := -1
		for _, k := range keep {
			if k >= 0 && k != prev {
				out = append(out, in[k])
				prev = k
			}
		}
	}
	return append(out, in[len(in)-1])
}
