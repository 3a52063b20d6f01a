//go:build lenscuda

package cuda

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
)

// TestFamilies: the step on the GPU computes rope_scaling, attention
// biases and Qwen3's q/k norms within 1e-3 of the graph.
func TestFamilies(t *testing.T) { acceltest.Families(t, open(t), 1e-3) }

// TestAttentionScale: an explicit factor of q·kᵀ (Gemma's
// query_pre_attn_scalar) gives the host kernel's attention, forward and
// backward; a sliding window shorter than the sequence is refused.
func TestAttentionScale(t *testing.T) {
	d := open(t)
	a := accel.Attn{B: 2, T: 7, NH: 4, NKV: 2, D: 8, Scale: 0.3}
	qn, kn, pn := a.B*a.T*a.NH*a.D, a.B*a.T*a.NKV*a.D, a.B*a.NH*a.T*a.T
	rng := rand.New(rand.NewPCG(9, 9))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	q, k, v, dout := rnd(qn), rnd(kn), rnd(kn), rnd(qn)
	run := func(dev accel.Device, at accel.Attn) ([][]float32, error) {
		up := func(x []float32) accel.Buf {
			b, err := dev.Alloc(len(x))
			require.NoError(t, err)
			require.NoError(t, dev.Upload(b, x))
			return b
		}
		Q, K, V, DO := up(q), up(k), up(v), up(dout)
		O, P, DQ, DK, DV, DS := up(make([]float32, qn)), up(make([]float32, pn)), up(make([]float32, qn)), up(make([]float32, kn)), up(make([]float32, kn)), up(make([]float32, pn))
		if err := dev.Attention(O, P, Q, K, V, at); err != nil {
			return nil, err
		}
		if err := dev.AttentionBack(DQ, DK, DV, DS, Q, K, V, P, O, DO, at); err != nil {
			return nil, err
		}
		var out [][]float32
		for _, b := range []accel.Buf{O, DQ, DK, DV} {
			h := make([]float32, b.Len())
			require.NoError(t, dev.Download(h, b))
			out = append(out, h)
		}
		return out, nil
	}
	want, err := run(accel.Host{}, a)
	require.NoError(t, err)
	got, err := run(d, a)
	require.NoError(t, err)
	for i, name := range []string{"out", "dq", "dk", "dv"} {
		for j := range want[i] {
			require.InDelta(t, want[i][j], got[i][j], 1e-4*max(1, math.Abs(float64(want[i][j]))), "%s[%d]", name, j)
		}
	}
	a.Window = 3
	_, err = run(d, a)
	require.ErrorContains(t, err, "sliding window of 3")
}
