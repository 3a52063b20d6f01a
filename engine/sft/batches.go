package sft

import (
	"encoding/json"
	"fmt"
	"hash/fnv"
	"math"
	"math/rand/v2"

	"lens/engine/data"
)

// Rows are right-padded to the trainer's fixed sequence length: an
// example of n tokens fills the first n-1 positions of its row with
// inputs Tokens[:n-1] and targets Labels[1:] (targets[t] is the label of
// the token after input t, as data.Batcher's windows have it); the rest
// of the row is input PadID with target Ignore. With causal attention a
// real position only sees positions before it, which are all real, so
// padding changes neither the loss nor any gradient.

// PadID is the input id of padded positions (any id would do: no real
// position attends to them and their targets are ignored).
const PadID = 0

// fill writes row into one batch row of inputs and targets.
func fill(r Row, in, tg []int32) {
	n := len(r.Tokens) - 1
	copy(in, r.Tokens[:n])
	copy(tg, r.Labels[1:])
	for i := n; i < len(in); i++ {
		in[i], tg[i] = PadID, Ignore
	}
}

// CheckFit reports the first row that does not fit seqLen positions.
func CheckFit(rows []Row, seqLen int) error {
	for _, r := range rows {
		if len(r.Tokens) < 2 {
			return fmt.Errorf("%s: %d token(s) give nothing to predict", r.Where, len(r.Tokens))
		}
		if len(r.Tokens)-1 > seqLen {
			return fmt.Errorf("%s: %d tokens need seq_len ≥ %d, but seq_len = %d", r.Where, len(r.Tokens), len(r.Tokens)-1, seqLen)
		}
	}
	return nil
}

// Batcher walks the examples in epochs, each a permutation drawn from
// seed+epoch, batch examples per batch; a batch that crosses the end of
// an epoch takes the rest from the next one, so every batch is full.
// State and Restore carry the position across a resumed run.
type Batcher struct {
	rows       []Row
	batch, seq int
	seed       uint64
	next       int // examples drawn so far, over all epochs
	drawn      int // batches drawn
	perm       []int
	permEpoch  int
	hash       string
	packing    bool // rows hold several examples (Pack)
}

// permStream is the PCG's second seed word for epoch permutations.
const permStream = 0x73667470 // "sftp"

// NewBatcher prepares batches of batch rows of seqLen positions.
func NewBatcher(rows []Row, batch, seqLen int, seed uint64) (*Batcher, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("data field batch_size = %d: must be positive", batch)
	}
	if seqLen <= 0 {
		return nil, fmt.Errorf("data field seq_len = %d: must be positive", seqLen)
	}
	if len(rows) == 0 {
		return nil, fmt.Errorf("data: no training examples")
	}
	if err := CheckFit(rows, seqLen); err != nil {
		return nil, err
	}
	return &Batcher{rows: rows, batch: batch, seq: seqLen, seed: seed, permEpoch: -1, hash: Fingerprint(rows)}, nil
}

// Fingerprint is a hash of the rows' tokens and labels, so a position is
// never restored over different data.
func Fingerprint(rows []Row) string {
	h := fnv.New64a()
	var b [4]byte
	put := func(v int32) {
		b[0], b[1], b[2], b[3] = byte(v), byte(v>>8), byte(v>>16), byte(v>>24)
		h.Write(b[:])
	}
	for _, r := range rows {
		put(int32(len(r.Tokens)))
		for i := range r.Tokens {
			put(r.Tokens[i])
			put(r.Labels[i])
		}
	}
	return fmt.Sprintf("%016x", h.Sum64())
}

// Perm is epoch's order of n examples.
func Perm(n int, seed uint64, epoch int) []int {
	return rand.New(rand.NewPCG(seed+uint64(epoch), permStream)).Perm(n)
}

// Epoch is the epoch the next example comes from (0-based).
func (b *Batcher) Epoch() int { return b.next / len(b.rows) }

// Drawn is the number of batches drawn so far.
func (b *Batcher) Drawn() int { return b.drawn }

// row is the example drawn at position next (over all epochs).
func (b *Batcher) row(next int) Row {
	n := len(b.rows)
	if e := next / n; e != b.permEpoch {
		b.perm, b.permEpoch = Perm(n, b.seed, e), e
	}
	return b.rows[b.perm[next%n]]
}

// Next fills inputs and targets (batch×seqLen each, row-major), one
// example per row.
func (b *Batcher) Next(inputs, targets []int32) error {
	T := b.seq
	if b.packing {
		return fmt.Errorf("data: this batcher packs examples: draw with NextPacked, which also gives positions and segments")
	}
	if len(inputs) != b.batch*T || len(targets) != b.batch*T {
		return fmt.Errorf("data: batch buffers of %d and %d tokens, want batch_size×seq_len = %d", len(inputs), len(targets), b.batch*T)
	}
	for i := range b.batch {
		fill(b.row(b.next), inputs[i*T:(i+1)*T], targets[i*T:(i+1)*T])
		b.next++
	}
	b.drawn++
	return nil
}

// Pack makes the batcher put several examples in a row (packing=True);
// batches are then drawn with NextPacked.
func (b *Batcher) Pack() { b.packing = true }

// Packed reports whether the batcher packs examples.
func (b *Batcher) Packed() bool { return b.packing }

// NextPacked fills a batch of packed rows: examples in the epoch's order
// go, first fit, into the first row with room for them, until one fits in
// no row; it starts the next batch. An example keeps its own positions
// 0..n-2 and segment (its index in the row), so that with
// block-diagonal attention it is computed exactly as alone in a row, and
// its last target is its own last label: no target crosses into the next
// example. Each row's tail is padding (input PadID, target Ignore) in a
// segment of its own, positions restarting at 0.
func (b *Batcher) NextPacked(inputs, targets, positions, segments []int32) error {
	T, N := b.seq, b.batch*b.seq
	if !b.packing {
		return fmt.Errorf("data: this batcher does not pack examples: draw with Next")
	}
	if len(inputs) != N || len(targets) != N || len(positions) != N || len(segments) != N {
		return fmt.Errorf("data: packed batch buffers of %d, %d, %d and %d tokens, want batch_size×seq_len = %d each", len(inputs), len(targets), len(positions), len(segments), N)
	}
	used, segs := make([]int, b.batch), make([]int32, b.batch)
	b.next = b.pack(b.next, used, func(i int, r Row) {
		o, n := i*T+used[i], len(r.Tokens)-1
		fill(r, inputs[o:o+n], targets[o:o+n])
		for p := range n {
			positions[o+p], segments[o+p] = int32(p), segs[i]
		}
		segs[i]++
	})
	for i := range b.batch {
		for p := used[i]; p < T; p++ {
			inputs[i*T+p], targets[i*T+p] = PadID, Ignore
			positions[i*T+p], segments[i*T+p] = int32(p-used[i]), segs[i]
		}
	}
	b.drawn++
	return nil
}

// pack places examples from position next on into one batch's rows, first
// fit, calling place (when not nil) before adding an example to used[row];
// it returns the position after the last example placed. Every example
// fits an empty row (CheckFit), so a batch takes at least one.
func (b *Batcher) pack(next int, used []int, place func(row int, r Row)) int {
	for {
		r := b.row(next)
		need := len(r.Tokens) - 1
		i := 0
		for i < len(used) && used[i]+need > b.seq {
			i++
		}
		if i == len(used) {
			return next
		}
		if place != nil {
			place(i, r)
		}
		used[i] += need
		next++
	}
}

// StepsFor is the optimizer steps, at accum batches a step, that cover
// epochs passes over the examples from the start: for a packing batcher
// the batches are counted by packing them.
func (b *Batcher) StepsFor(epochs float64, accum int) int {
	n := len(b.rows)
	if !b.packing {
		return StepsFor(epochs, n, b.batch, accum)
	}
	sim := *b // the same order, without moving b
	want := int(math.Ceil(epochs * float64(n)))
	batches := 0
	used := make([]int, b.batch)
	for next := 0; next < want; batches++ {
		clear(used)
		next = sim.pack(next, used, nil)
	}
	return max(1, (batches+accum-1)/accum)
}

// NextBatch is Next, or NextPacked for a packing batcher, into freshly
// allocated buffers.
func (b *Batcher) NextBatch() (data.Batch, error) {
	N := b.batch * b.seq
	out := data.Batch{B: b.batch, T: b.seq, Inputs: make([]int32, N), Targets: make([]int32, N)}
	if b.packing {
		out.Positions, out.Segments = make([]int32, N), make([]int32, N)
		return out, b.NextPacked(out.Inputs, out.Targets, out.Positions, out.Segments)
	}
	return out, b.Next(out.Inputs, out.Targets)
}

// BatcherState is a Batcher's position with the shape and data it was
// taken over.
type BatcherState struct {
	Next     int    `json:"next"`
	Drawn    int    `json:"drawn"`
	Batch    int    `json:"batch_size"`
	SeqLen   int    `json:"seq_len"`
	Examples int    `json:"examples"`
	Seed     uint64 `json:"seed"`
	Hash     string `json:"hash"`
	Packing  bool   `json:"packing,omitempty"`
}

// State is the position as JSON (a BatcherState).
func (b *Batcher) State() (json.RawMessage, error) {
	return json.Marshal(BatcherState{Next: b.next, Drawn: b.drawn, Batch: b.batch, SeqLen: b.seq, Examples: len(b.rows), Seed: b.seed, Hash: b.hash, Packing: b.packing})
}

// Restore continues from a State taken over the same examples and shape.
func (b *Batcher) Restore(raw json.RawMessage) error {
	var s BatcherState
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("example batcher state: %w", err)
	}
	if s.Batch != b.batch || s.SeqLen != b.seq || s.Examples != len(b.rows) || s.Seed != b.seed {
		return fmt.Errorf("example batcher state: saved for batch_size=%d seq_len=%d seed=%d over %d examples, but this batcher has batch_size=%d seq_len=%d seed=%d over %d",
			s.Batch, s.SeqLen, s.Seed, s.Examples, b.batch, b.seq, b.seed, len(b.rows))
	}
	if s.Packing != b.packing {
		return fmt.Errorf("example batcher state: saved with packing=%v, but this batcher has packing=%v", s.Packing, b.packing)
	}
	if s.Hash != b.hash {
		return fmt.Errorf("example batcher state: the examples changed since the state was saved (fingerprint %s, now %s)", s.Hash, b.hash)
	}
	if s.Next < 0 || s.Drawn < 0 {
		return fmt.Errorf("example batcher state: negative position %d/%d", s.Next, s.Drawn)
	}
	b.next, b.drawn, b.permEpoch = s.Next, s.Drawn, -1
	return nil
}

// EvalBatches packs rows in order into batches of exactly batch rows of
// seqLen positions; the last batch's missing rows are all padding (every
// target ignored), so a fixed-shape evaluator can run it.
func EvalBatches(rows []Row, batch, seqLen int) ([]data.Batch, error) {
	if batch <= 0 || seqLen <= 0 {
		return nil, fmt.Errorf("eval batches: batch_size %d and seq_len %d must be positive", batch, seqLen)
	}
	if err := CheckFit(rows, seqLen); err != nil {
		return nil, err
	}
	var out []data.Batch
	for r0 := 0; r0 < len(rows); r0 += batch {
		b := data.Batch{B: batch, T: seqLen, Inputs: make([]int32, batch*seqLen), Targets: make([]int32, batch*seqLen)}
		for i := range batch {
			in, tg := b.Inputs[i*seqLen:(i+1)*seqLen], b.Targets[i*seqLen:(i+1)*seqLen]
			if r0+i < len(rows) {
				fill(rows[r0+i], in, tg)
			} else {
				fill(Row{Tokens: []int32{PadID}, Labels: []int32{Ignore}}, in, tg)
			}
		}
		out = append(out, b)
	}
	return out, nil
}

// StepsFor is the optimizer steps that cover epochs passes over n
// examples at batch·accum examples a step, rounded up.
func StepsFor(epochs float64, n, batch, accum int) int {
	return max(1, int(math.Ceil(epochs*float64(n)/float64(batch*accum))))
}
