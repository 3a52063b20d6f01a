package analyze

import (
	"fmt"
	"math"
	"math/rand/v2"

	"gonum.org/v1/gonum/mat"
)

// rightSingular returns the right singular vectors of the r×in matrix A as
// the columns of an in×min(r,in) matrix, ordered by descending singular value.
func rightSingular(name string, A []float32, r, in int) (*mat.Dense, error) {
	a, err := dense32(name, A, r, in)
	if err != nil {
		return nil, err
	}
	_, _, v, err := thinSVD(a)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	return v, nil
}

// SubspaceSimilarity is φ(A1, A2, i, j) = ‖V1[:, :i]ᵀ V2[:, :j]‖_F² / min(i, j)
// with V_k the right singular vectors (input space) of the down-projection
// A_k (r_k×in), Hu et al. 2021 §7.2. 1 for the same subspace, 0 for
// orthogonal ones.
func SubspaceSimilarity(A1, A2 []float32, r1, r2, in int, i, j int) (float64, error) {
	grid, err := SubspaceGrid(A1, A2, r1, r2, in)
	if err != nil {
		return 0, err
	}
	if i < 1 || j < 1 || i > len(grid) || j > len(grid[0]) {
		return 0, fmt.Errorf("subspace similarity: (i, j) = (%d, %d) outside 1..%d × 1..%d: %w", i, j, len(grid), len(grid[0]), errShape)
	}
	return grid[i-1][j-1], nil
}

// SubspaceGrid returns φ(A1, A2, i, j) for every i ≤ min(r1,in), j ≤ min(r2,in)
// as grid[i-1][j-1] (Hu et al. 2021, Figure 3), from one SVD of each A.
func SubspaceGrid(A1, A2 []float32, r1, r2, in int) ([][]float64, error) {
	v1, err := rightSingular("subspace grid: A1", A1, r1, in)
	if err != nil {
		return nil, err
	}
	v2, err := rightSingular("subspace grid: A2", A2, r2, in)
	if err != nil {
		return nil, err
	}
	var m mat.Dense
	m.Mul(v1.T(), v2)
	k1, k2 := m.Dims()
	// cum[i][j] = Σ_{a<i, b<j} m_ab², a 2-D prefix sum.
	cum := make([][]float64, k1+1)
	for i := range cum {
		cum[i] = make([]float64, k2+1)
	}
	grid := make([][]float64, k1)
	for i := 1; i <= k1; i++ {
		grid[i-1] = make([]float64, k2)
		for j := 1; j <= k2; j++ {
			x := m.At(i-1, j-1)
			cum[i][j] = cum[i-1][j] + cum[i][j-1] - cum[i-1][j-1] + x*x
			grid[i-1][j-1] = cum[i][j] / float64(min(i, j))
		}
	}
	return grid, nil
}

// RandomBaseline is E[φ] = max(i, j)/in for independent uniformly random
// subspaces of dimensions i and j in R^in (docs/SCIENCE.md, after Hu et al. 2021).
func RandomBaseline(i, j, in int) float64 {
	if in <= 0 {
		return 0
	}
	return float64(max(i, j)) / float64(in)
}

// Amplification is ‖ΔW‖_F / ‖Uᵀ W0 V‖_F with U (out×·), V (in×·) the top-r
// left and right singular vectors of ΔW and sv all of ΔW's singular values
// (Hu et al. 2021 §7.3). W0 is out×in row-major.
func Amplification(W0 []float32, out, in int, sv []float64, U, V *mat.Dense, r int) (float64, error) {
	w, err := dense32("amplification: W0", W0, out, in)
	if err != nil {
		return 0, err
	}
	ur, uc := U.Dims()
	vr, vc := V.Dims()
	if ur != out || vr != in || r < 1 || r > uc || r > vc {
		return 0, fmt.Errorf("amplification: U %d×%d, V %d×%d, r=%d for W0 %d×%d: %w", ur, uc, vr, vc, r, out, in, errShape)
	}
	var dw float64
	for _, s := range sv {
		dw += s * s
	}
	p := project(w, leadingCols(U, r), leadingCols(V, r))
	if p == 0 {
		return 0, fmt.Errorf("amplification: W0 has no component in ΔW's top-%d subspace", r)
	}
	return math.Sqrt(dw) / p, nil
}

// project returns ‖Uᵀ W V‖_F.
func project(w, u, v *mat.Dense) float64 {
	var uw, p mat.Dense
	uw.Mul(u.T(), w)
	p.Mul(&uw, v)
	return mat.Norm(&p, 2)
}

// RandomAmplification is the mean over trials of ‖ΔW‖_F / ‖Uᵀ W0 V‖_F for
// uniformly random orthonormal U (out×r), V (in×r): the baseline to set beside
// Amplification (Hu et al. 2021 §7.3 compare against random matrices).
// deltaNormF is ‖ΔW‖_F.
func RandomAmplification(W0 []float32, out, in int, deltaNormF float64, r, trials int, rng *rand.Rand) (float64, error) {
	w, err := dense32("random amplification: W0", W0, out, in)
	if err != nil {
		return 0, err
	}
	if r < 1 || r > out || r > in || trials < 1 {
		return 0, fmt.Errorf("random amplification: r=%d, trials=%d for W0 %d×%d: %w", r, trials, out, in, errShape)
	}
	var sum float64
	for t := 0; t < trials; t++ {
		u, err := randomOrthonormal(rng, out, r)
		if err != nil {
			return 0, fmt.Errorf("random amplification: %w", err)
		}
		v, err := randomOrthonormal(rng, in, r)
		if err != nil {
			return 0, fmt.Errorf("random amplification: %w", err)
		}
		p := project(w, u, v)
		if p == 0 {
			return 0, fmt.Errorf("random amplification: W0 projects to zero")
		}
		sum += deltaNormF / p
	}
	return sum / float64(trials), nil
}

// randomOrthonormal returns an n×k Haar-random matrix with orthonormal
// columns (QR of a Gaussian matrix with R's diagonal made positive).
func randomOrthonormal(rng *rand.Rand, n, k int) (*mat.Dense, error) {
	g := mat.NewDense(n, k, nil)
	for i := 0; i < n; i++ {
		for j := 0; j < k; j++ {
			g.Set(i, j, rng.NormFloat64())
		}
	}
	q, r, err := thinQR(g)
	if err != nil {
		return nil, err
	}
	for j := 0; j < k; j++ {
		if r.At(j, j) < 0 {
			for i := 0; i < n; i++ {
				q.Set(i, j, -q.At(i, j))
			}
		}
	}
	return q, nil
}
