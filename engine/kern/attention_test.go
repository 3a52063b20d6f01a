package kern

import (
	"fmt"
	"math"
	"math/rand/v2"
	"syscall"
	"testing"
	"time"
)

// TestAttentionBlocks checks that the causal row blocks give the same
// attention as one block covering the whole sequence, forward and backward,
// for block sizes that do and do not divide T.
func TestAttentionBlocks(t *testing.T) {
	defer func(b int) { AttnBlock = b }(AttnBlock)
	a := Attn{B: 2, T: 37, NH: 4, NKV: 2, D: 8}
	rng := rand.New(rand.NewPCG(3, 3))
	rnd := func(n int) []float32 {
		s := make([]float32, n)
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
		return s
	}
	N := a.B * a.T
	q, k, v, dout := rnd(N*a.NH*a.D), rnd(N*a.NKV*a.D), rnd(N*a.NKV*a.D), rnd(N*a.NH*a.D)
	run := func(block int) [][]float32 {
		AttnBlock = block
		out, P := make([]float32, len(q)), make([]float32, a.B*a.NH*a.T*a.T)
		// Stale values in the buffers must not leak into the result.
		for i := range P {
			P[i] = float32(math.NaN())
		}
		Attention(Cores(0), a, q, k, v, out, P)
		dq, dk, dv := rnd(len(q)), rnd(len(k)), rnd(len(v))
		ds := rnd(Cores(0).Workers() * a.T * a.T)
		AttentionBack(Cores(0), a, q, k, v, P, dout, dq, dk, dv, ds)
		return [][]float32{out, P, dq, dk, dv}
	}
	names := []string{"out", "P", "dq", "dk", "dv"}
	want := run(a.T)
	for _, block := range []int{1, 5, 16, 36, 64} {
		got := run(block)
		for i := range want {
			for j := range want[i] {
				if d := math.Abs(float64(got[i][j] - want[i][j])); !(d <= 1e-5*math.Max(1, math.Abs(float64(want[i][j])))) {
					t.Fatalf("block %d: %s[%d] = %v, want %v", block, names[i], j, got[i][j], want[i][j])
				}
			}
		}
	}
}

// BenchmarkAttention times forward and backward at the lens bench's tiny
// size (batch 4, T 256, 4 heads of 32) for several row blocks.
func BenchmarkAttention(b *testing.B) {
	defer func(bl int) { AttnBlock = bl }(AttnBlock)
	a := Attn{B: 4, T: 256, NH: 4, NKV: 4, D: 32}
	N := a.B * a.T
	q, k, v, dout := make([]float32, N*a.NH*a.D), make([]float32, N*a.NKV*a.D), make([]float32, N*a.NKV*a.D), make([]float32, N*a.NH*a.D)
	rng := rand.New(rand.NewPCG(1, 1))
	for _, s := range [][]float32{q, k, v, dout} {
		for i := range s {
			s[i] = float32(rng.NormFloat64())
		}
	}
	out, P := make([]float32, len(q)), make([]float32, a.B*a.NH*a.T*a.T)
	dq, dk, dv := make([]float32, len(q)), make([]float32, len(k)), make([]float32, len(v))
	ds := make([]float32, Cores(0).Workers()*a.T*a.T)
	for _, block := range []int{256, 128, 64, 32} {
		b.Run(fmt.Sprintf("block%d", block), func(b *testing.B) {
			AttnBlock = block
			c0 := cpuTime()
			for b.Loop() {
				Attention(Cores(0), a, q, k, v, out, P)
				AttentionBack(Cores(0), a, q, k, v, P, dout, dq, dk, dv, ds)
			}
			// CPU time is steadier than wall time on a shared machine.
			b.ReportMetric(float64((cpuTime()-c0).Nanoseconds())/float64(b.N), "cpu-ns/op")
		})
	}
}

// cpuTime is the process's user+system CPU time.
func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}
