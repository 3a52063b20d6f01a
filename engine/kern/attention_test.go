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

// TestAttentionSegments checks the block-diagonal mask of packed rows:
// every segment of a row gets the attention, forward and backward, that it
// gets alone as a sequence of its own, for blocks that cut segments.
func TestAttentionSegments(t *testing.T) {
	defer func(b int) { AttnBlock = b }(AttnBlock)
	const T = 23
	for _, tc := range []struct {
		name  string
		lens  [][]int // segment lengths of each row, summing to T
		block int
	}{
		{"three and two segments", [][]int{{5, 9, 9}, {3, 20}}, 64},
		{"cut by blocks", [][]int{{5, 9, 9}, {3, 20}}, 4},
		{"single tokens", [][]int{{1, 1, 21}, {22, 1}}, 7},
		{"one segment", [][]int{{23}, {23}}, 8},
	} {
		t.Run(tc.name, func(t *testing.T) {
			AttnBlock = tc.block
			a := Attn{B: len(tc.lens), T: T, NH: 4, NKV: 2, D: 8}
			rng := rand.New(rand.NewPCG(5, 5))
			rnd := func(n int) []float32 {
				s := make([]float32, n)
				for i := range s {
					s[i] = float32(rng.NormFloat64())
				}
				return s
			}
			qw, kw := a.NH*a.D, a.NKV*a.D
			N := a.B * a.T
			q, k, v, dout := rnd(N*qw), rnd(N*kw), rnd(N*kw), rnd(N*qw)
			a.Seg = make([]int32, N)
			for b, lens := range tc.lens {
				pos := 0
				for s, n := range lens {
					for range n {
						a.Seg[b*T+pos] = int32(s + 7*b) // ids need not start at 0
						pos++
					}
				}
			}
			run := func(a Attn, q, k, v, dout []float32) [][]float32 {
				out, P := make([]float32, len(q)), make([]float32, a.B*a.NH*a.T*a.T)
				for i := range P {
					P[i] = float32(math.NaN())
				}
				Attention(Cores(0), a, q, k, v, out, P)
				dq, dk, dv := rnd(len(q)), rnd(len(k)), rnd(len(v))
				AttentionBack(Cores(0), a, q, k, v, P, dout, dq, dk, dv, rnd(AttnScratchLen(Cores(0), a)))
				return [][]float32{out, dq, dk, dv}
			}
			got := run(a, q, k, v, dout)
			names := []string{"out", "dq", "dk", "dv"}
			for b, lens := range tc.lens {
				r0 := b * T
				for _, n := range lens {
					one := Attn{B: 1, T: n, NH: a.NH, NKV: a.NKV, D: a.D}
					want := run(one, q[r0*qw:(r0+n)*qw], k[r0*kw:(r0+n)*kw], v[r0*kw:(r0+n)*kw], dout[r0*qw:(r0+n)*qw])
					for i, w := range want {
						width := qw
						if i >= 2 {
							width = kw
						}
						for j, x := range w {
							y := got[i][r0*width+j]
							if d := math.Abs(float64(x - y)); !(d <= 1e-5*math.Max(1, math.Abs(float64(x)))) {
								t.Fatalf("row %d, segment at %d: %s[%d] = %v packed, %v alone", b, r0-b*T, names[i], j, y, x)
							}
						}
					}
					r0 += n
				}
			}
		})
	}
}

// TestRopeGather checks that RoPE over gathered tables rotates each token
// at its own position: the same as the plain tables for a token whose
// position equals its index in a row.
func TestRopeGather(t *testing.T) {
	const T, hd, width = 11, 8, 16
	cos, sin := RopeTable(T, hd, 10000)
	pos := []int32{0, 1, 2, 0, 1, 2, 3, 4, 0, 10, 5}
	rng := rand.New(rand.NewPCG(1, 2))
	x := make([]float32, len(pos)*width)
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	gc, gs := make([]float32, len(pos)*hd), make([]float32, len(pos)*hd)
	if err := RopeGather(gc, gs, cos, sin, hd, pos); err != nil {
		t.Fatal(err)
	}
	for _, back := range []bool{false, true} {
		got := make([]float32, len(x))
		RoPE(Cores(1), x, got, width, len(pos), hd, gc, gs, back)
		for n, p := range pos {
			// The same token placed at row p of a plain sequence.
			alone := make([]float32, (int(p)+1)*width)
			copy(alone[int(p)*width:], x[n*width:(n+1)*width])
			want := make([]float32, len(alone))
			RoPE(Cores(1), alone, want, width, T, hd, cos, sin, back)
			for j := range width {
				if got[n*width+j] != want[int(p)*width+j] {
					t.Fatalf("back=%v token %d at %d: [%d] = %v, want %v", back, n, p, j, got[n*width+j], want[int(p)*width+j])
				}
			}
		}
	}
	if err := RopeGather(gc, gs, cos, sin, hd, []int32{T}); err == nil {
		t.Fatal("position past the table accepted")
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

// TestAttentionRecompute checks that Recompute (no kept probabilities:
// per-worker scratch, recomputed in the backward pass) gives the same bits
// as keeping P, forward and backward, for plain, segmented, windowed and
// scaled attention over several worker counts and stale scratch.
func TestAttentionRecompute(t *testing.T) {
	seg := make([]int32, 2*29)
	for i := range seg {
		seg[i] = int32(i / 11) // segments of 11 that cross the row boundary's ids
	}
	for _, tc := range []struct {
		name string
		a    Attn
	}{
		{"plain", Attn{B: 2, T: 29, NH: 4, NKV: 2, D: 8}},
		{"segments", Attn{B: 2, T: 29, NH: 4, NKV: 1, D: 8, Seg: seg}},
		{"window scale", Attn{B: 1, T: 70, NH: 6, NKV: 3, D: 16, Window: 9, Scale: 0.3}},
		{"one head", Attn{B: 1, T: 130, NH: 1, NKV: 1, D: 64}},
	} {
		for _, cores := range []Cores{1, 2, 3, 7} {
			rng := rand.New(rand.NewPCG(5, 5))
			rnd := func(n int) []float32 {
				s := make([]float32, n)
				for i := range s {
					s[i] = float32(rng.NormFloat64())
				}
				return s
			}
			a := tc.a
			N := a.B * a.T
			q, k, v, dout := rnd(N*a.NH*a.D), rnd(N*a.NKV*a.D), rnd(N*a.NKV*a.D), rnd(N*a.NH*a.D)
			run := func(a Attn) [][]float32 {
				out, P := make([]float32, len(q)), rnd(AttnProbsLen(cores, a))
				Attention(cores, a, q, k, v, out, P)
				dq, dk, dv := rnd(len(q)), rnd(len(k)), rnd(len(v))
				ds := rnd(AttnScratchLen(cores, a))
				if a.Recompute {
					// Stale probabilities: the backward pass must not read them.
					for i := range P {
						P[i] = float32(math.NaN())
					}
				}
				AttentionBack(cores, a, q, k, v, P, dout, dq, dk, dv, ds)
				return [][]float32{out, dq, dk, dv}
			}
			want := run(a)
			a.Recompute = true
			if n, full := AttnProbsLen(cores, a), a.B*a.NH*a.T*a.T; n >= full && full > int(cores)*a.T*a.T {
				t.Fatalf("%s: Recompute's P is %d values, not less than %d", tc.name, n, full)
			}
			got := run(a)
			for i, name := range []string{"out", "dq", "dk", "dv"} {
				for j := range want[i] {
					if math.Float32bits(got[i][j]) != math.Float32bits(want[i][j]) {
						t.Fatalf("%s, %d cores: %s[%d] = %v with Recompute, %v keeping P", tc.name, cores, name, j, got[i][j], want[i][j])
					}
				}
			}
		}
	}
}
