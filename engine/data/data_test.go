package data

import (
	"math"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/tokenize"
)

func TestSources(t *testing.T) {
	tok := tokenize.NewByte()
	o, err := Opticks(tok)
	require.NoError(t, err)
	require.Greater(t, len(o.Tokens), 100_000)
	g, err := GoCode(tok, 1<<20)
	require.NoError(t, err)
	require.Equal(t, 1<<20, len(g.Tokens))
	require.Contains(t, tok.Decode(g.Tokens[:5000]), "package ")
}

func TestTextErrors(t *testing.T) {
	tok := tokenize.NewByte()
	dir := t.TempDir()
	bin := filepath.Join(dir, "bin.dat")
	require.NoError(t, os.WriteFile(bin, []byte("ab\x00cd"), 0o644))
	empty := filepath.Join(dir, "empty.txt")
	require.NoError(t, os.WriteFile(empty, nil, 0o644))
	for _, tc := range []struct{ path, want string }{
		{filepath.Join(dir, "missing.txt"), "missing.txt"},
		{bin, "NUL bytes"},
		{empty, "empty corpus"},
	} {
		_, err := Source(tok, tc.path)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestSplitAndBatcher(t *testing.T) {
	c := Corpus{Name: "x", Tokens: make([]int32, 1000)}
	for i := range c.Tokens {
		c.Tokens[i] = int32(i % 251)
	}
	tr, ev, err := Split(c, 0.1)
	require.NoError(t, err)
	require.Equal(t, 900, len(tr.Tokens))
	require.Equal(t, c.Tokens[900:], ev.Tokens)
	_, _, err = Split(c, 1.5)
	require.ErrorContains(t, err, "eval_frac")

	b1, err := NewBatcher(tr.Tokens, 4, 16, 7)
	require.NoError(t, err)
	b2, _ := NewBatcher(tr.Tokens, 4, 16, 7)
	b3, _ := NewBatcher(tr.Tokens, 4, 16, 8)
	in1, tg1 := make([]int32, 64), make([]int32, 64)
	in2, tg2 := make([]int32, 64), make([]int32, 64)
	require.NoError(t, b1.Next(in1, tg1))
	require.NoError(t, b2.Next(in2, tg2))
	require.Equal(t, in1, in2)
	require.Equal(t, in1[1:16], tg1[:15], "targets are inputs shifted by one")
	require.NoError(t, b3.Next(in2, tg2))
	require.NotEqual(t, in1, in2)

	st, err := b1.State()
	require.NoError(t, err)
	require.NoError(t, b1.Next(in1, tg1))
	require.NoError(t, b2.Restore(st))
	require.NoError(t, b2.Next(in2, tg2))
	require.Equal(t, in1, in2, "restored batcher continues identically")

	for _, tc := range []struct {
		b, s int
		want string
	}{{0, 16, "batch_size"}, {4, 0, "seq_len"}, {4, 5000, "fewer than one window"}} {
		_, err := NewBatcher(tr.Tokens, tc.b, tc.s, 1)
		require.ErrorContains(t, err, tc.want)
	}
}

func TestUnigramEntropy(t *testing.T) {
	require.InDelta(t, math.Log(4), UnigramEntropy([]int32{0, 1, 2, 3, 3, 2, 1, 0}), 1e-12)
	require.InDelta(t, 0, UnigramEntropy([]int32{5, 5, 5}), 1e-12)
}
