package kern

import (
	"math"
	"math/rand/v2"
	"strings"
	"testing"
)

// TestCrossEntropyOn: the loss and gradient of rows split over workers
// equal a float64 evaluation, and are bit-identical for any number of
// workers and whether probs is a buffer of its own or the logits
// themselves (the chunked head's in-place use).
func TestCrossEntropyOn(t *testing.T) {
	cases := []struct {
		name        string
		rows, vocab int
	}{
		{"one row", 1, 7},
		{"small vocabulary", 300, 33},
		{"rows of a part each", 9, 40000},
		{"uneven split", 37, 1000},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rng := rand.New(rand.NewPCG(uint64(tc.rows), uint64(tc.vocab)))
			logits := make([]float32, tc.rows*tc.vocab)
			for i := range logits {
				logits[i] = float32(rng.NormFloat64() * 3)
			}
			targets := make([]int32, tc.rows)
			for i := range targets {
				targets[i] = int32(rng.IntN(tc.vocab))
				if i%5 == 3 {
					targets[i] = -1 // ignored
				}
			}
			type result struct {
				count int
				loss  []float64
				grad  []float32
			}
			run := func(c Cores, inPlace bool) result {
				buf := append([]float32(nil), logits...)
				probs := buf
				if !inPlace {
					probs = make([]float32, len(buf))
				}
				r := result{loss: make([]float64, tc.rows)}
				var err error
				if r.count, err = CrossEntropyOn(c, buf, tc.vocab, targets, probs, r.loss); err != nil {
					t.Fatal(err)
				}
				r.grad = probs
				CrossEntropyBackOn(c, probs, tc.vocab, targets, 0.25, r.grad)
				return r
			}
			want := run(1, false)
			// float64 reference: log-sum-exp minus the target's logit, and
			// (softmax − onehot)·scale.
			count := 0
			for n, tg := range targets {
				row := logits[n*tc.vocab : (n+1)*tc.vocab]
				m := math.Inf(-1)
				for _, v := range row {
					m = math.Max(m, float64(v))
				}
				var s float64
				for _, v := range row {
					s += math.Exp(float64(v) - m)
				}
				if tg < 0 {
					if want.loss[n] != 0 {
						t.Fatalf("ignored row %d: loss %v", n, want.loss[n])
					}
					for j := range row {
						if g := want.grad[n*tc.vocab+j]; g != 0 {
							t.Fatalf("ignored row %d: grad[%d] = %v", n, j, g)
						}
					}
					continue
				}
				count++
				if l := math.Log(s) + m - float64(row[tg]); math.Abs(want.loss[n]-l) > 1e-5*math.Max(1, l) {
					t.Fatalf("row %d: loss %v, float64 %v", n, want.loss[n], l)
				}
				for j, v := range row {
					g := math.Exp(float64(v)-m) / s * 0.25
					if j == int(tg) {
						g -= 0.25
					}
					if got := float64(want.grad[n*tc.vocab+j]); math.Abs(got-g) > 1e-6 {
						t.Fatalf("row %d: grad[%d] = %v, float64 %v", n, j, got, g)
					}
				}
			}
			if want.count != count {
				t.Fatalf("count %d, want %d", want.count, count)
			}
			for _, c := range []Cores{1, 2, 3, 7} {
				for _, inPlace := range []bool{false, true} {
					got := run(c, inPlace)
					for n := range got.loss {
						if math.Float64bits(got.loss[n]) != math.Float64bits(want.loss[n]) {
							t.Fatalf("%d cores, in place %v: loss[%d] = %v, want %v", c, inPlace, n, got.loss[n], want.loss[n])
						}
					}
					for i := range got.grad {
						if math.Float32bits(got.grad[i]) != math.Float32bits(want.grad[i]) {
							t.Fatalf("%d cores, in place %v: grad[%d] = %v, want %v", c, inPlace, i, got.grad[i], want.grad[i])
						}
					}
				}
			}
		})
	}
}

// TestCrossEntropyBadTarget: a target outside the vocabulary is an error
// naming its position, found before any row is computed.
func TestCrossEntropyBadTarget(t *testing.T) {
	logits := make([]float32, 3*4)
	_, err := CrossEntropyOn(2, logits, 4, []int32{1, 4, 0}, logits, make([]float64, 3))
	if err == nil || !strings.Contains(err.Error(), "target id 4 at position 1") {
		t.Fatalf("err = %v", err)
	}
}

// BenchmarkCrossEntropy: the loss and gradient of 1,024 rows at
// SmolLM2's 49,152-token vocabulary, on 1 core and on all.
func BenchmarkCrossEntropy(b *testing.B) {
	const rows, vocab = 1024, 49152
	rng := rand.New(rand.NewPCG(1, 2))
	logits := make([]float32, rows*vocab)
	for i := range logits {
		logits[i] = float32(rng.NormFloat64())
	}
	targets := make([]int32, rows)
	for i := range targets {
		targets[i] = int32(rng.IntN(vocab))
	}
	probs, loss := make([]float32, len(logits)), make([]float64, rows)
	for _, c := range []Cores{1, 0} {
		b.Run(map[Cores]string{1: "cores=1", 0: "cores=all"}[c], func(b *testing.B) {
			for range b.N {
				if _, err := CrossEntropyOn(c, logits, vocab, targets, probs, loss); err != nil {
					b.Fatal(err)
				}
				CrossEntropyBackOn(c, probs, vocab, targets, 1.0/rows, probs)
			}
		})
	}
}

// TestCrossEntropyNoAllocs: the 1-core functions, which the graph's ops
// call once per step, allocate nothing.
func TestCrossEntropyNoAllocs(t *testing.T) {
	logits, targets, loss := make([]float32, 4*10), []int32{1, -1, 3, 9}, make([]float64, 4)
	if n := testing.AllocsPerRun(10, func() {
		if _, err := CrossEntropy(logits, 10, targets, logits, loss); err != nil {
			t.Fatal(err)
		}
		CrossEntropyBack(logits, 10, targets, 0.5, logits)
	}); n != 0 {
		t.Fatalf("%v allocations per call", n)
	}
}
