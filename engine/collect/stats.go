package collect

import (
	"math"
	"sort"
)

func meanStd(x []float32) (float64, float64) {
	if len(x) == 0 {
		return 0, 0
	}
	var s, ss float64
	for _, v := range x {
		s += float64(v)
	}
	m := s / float64(len(x))
	for _, v := range x {
		d := float64(v) - m
		ss += d * d
	}
	return m, math.Sqrt(ss / float64(len(x)))
}

// rowNorm is the mean L2 norm of the rows of x (rows of width w).
func rowNorm(x []float32, w int) float64 {
	if w == 0 || len(x) == 0 {
		return 0
	}
	var total float64
	for r := 0; r+w <= len(x); r += w {
		total += norm(x[r : r+w])
	}
	return total / float64(len(x)/w)
}

func sparsity(x []float32) float64 {
	if len(x) == 0 {
		return 0
	}
	n := 0
	for _, v := range x {
		if math.Abs(float64(v)) < 1e-6 {
			n++
		}
	}
	return float64(n) / float64(len(x))
}

// updateRatio is ‖after−before‖/‖before‖.
func updateRatio(before, after []float32) float64 {
	b := norm(before)
	if b == 0 {
		return 0
	}
	return diffNorm(before, after) / b
}

// mulT is s·x·Bᵀ for x rows×r and B out×r.
func mulT(x, b []float32, rows, r, out int, s float32) []float32 {
	y := make([]float32, rows*out)
	for i := range rows {
		xr := x[i*r : (i+1)*r]
		for o := range out {
			br := b[o*r : (o+1)*r]
			var acc float32
			for k := range r {
				acc += xr[k] * br[k]
			}
			y[i*out+o] = s * acc
		}
	}
	return y
}

type summary struct {
	Mean, Std, RowNorm, Min, Max, Q05, Q50, Q95, Sparsity float64
	Hist                                                  []int
	Edges                                                 []float64
}

// summarize describes x (rows of width w) with a histogram of bins bins.
func summarize(x []float32, w, bins int) summary {
	s := summary{RowNorm: rowNorm(x, w), Sparsity: sparsity(x)}
	if len(x) == 0 {
		return s
	}
	s.Mean, s.Std = meanStd(x)
	sorted := make([]float64, len(x))
	for i, v := range x {
		sorted[i] = float64(v)
	}
	sort.Float64s(sorted)
	q := func(p float64) float64 { return sorted[int(math.Round(p*float64(len(sorted)-1)))] }
	s.Min, s.Max, s.Q05, s.Q50, s.Q95 = sorted[0], sorted[len(sorted)-1], q(0.05), q(0.5), q(0.95)
	s.Hist = make([]int, bins)
	s.Edges = make([]float64, bins+1)
	width := (s.Max - s.Min) / float64(bins)
	for i := range s.Edges {
		s.Edges[i] = s.Min + float64(i)*width
	}
	for _, v := range sorted {
		b := bins - 1
		if width > 0 {
			b = min(bins-1, int((v-s.Min)/width))
		}
		s.Hist[b]++
	}
	return s
}
