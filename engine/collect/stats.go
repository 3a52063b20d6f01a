package collect

import (
	"math"
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
