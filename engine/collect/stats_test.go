package collect

import (
	"errors"
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestLoRAActivation checks the fused split of a module's output into the
// adapter's part and the base part against the matrices written out.
func TestLoRAActivation(t *testing.T) {
	for _, tc := range []struct{ rows, in, r, o int }{{1, 3, 1, 2}, {7, 16, 4, 12}, {32, 24, 8, 40}} {
		rng := rand.New(rand.NewPCG(uint64(tc.rows), 3))
		fill := func(n int) []float32 {
			x := make([]float32, n)
			for i := range x {
				x[i] = float32(rng.NormFloat64())
			}
			return x
		}
		x, mid, b, y := fill(tc.rows*tc.in), fill(tc.rows*tc.r), fill(tc.o*tc.r), fill(tc.rows*tc.o)
		x[0] = 0
		const s = 0.75
		var wantL, wantB float64
		for i := range tc.rows {
			var ll, bb float64
			for j := range tc.o {
				var d float64
				for k := range tc.r {
					d += float64(mid[i*tc.r+k]) * float64(b[j*tc.r+k])
				}
				l := s * d
				ll += l * l
				bb += (float64(y[i*tc.o+j]) - l) * (float64(y[i*tc.o+j]) - l)
			}
			wantL += math.Sqrt(ll) / float64(tc.rows)
			wantB += math.Sqrt(bb) / float64(tc.rows)
		}
		got := loraActivation("m", x, mid, y, b, tc.in, tc.r, tc.o, s)
		require.InEpsilon(t, wantL, got.LoRANorm, 1e-5)
		require.InEpsilon(t, wantB, got.BaseNorm, 1e-5)
		require.InEpsilon(t, wantL/wantB, got.Ratio, 1e-5)
		require.InEpsilon(t, rowNorm(mid, tc.r), got.MidNorm, 1e-12)
		require.InDelta(t, 1/float64(len(x)), got.InSparsity, 1e-12)
	}
}

func TestForEachRunsAllAndReportsFirstError(t *testing.T) {
	seen := make([]int, 100)
	require.NoError(t, forEach(len(seen), func(i int) error { seen[i]++; return nil }))
	for i, n := range seen {
		require.Equal(t, 1, n, i)
	}
	e3, e7 := errors.New("3"), errors.New("7")
	err := forEach(10, func(i int) error {
		switch i {
		case 3:
			return e3
		case 7:
			return e7
		}
		return nil
	})
	require.ErrorIs(t, err, e3)
}
