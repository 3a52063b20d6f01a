package data

import (
	"encoding/json"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/tokenize"
)

func TestOpticks(t *testing.T) {
	tok := tokenize.NewByte()
	o, err := Opticks(tok)
	require.NoError(t, err)
	require.Equal(t, "opticks", o.Name)
	require.Greater(t, len(o.Tokens), 100_000)
	require.Contains(t, tok.Decode(o.Tokens), "OPTICKS")
	// English prose: roughly 3 nats per byte (uniform bytes would be ln 256 ≈ 5.5).
	h := UnigramEntropy(o.Tokens)
	require.Greater(t, h, 2.5)
	require.Less(t, h, 4.0)
}

func TestGoCode(t *testing.T) {
	tok := tokenize.NewByte()
	g, err := GoCode(tok, 1<<20)
	require.NoError(t, err)
	require.Equal(t, "gocode", g.Name)
	require.Len(t, g.Tokens, 1<<20)
	text := tok.Decode(g.Tokens)
	require.Contains(t, text[:5000], "package ")
	require.Contains(t, text, "\n\n")

	again, err := GoCode(tok, 1<<20)
	require.NoError(t, err)
	require.Equal(t, g.Tokens, again.Tokens, "same files in the same order")

	small, err := GoCode(tok, 1000)
	require.NoError(t, err)
	require.Equal(t, g.Tokens[:1000], small.Tokens, "the cap cuts a prefix of the same stream")

	def, err := Source(tok, "gocode")
	require.NoError(t, err)
	require.Len(t, def.Tokens, DefaultGoCodeBytes)
}

func TestText(t *testing.T) {
	tok := tokenize.NewByte()
	dir := t.TempDir()
	write := func(rel, content string) {
		p := filepath.Join(dir, rel)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(content), 0o644))
	}
	write("b.txt", "second")
	write("a.txt", "first")
	write("sub/c.md", "third \xff\xfe") // invalid UTF-8 is fine
	write("empty.txt", "")
	write(".git/objects/x", "\x00binary")
	write(".hidden", "secret")

	c, err := Text(tok, dir)
	require.NoError(t, err)
	require.Equal(t, filepath.Base(dir), c.Name)
	require.Equal(t, "first\n\nsecond\n\nthird \xff\xfe", tok.Decode(c.Tokens))

	one, err := Source(tok, filepath.Join(dir, "b.txt"))
	require.NoError(t, err)
	require.Equal(t, "b.txt", one.Name)
	require.Equal(t, "second", tok.Decode(one.Tokens))
}

func TestSourceErrors(t *testing.T) {
	tok := tokenize.NewByte()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin.dat")
	require.NoError(t, os.WriteFile(bin, append([]byte(strings.Repeat("a", 8000)), 0), 0o644))
	late := filepath.Join(dir, "late.txt") // a NUL past the first 8 KiB is tolerated
	require.NoError(t, os.WriteFile(late, append([]byte(strings.Repeat("a", 9000)), 0), 0o644))
	empty := filepath.Join(dir, "empty.txt")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	emptyDir := filepath.Join(dir, "nothing")
	require.NoError(t, os.Mkdir(emptyDir, 0o755))
	mixed := filepath.Join(dir, "mixed")
	require.NoError(t, os.Mkdir(mixed, 0o755))
	require.NoError(t, os.WriteFile(filepath.Join(mixed, "a.txt"), []byte("ok"), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(mixed, "z.bin"), []byte{1, 0, 2}, 0o644))

	for _, tc := range []struct {
		name, source string
		want         []string
	}{
		{"missing", filepath.Join(dir, "missing.txt"), []string{"data source", "missing.txt", "no such file"}},
		{"binary", bin, []string{"bin.dat", "NUL bytes"}},
		{"binary in folder", mixed, []string{"z.bin", "not a text file"}},
		{"empty file", empty, []string{"empty.txt", "empty corpus"}},
		{"empty folder", emptyDir, []string{"nothing", "empty corpus"}},
		{"no name", "", []string{"source", "empty source name"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Source(tok, tc.source)
			require.Error(t, err)
			for _, w := range tc.want {
				require.ErrorContains(t, err, w)
			}
		})
	}
	c, err := Source(tok, late)
	require.NoError(t, err)
	require.Len(t, c.Tokens, 9001)
}

func seqCorpus(n int) Corpus {
	c := Corpus{Name: "x", Tokens: make([]int32, n)}
	for i := range c.Tokens {
		c.Tokens[i] = int32(i)
	}
	return c
}

func TestSplit(t *testing.T) {
	c := seqCorpus(1000)
	for _, tc := range []struct {
		frac      float64
		trainLen  int
		wantError string
	}{
		{0.1, 900, ""},
		{0.5, 500, ""},
		{0.0005, 0, "too few to split"},
		{0, 0, "eval_frac = 0"},
		{1, 0, "eval_frac = 1"},
		{-0.2, 0, "eval_frac"},
		{math.NaN(), 0, "eval_frac"},
	} {
		tr, ev, err := Split(c, tc.frac)
		if tc.wantError != "" {
			require.ErrorContains(t, err, tc.wantError, "frac %g", tc.frac)
			continue
		}
		require.NoError(t, err)
		require.Len(t, tr.Tokens, tc.trainLen)
		require.Equal(t, c.Tokens[:tc.trainLen], tr.Tokens)
		require.Equal(t, c.Tokens[tc.trainLen:], ev.Tokens, "eval is the contiguous tail")
		require.Equal(t, tr.Tokens[len(tr.Tokens)-1]+1, ev.Tokens[0], "disjoint and adjacent")
		tr2, ev2, err := Split(c, tc.frac)
		require.NoError(t, err)
		require.Equal(t, tr, tr2)
		require.Equal(t, ev, ev2)
		// Appending to the train part cannot write into the eval part.
		_ = append(tr.Tokens, -1)
		require.Equal(t, int32(tc.trainLen), ev.Tokens[0])
	}
}

func draw(t *testing.T, b *Batcher, n int) []Batch {
	t.Helper()
	var out []Batch
	for range n {
		bt, err := b.NextBatch()
		require.NoError(t, err)
		out = append(out, bt)
	}
	return out
}

func TestBatcherWindows(t *testing.T) {
	c := seqCorpus(100)
	b, err := NewBatcher(c.Tokens, 8, 10, 3)
	require.NoError(t, err)
	seen := map[int32]bool{}
	for _, bt := range draw(t, b, 200) {
		require.Equal(t, 8, bt.B)
		require.Equal(t, 10, bt.T)
		for r := range bt.B {
			in, tg := bt.Inputs[r*10:(r+1)*10], bt.Targets[r*10:(r+1)*10]
			for i := range 10 {
				require.Equal(t, in[0]+int32(i), in[i], "a window is a contiguous slice")
				require.Equal(t, in[i]+1, tg[i], "targets are the next tokens")
			}
			require.LessOrEqual(t, tg[9], int32(99))
			seen[in[0]] = true
		}
	}
	require.True(t, seen[0] && seen[89], "offsets reach both ends")
	require.Len(t, seen, 90, "every offset 0..89 drawn")
	require.Equal(t, 200, b.Drawn())

	require.ErrorContains(t, b.Next(make([]int32, 5), make([]int32, 80)), "want batch_size×seq_len = 80")
}

func TestBatcherReproducible(t *testing.T) {
	tokens := seqCorpus(5000).Tokens
	mk := func(seed uint64) *Batcher {
		b, err := NewBatcher(tokens, 4, 16, seed)
		require.NoError(t, err)
		return b
	}
	require.Equal(t, draw(t, mk(7), 5), draw(t, mk(7), 5))
	require.NotEqual(t, draw(t, mk(7), 5), draw(t, mk(8), 5))
}

func TestBatcherStateRestore(t *testing.T) {
	tokens := seqCorpus(5000).Tokens
	ref, err := NewBatcher(tokens, 4, 16, 7)
	require.NoError(t, err)
	draw(t, ref, 3)
	st, err := ref.State()
	require.NoError(t, err)
	want := draw(t, ref, 10)

	// The state is plain JSON integers.
	var fields map[string]any
	require.NoError(t, json.Unmarshal(st, &fields))
	for k, v := range fields {
		require.IsType(t, float64(0), v, k)
	}
	require.EqualValues(t, 3, fields["drawn"])

	// A fresh batcher (any seed) restored from the state continues exactly.
	resumed, err := NewBatcher(tokens, 4, 16, 99)
	require.NoError(t, err)
	require.NoError(t, resumed.Restore(st))
	require.Equal(t, 3, resumed.Drawn())
	require.Equal(t, want, draw(t, resumed, 10))

	// Position/SetPosition is the same thing without JSON.
	pos, err := ref.Position()
	require.NoError(t, err)
	next := draw(t, ref, 2)
	require.NoError(t, resumed.SetPosition(pos))
	require.Equal(t, next, draw(t, resumed, 2))

	for _, tc := range []struct {
		name   string
		tokens []int32
		batch  int
		seq    int
		state  json.RawMessage
		want   string
	}{
		{"other batch size", tokens, 2, 16, st, "batch_size=4 seq_len=16 over 5000 tokens"},
		{"other seq len", tokens, 4, 8, st, "this batcher has batch_size=4 seq_len=8"},
		{"other corpus", tokens[:4000], 4, 16, st, "over 4000 tokens"},
		{"not json", tokens, 4, 16, json.RawMessage(`{`), "batcher state"},
		{"negative drawn", tokens, 4, 16, json.RawMessage(`{"batch_size":4,"seq_len":16,"tokens":5000,"drawn":-1}`), "drawn = -1"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			b, err := NewBatcher(tc.tokens, tc.batch, tc.seq, 7)
			require.NoError(t, err)
			require.ErrorContains(t, b.Restore(tc.state), tc.want)
		})
	}
}

func TestNewBatcherErrors(t *testing.T) {
	tokens := seqCorpus(100).Tokens
	for _, tc := range []struct {
		batch, seq int
		tokens     []int32
		want       string
	}{
		{0, 16, tokens, "batch_size = 0"},
		{-1, 16, tokens, "batch_size = -1"},
		{4, 0, tokens, "seq_len = 0"},
		{4, 100, tokens, "100 tokens are fewer than one window of seq_len+1 = 101"},
		{4, 1, nil, "0 tokens"},
	} {
		_, err := NewBatcher(tc.tokens, tc.batch, tc.seq, 1)
		require.ErrorContains(t, err, tc.want)
	}
	b, err := NewBatcher(tokens, 1, 99, 1) // exactly one window fits
	require.NoError(t, err)
	bt, err := b.NextBatch()
	require.NoError(t, err)
	require.Equal(t, tokens[:99], bt.Inputs)
	require.Equal(t, tokens[1:], bt.Targets)
}

func TestWindows(t *testing.T) {
	tokens := seqCorpus(11).Tokens // 0..10
	for _, tc := range []struct {
		seq    int
		starts []int32
	}{
		{5, []int32{0, 5}},    // 0-4→1-5, 5-9→6-10
		{3, []int32{0, 3, 6}}, // 9 has no room for a full window with targets
		{10, []int32{0}},      // exactly one
		{4, []int32{0, 4}},    // 8,9 dropped: partial
		{1, []int32{0, 1, 2, 3, 4, 5, 6, 7, 8, 9}},
	} {
		ws, err := Windows(tokens, tc.seq)
		require.NoError(t, err)
		require.Len(t, ws, len(tc.starts), "seq %d", tc.seq)
		require.Equal(t, len(tc.starts), NumWindows(len(tokens), tc.seq))
		for i, w := range ws {
			require.Len(t, w.Inputs, tc.seq)
			require.Equal(t, tc.starts[i], w.Inputs[0])
			for j := range w.Inputs {
				require.Equal(t, w.Inputs[j]+1, w.Targets[j])
			}
		}
	}
	for _, tc := range []struct {
		seq  int
		want string
	}{{0, "seq_len = 0"}, {11, "fewer than one window"}} {
		_, err := Windows(tokens, tc.seq)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestEvalBatches(t *testing.T) {
	tokens := seqCorpus(101).Tokens // 10 windows of 10
	bs, err := EvalBatches(tokens, 4, 10)
	require.NoError(t, err)
	require.Len(t, bs, 3)
	require.Equal(t, []int{4, 4, 2}, []int{bs[0].B, bs[1].B, bs[2].B})
	var inputs, targets []int32
	for _, b := range bs {
		require.Equal(t, 10, b.T)
		require.Len(t, b.Inputs, b.B*b.T)
		require.Len(t, b.Targets, b.B*b.T)
		inputs = append(inputs, b.Inputs...)
		targets = append(targets, b.Targets...)
	}
	require.Equal(t, tokens[:100], inputs, "every input scored once, in order")
	require.Equal(t, tokens[1:101], targets)

	_, err = EvalBatches(tokens, 0, 10)
	require.ErrorContains(t, err, "batch_size = 0")
	_, err = EvalBatches(tokens, 4, -3)
	require.ErrorContains(t, err, "seq_len = -3")
}

func TestUnigramEntropy(t *testing.T) {
	for _, tc := range []struct {
		name   string
		tokens []int32
		want   float64
	}{
		{"uniform over 4", []int32{0, 1, 2, 3, 3, 2, 1, 0}, math.Log(4)},
		{"constant", []int32{5, 5, 5}, 0},
		{"empty", nil, 0},
		{"fair coin", []int32{7, -1}, math.Log(2)},
		{"3:1", []int32{1, 1, 1, 2}, -(0.75*math.Log(0.75) + 0.25*math.Log(0.25))},
	} {
		require.InDelta(t, tc.want, UnigramEntropy(tc.tokens), 1e-12, tc.name)
	}
}
