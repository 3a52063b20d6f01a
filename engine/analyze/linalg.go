package analyze

import (
	"errors"
	"fmt"
	"math"

	"gonum.org/v1/gonum/blas/blas64"
	"gonum.org/v1/gonum/lapack/lapack64"
	"gonum.org/v1/gonum/mat"
)

// errShape reports inconsistent dimensions.
var errShape = errors.New("analyze: shape mismatch")

// dense32 copies a row-major rows×cols float32 matrix into a *mat.Dense.
func dense32(name string, x []float32, rows, cols int) (*mat.Dense, error) {
	if rows <= 0 || cols <= 0 || len(x) != rows*cols {
		return nil, fmt.Errorf("%s: %d values for %d×%d: %w", name, len(x), rows, cols, errShape)
	}
	d := make([]float64, len(x))
	for i, v := range x {
		d[i] = float64(v)
	}
	return mat.NewDense(rows, cols, d), nil
}

// dense64 wraps (copies) a row-major rows×cols float64 matrix.
func dense64(name string, x []float64, rows, cols int) (*mat.Dense, error) {
	if rows <= 0 || cols <= 0 || len(x) != rows*cols {
		return nil, fmt.Errorf("%s: %d values for %d×%d: %w", name, len(x), rows, cols, errShape)
	}
	return mat.NewDense(rows, cols, append([]float64(nil), x...)), nil
}

// thinQR returns the thin QR factorisation M = Q·R of an m×n matrix with
// m ≥ n: Q is m×n with orthonormal columns, R is n×n upper triangular.
// Householder QR (LAPACK dgeqrf/dorgqr), so a rank-deficient M (e.g. B = 0)
// is fine.
func thinQR(m *mat.Dense) (q, r *mat.Dense, err error) {
	rows, cols := m.Dims()
	if rows < cols {
		return nil, nil, fmt.Errorf("thin QR of %d×%d needs rows ≥ cols: %w", rows, cols, errShape)
	}
	a := blas64.General{Rows: rows, Cols: cols, Stride: cols, Data: make([]float64, rows*cols)}
	for i := 0; i < rows; i++ {
		for j := 0; j < cols; j++ {
			a.Data[i*cols+j] = m.At(i, j)
		}
	}
	tau := make([]float64, cols)
	work := []float64{0}
	lapack64.Geqrf(a, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Geqrf(a, tau, work, len(work))
	r = mat.NewDense(cols, cols, nil)
	for i := 0; i < cols; i++ {
		for j := i; j < cols; j++ {
			r.Set(i, j, a.Data[i*cols+j])
		}
	}
	work = []float64{0}
	lapack64.Orgqr(a, tau, work, -1)
	work = make([]float64, int(work[0]))
	lapack64.Orgqr(a, tau, work, len(work))
	return mat.NewDense(rows, cols, a.Data), r, nil
}

// thinSVD returns M = U·diag(s)·Vᵀ with s descending, U m×k, V n×k,
// k = min(m, n).
func thinSVD(m mat.Matrix) (s []float64, u, v *mat.Dense, err error) {
	var svd mat.SVD
	if !svd.Factorize(m, mat.SVDThin) {
		r, c := m.Dims()
		return nil, nil, nil, fmt.Errorf("SVD of %d×%d did not converge", r, c)
	}
	u, v = &mat.Dense{}, &mat.Dense{}
	svd.UTo(u)
	svd.VTo(v)
	return svd.Values(nil), u, v, nil
}

// singularValues returns the singular values of m, descending.
func singularValues(m mat.Matrix) ([]float64, error) {
	var svd mat.SVD
	if !svd.Factorize(m, mat.SVDNone) {
		r, c := m.Dims()
		return nil, fmt.Errorf("SVD of %d×%d did not converge", r, c)
	}
	return svd.Values(nil), nil
}

// leadingCols returns a view of the first k columns of m.
func leadingCols(m *mat.Dense, k int) *mat.Dense {
	r, _ := m.Dims()
	return m.Slice(0, r, 0, k).(*mat.Dense)
}

// norm2 returns the Euclidean norm of x, accumulated in float64.
func norm2(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}
