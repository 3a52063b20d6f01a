package analyze

import (
	"gonum.org/v1/gonum/mat"
)

// LinearCKA is linear centred kernel alignment (Kornblith et al. 2019) between
// X (n×p1) and Y (n×p2), row-major with one example per row:
// ‖YᵀX‖_F² / (‖XᵀX‖_F ‖YᵀY‖_F) after centring the columns. 0 when either
// centred matrix is zero.
func LinearCKA(X, Y []float64, n, p1, p2 int) (float64, error) {
	x, err := dense64("linear CKA: X", X, n, p1)
	if err != nil {
		return 0, err
	}
	y, err := dense64("linear CKA: Y", Y, n, p2)
	if err != nil {
		return 0, err
	}
	centre(x)
	centre(y)
	var yx, xx, yy mat.Dense
	yx.Mul(y.T(), x)
	xx.Mul(x.T(), x)
	yy.Mul(y.T(), y)
	den := mat.Norm(&xx, 2) * mat.Norm(&yy, 2)
	if den == 0 {
		return 0, nil
	}
	num := mat.Norm(&yx, 2)
	return num * num / den, nil
}

// centre subtracts each column's mean in place.
func centre(m *mat.Dense) {
	r, c := m.Dims()
	for j := 0; j < c; j++ {
		var mean float64
		for i := 0; i < r; i++ {
			mean += m.At(i, j)
		}
		mean /= float64(r)
		for i := 0; i < r; i++ {
			m.Set(i, j, m.At(i, j)-mean)
		}
	}
}
