package analyze

import (
	"fmt"
	"math"

	"gonum.org/v1/gonum/mat"
)

// IntruderDimensions counts intruder dimensions (Shuttleworth et al. 2024,
// arXiv 2410.21228): for each of the top-k left singular vectors u_i of the
// fine-tuned W1 (rows×cols), sims[i] = max_j |cos(u_i, u⁰_j)| over all (thin)
// left singular vectors of W0; u_i is an intruder when sims[i] < eps.
func IntruderDimensions(W0, W1 []float32, rows, cols, k int, eps float64) (count int, sims []float64, err error) {
	w0, err := dense32("intruder dimensions: W0", W0, rows, cols)
	if err != nil {
		return 0, nil, err
	}
	w1, err := dense32("intruder dimensions: W1", W1, rows, cols)
	if err != nil {
		return 0, nil, err
	}
	if k < 1 || k > min(rows, cols) {
		return 0, nil, fmt.Errorf("intruder dimensions: k=%d outside 1..%d: %w", k, min(rows, cols), errShape)
	}
	_, u0, _, err := thinSVD(w0)
	if err != nil {
		return 0, nil, fmt.Errorf("intruder dimensions: W0: %w", err)
	}
	_, u1, _, err := thinSVD(w1)
	if err != nil {
		return 0, nil, fmt.Errorf("intruder dimensions: W1: %w", err)
	}
	var c mat.Dense
	c.Mul(leadingCols(u1, k).T(), u0)
	_, n0 := c.Dims()
	sims = make([]float64, k)
	for i := 0; i < k; i++ {
		for j := 0; j < n0; j++ {
			sims[i] = math.Max(sims[i], math.Abs(c.At(i, j)))
		}
		if sims[i] < eps {
			count++
		}
	}
	return count, sims, nil
}
