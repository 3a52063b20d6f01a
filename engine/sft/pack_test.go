package sft

import (
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestPackedBatcher checks packed rows over several epochs: every example
// is placed whole, once per epoch, in the epoch's order; its positions
// restart at 0, its segment is its own, its targets are its own labels
// (none crosses into the next example); rows end in padding; StepsFor
// counts the batches actually drawn; and a batcher restored from State
// draws the same batches as one that never stopped.
func TestPackedBatcher(t *testing.T) {
	rng := rand.New(rand.NewPCG(8, 8))
	var rows []Row
	for i := range 13 {
		n := 2 + rng.IntN(15)
		r := Row{Where: "example", Tokens: make([]int32, n), Labels: make([]int32, n)}
		for j := range n {
			r.Tokens[j] = int32(1000*i + j) // unique: a token names its example and place
			r.Labels[j] = r.Tokens[j]
			if j < n/3 {
				r.Labels[j] = Ignore
			}
		}
		rows = append(rows, r)
	}
	const B, T, seed = 3, 20, 4
	b, err := NewBatcher(rows, B, T, seed)
	require.NoError(t, err)
	b.Pack()
	require.ErrorContains(t, b.Next(make([]int32, B*T), make([]int32, B*T)), "NextPacked")
	steps := b.StepsFor(3, 1)

	var order []int // examples in the order placed
	var batches [][]int32
	for range steps {
		x, err := b.NextBatch()
		require.NoError(t, err)
		batches = append(batches, slices.Concat(x.Inputs, x.Targets, x.Positions, x.Segments))
		for r := range B {
			in, tg := x.Inputs[r*T:(r+1)*T], x.Targets[r*T:(r+1)*T]
			pos, seg := x.Positions[r*T:(r+1)*T], x.Segments[r*T:(r+1)*T]
			for p := 0; p < T; {
				if tg[p] == Ignore && in[p] == PadID && pos[p] == 0 && (p == 0 || seg[p] != seg[p-1]) && rowsPadFrom(in, tg, p) {
					for q := p; q < T; q++ { // padding: its own segment, positions from 0
						require.Equal(t, int32(q-p), pos[q])
						require.Equal(t, seg[p], seg[q])
					}
					break
				}
				ex := int(in[p]) / 1000
				e := rows[ex]
				n := len(e.Tokens) - 1
				require.LessOrEqual(t, p+n, T)
				for k := range n {
					require.Equal(t, e.Tokens[k], in[p+k], "input")
					require.Equal(t, e.Labels[k+1], tg[p+k], "target of example %d at %d", ex, k)
					require.Equal(t, int32(k), pos[p+k], "position")
					require.Equal(t, seg[p], seg[p+k], "segment")
				}
				if p > 0 {
					require.NotEqual(t, seg[p-1], seg[p], "example %d shares a segment with the one before", ex)
				}
				order = append(order, ex)
				p += n
			}
		}
	}
	// Rows are filled first fit, so the order within a batch is by row;
	// per epoch each example appears exactly once.
	require.GreaterOrEqual(t, len(order), 3*len(rows))
	for e := range 3 {
		got := slices.Clone(order[e*len(rows) : (e+1)*len(rows)])
		slices.Sort(got)
		want := make([]int, len(rows))
		for i := range want {
			want[i] = i
		}
		require.Equal(t, want, got, "epoch %d", e)
	}
	require.Less(t, len(order)-3*len(rows), len(rows), "StepsFor drew a batch too many")

	// Resume after every batch.
	for k := range steps {
		a, err := NewBatcher(rows, B, T, seed)
		require.NoError(t, err)
		a.Pack()
		for range k {
			_, err := a.NextBatch()
			require.NoError(t, err)
		}
		st, err := a.State()
		require.NoError(t, err)
		c, err := NewBatcher(rows, B, T, seed)
		require.NoError(t, err)
		c.Pack()
		require.NoError(t, c.Restore(st))
		for j := k; j < steps; j++ {
			x, err := c.NextBatch()
			require.NoError(t, err)
			require.Equal(t, batches[j], slices.Concat(x.Inputs, x.Targets, x.Positions, x.Segments), "batch %d after resuming at %d", j, k)
		}
		plain, err := NewBatcher(rows, B, T, seed)
		require.NoError(t, err)
		require.ErrorContains(t, plain.Restore(st), "packing")
	}
}

// rowsPadFrom reports whether the rest of a row from p is padding.
func rowsPadFrom(in, tg []int32, p int) bool {
	for q := p; q < len(in); q++ {
		if in[q] != PadID || tg[q] != Ignore {
			return false
		}
	}
	return true
}
