package sft

import (
	"encoding/json"
	"fmt"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/tokenize"
)

// masked returns the labels of tokens with train=false positions ignored.
func masked(tokens []int32, train []bool) []int32 {
	out := make([]int32, len(tokens))
	for i, tk := range tokens {
		out[i] = Ignore
		if train[i] {
			out[i] = tk
		}
	}
	return out
}

func bytesOf(s string) []int32 { return tokenize.NewByte().Encode(s) }

func repeat(v bool, n int) []bool { return slices.Repeat([]bool{v}, n) }

func TestEncodeMasks(t *testing.T) {
	tok := tokenize.NewByte()
	bos, eos := []int32{1}, bytesOf(EndMarker)
	chat := []Message{{"system", "S"}, {"user", "U1"}, {"assistant", "A1"}, {"user", "U2"}, {"assistant", "A2"}}
	// What Simple renders, piece by piece: the assistant turns are their
	// content and end of turn, after the "<|assistant|>\n" header.
	head := "<|system|>\nS<|end|>\n<|user|>\nU1<|end|>\n<|assistant|>\n"
	mid := "<|user|>\nU2<|end|>\n<|assistant|>\n"
	a1, a2 := "A1<|end|>\n", "A2<|end|>\n"
	cases := []struct {
		name    string
		d       Dataset
		trainOn string
		tokens  []int32
		train   []bool
	}{
		{"prompt completion", Dataset{Shape: ShapeCompletion, Examples: []Example{{Prompt: "Q?", Completion: "A."}}}, "",
			slices.Concat(bos, bytesOf("Q?"), bytesOf("A."), eos), slices.Concat(repeat(false, 3), repeat(true, 2+len(eos)))},
		{"prompt completion, all", Dataset{Shape: ShapeCompletion, Examples: []Example{{Prompt: "Q?", Completion: "A."}}}, "all",
			slices.Concat(bos, bytesOf("Q?A."), eos), repeat(true, 5+len(eos))},
		{"text trains everything", Dataset{Shape: ShapeText, Examples: []Example{{Text: "abc"}}}, "completion",
			slices.Concat(bos, bytesOf("abc"), eos), repeat(true, 4+len(eos))},
		{"messages", Dataset{Shape: ShapeMessages, Examples: []Example{{Messages: chat}}}, "",
			bytesOf(head + a1 + mid + a2), slices.Concat(repeat(false, len(head)), repeat(true, len(a1)), repeat(false, len(mid)), repeat(true, len(a2)))},
		{"messages, all", Dataset{Shape: ShapeMessages, Examples: []Example{{Messages: chat}}}, "all",
			bytesOf(head + a1 + mid + a2), repeat(true, len(head+a1+mid+a2))},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			rows, st, err := Encode(tc.d, tok, Options{TrainOn: tc.trainOn, BOS: bos, EOS: eos})
			require.NoError(t, err)
			require.Len(t, rows, 1)
			require.Equal(t, tc.tokens, rows[0].Tokens)
			require.Equal(t, masked(tc.tokens, tc.train), rows[0].Labels)
			require.Equal(t, Stats{Examples: 1, Tokens: len(tc.tokens), Trained: rows[0].Trained(), Longest: len(tc.tokens)}, st)
		})
	}
	// The rendered conversation is the whole text, in order.
	full, err := Simple{}.Render(chat, false)
	require.NoError(t, err)
	require.Equal(t, head+a1+mid+a2, full)
}

// prefixBreaker renders a generation prompt that the next turn does not
// start with, as a template that rewrites history would.
type prefixBreaker struct{}

func (prefixBreaker) Render(msgs []Message, gen bool) (string, error) {
	s, _ := Simple{}.Render(msgs, false)
	if gen {
		s += "<|bot|>"
	}
	return s, nil
}

func TestEncodeTruncation(t *testing.T) {
	tok := tokenize.NewByte()
	d := Dataset{Name: "d", Shape: ShapeCompletion, Examples: []Example{
		{Prompt: "0123456789", Completion: "ab", Where: "d.jsonl line 1"},
		{Prompt: "p", Completion: "c", Where: "d.jsonl line 2"},
	}}
	_, _, err := Encode(d, tok, Options{MaxLen: 8})
	require.ErrorContains(t, err, "d.jsonl line 1: 12 tokens exceed max_len = 8")

	rows, st, err := Encode(d, tok, Options{MaxLen: 8, Truncation: "left"})
	require.NoError(t, err)
	require.Equal(t, bytesOf("456789ab"), rows[0].Tokens)
	require.Equal(t, masked(bytesOf("456789ab"), slices.Concat(repeat(false, 6), repeat(true, 2))), rows[0].Labels)
	require.Equal(t, Stats{Examples: 2, Truncated: 1, Tokens: 10, Trained: 3, Longest: 12}, st)

	// Cut on the right, the first example keeps only prompt tokens: it is
	// dropped and counted.
	rows, st, err = Encode(d, tok, Options{MaxLen: 8, Truncation: "right"})
	require.NoError(t, err)
	require.Len(t, rows, 1)
	require.Equal(t, "d.jsonl line 2", rows[0].Where)
	require.Equal(t, Stats{Examples: 1, Truncated: 1, Dropped: 1, Tokens: 2, Trained: 1, Longest: 12}, st)

	_, _, err = Encode(Dataset{Name: "d", Shape: ShapeCompletion, Examples: d.Examples[:1]}, tok, Options{MaxLen: 8, Truncation: "right"})
	require.ErrorContains(t, err, "no example has a token to train on")

	for _, o := range []Options{{TrainOn: "prompt"}, {Truncation: "middle"}, {MaxLen: -1}} {
		_, _, err := Encode(d, tok, o)
		require.Error(t, err, "%+v", o)
	}

	chat := Dataset{Shape: ShapeMessages, Examples: []Example{{Where: "c.jsonl line 4", Messages: []Message{{"user", "u"}, {"assistant", "a"}}}}}
	_, _, err = Encode(chat, tok, Options{Renderer: prefixBreaker{}})
	require.ErrorContains(t, err, "c.jsonl line 4: message 1")
	require.ErrorContains(t, err, "not a prefix")
}

func rowsOf(n int) []Row {
	var rows []Row
	for i := range n {
		toks := bytesOf(fmt.Sprintf("example %d.%s", i, string(make([]byte, i%5))))
		labels := slices.Clone(toks)
		for j := range 3 {
			labels[j] = Ignore
		}
		rows = append(rows, Row{Tokens: toks, Labels: labels, Where: fmt.Sprint("row ", i)})
	}
	return rows
}

func TestBatcherEpochsAndPadding(t *testing.T) {
	rows := rowsOf(10)
	const B, T = 4, 16
	b, err := NewBatcher(rows, B, T, 7)
	require.NoError(t, err)
	// rows are told apart by their tokens: the digit at index 8.
	var order []int
	for range 5 { // 20 examples: two epochs exactly
		bt, err := b.NextBatch()
		require.NoError(t, err)
		for i := range B {
			in, tg := bt.Inputs[i*T:(i+1)*T], bt.Targets[i*T:(i+1)*T]
			id := int(in[8] - '0')
			r := rows[id]
			n := len(r.Tokens) - 1
			require.Equal(t, r.Tokens[:n], in[:n])
			require.Equal(t, r.Labels[1:], tg[:n], "targets are the labels shifted one on")
			for j := n; j < T; j++ {
				require.Equal(t, int32(PadID), in[j])
				require.Equal(t, int32(Ignore), tg[j], "a padded position is never a target")
			}
			order = append(order, id)
		}
	}
	require.Equal(t, 2, b.Epoch())
	for e := range 2 {
		require.Equal(t, Perm(10, 7, e), order[e*10:(e+1)*10], "epoch %d walks its permutation", e)
	}
	require.NotEqual(t, order[:10], order[10:], "each epoch is reshuffled")

	// Restoring a state mid-epoch gives the same batches as going on.
	b1, _ := NewBatcher(rows, B, T, 7)
	for range 3 {
		_, err := b1.NextBatch()
		require.NoError(t, err)
	}
	st, err := b1.State()
	require.NoError(t, err)
	var want [][]int32
	for range 4 {
		bt, _ := b1.NextBatch()
		want = append(want, bt.Inputs, bt.Targets)
	}
	b2, _ := NewBatcher(rows, B, T, 7)
	require.NoError(t, b2.Restore(st))
	require.Equal(t, 3, b2.Drawn())
	var got [][]int32
	for range 4 {
		bt, _ := b2.NextBatch()
		got = append(got, bt.Inputs, bt.Targets)
	}
	require.Equal(t, want, got)

	// A state does not restore over other data, seed or shape.
	other := rowsOf(10)
	other[3].Labels[5] = Ignore
	for _, mk := range []func() (*Batcher, error){
		func() (*Batcher, error) { return NewBatcher(other, B, T, 7) },
		func() (*Batcher, error) { return NewBatcher(rows, B, T, 8) },
		func() (*Batcher, error) { return NewBatcher(rows, 2, T, 7) },
		func() (*Batcher, error) { return NewBatcher(rows[:9], B, T, 7) },
	} {
		b3, err := mk()
		require.NoError(t, err)
		require.Error(t, b3.Restore(st))
	}
	var s BatcherState
	require.NoError(t, json.Unmarshal(st, &s))
	require.Equal(t, 12, s.Next)

	_, err = NewBatcher(rows, B, 8, 0)
	require.ErrorContains(t, err, "row 0: 10 tokens need seq_len ≥ 9")
}

func TestEvalBatches(t *testing.T) {
	rows := rowsOf(5)
	bs, err := EvalBatches(rows, 2, 16)
	require.NoError(t, err)
	require.Len(t, bs, 3)
	last := bs[2]
	require.Equal(t, 2, last.B)
	require.Equal(t, int32('4'), last.Inputs[8])
	for _, tg := range last.Targets[16:] {
		require.Equal(t, int32(Ignore), tg, "the filler row has no target")
	}
	total := 0
	for _, b := range bs {
		for _, tg := range b.Targets {
			if tg >= 0 {
				total++
			}
		}
	}
	want := 0
	for _, r := range rows {
		want += r.Trained()
	}
	require.Equal(t, want, total, "every trained label of every row is a target once")
}

func TestSpecPrepare(t *testing.T) {
	var lines string
	for i := range 30 {
		lines += fmt.Sprintf(`{"q": "what is %d+1?", "a": "%d"}`+"\n", i, i+1)
	}
	p := writeFile(t, "qa.jsonl", lines)
	s := Spec{Path: p, Fields: Fields{Prompt: "q", Completion: "a"}, EvalFrac: 0.1, Epochs: 2}
	bos, eos := DefaultSpecials(tokenize.NewByte())
	require.Nil(t, bos)
	pr, err := s.Prepare(tokenize.NewByte(), nil, bos, eos, 4, 32, 1, 0)
	require.NoError(t, err)
	require.Len(t, pr.TrainRows, 27)
	require.Len(t, pr.EvalRows, 3)
	require.Len(t, pr.Eval, 1)
	require.Equal(t, 14, pr.Steps) // ceil(2·27/4)
	require.Equal(t, "qa.jsonl", pr.Name)

	s.MaxLen = 40
	_, err = s.Prepare(tokenize.NewByte(), nil, bos, eos, 4, 32, 1, 0)
	require.ErrorContains(t, err, "max_len = 40")
	s.MaxLen = 0
	_, err = s.Prepare(tokenize.NewByte(), nil, bos, eos, 4, 16, 1, 0)
	require.ErrorContains(t, err, "exceed max_len = 17")

	s = Spec{Shape: ShapeText, Inline: []Example{{Text: "a"}, {Text: "b"}}, EvalShape: ShapeText, EvalInline: []Example{{Text: "c"}}}
	tr, ev, err := s.Load()
	require.NoError(t, err)
	require.Len(t, tr.Examples, 2)
	require.Equal(t, "examples eval example 0", ev.Examples[0].Where)
	require.Error(t, Spec{}.Check())
	require.Error(t, Spec{Path: "x", TrainOn: "bad"}.Check())
}
