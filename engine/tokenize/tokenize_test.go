package tokenize

import (
	"math/rand/v2"
	"os"
	"path/filepath"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

func TestByteRoundTrip(t *testing.T) {
	tok := NewByte("<bos>", "<eos>")
	for _, tc := range []struct {
		name string
		text string
	}{
		{"empty", ""},
		{"ascii", "hello"},
		{"utf8", "naïve ☃ 日本"},
		{"invalid utf8", string([]byte{0, 0xff, 0xc3, 0x28, 0x80})},
		{"spells a special", "<eos>"},
		{"all bytes", string(func() []byte {
			b := make([]byte, 256)
			for i := range b {
				b[i] = byte(i)
			}
			return b
		}())},
	} {
		t.Run(tc.name, func(t *testing.T) {
			ids := tok.Encode(tc.text)
			require.Len(t, ids, len(tc.text))
			for i, id := range ids {
				require.Equal(t, int32(tc.text[i]), id)
				require.True(t, id >= 0 && id < 256, "Encode never yields specials")
			}
			require.Equal(t, ids, tok.EncodeBytes([]byte(tc.text)))
			require.Equal(t, tc.text, tok.Decode(ids))
		})
	}
}

func TestByteRandomBytes(t *testing.T) {
	tok := NewByte()
	r := rand.New(rand.NewPCG(1, 2))
	invalid := 0
	for range 200 {
		b := make([]byte, r.IntN(64))
		for i := range b {
			b[i] = byte(r.UintN(256))
		}
		if !utf8.Valid(b) {
			invalid++
		}
		ids := tok.EncodeBytes(b)
		for _, id := range ids {
			require.Less(t, int(id), tok.VocabSize())
		}
		require.Equal(t, string(b), tok.Decode(ids))
	}
	require.Greater(t, invalid, 100, "the test covers invalid UTF-8")
}

func TestSpecials(t *testing.T) {
	tok := NewByte("<bos>", "<eos>")
	require.Equal(t, 258, tok.VocabSize())
	require.Equal(t, 256, NewByte().VocabSize())
	require.Equal(t, []string{"<bos>", "<eos>"}, tok.Specials())
	for _, tc := range []struct {
		name string
		id   int32
		ok   bool
	}{{"<bos>", 256, true}, {"<eos>", 257, true}, {"<pad>", 0, false}} {
		id, ok := tok.SpecialID(tc.name)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.id, id, tc.name)
	}
	for _, tc := range []struct {
		ids  []int32
		want string
	}{
		{[]int32{256, 'h', 'i', 257}, "<bos>hi<eos>"},
		{[]int32{258}, "⟨258⟩"},
		{[]int32{-1, 'a'}, "⟨-1⟩a"},
	} {
		require.Equal(t, tc.want, tok.Decode(tc.ids))
	}
	// The caller's slice is copied.
	names := []string{"<a>"}
	tk := NewByte(names...)
	names[0] = "<b>"
	require.Equal(t, "<a>", tk.Decode([]int32{256}))
}

func TestLoad(t *testing.T) {
	plain := t.TempDir()
	withJSON := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(withJSON, "tokenizer.json"), []byte("{}"), 0o644))
	file := filepath.Join(plain, "config.json")
	require.NoError(t, os.WriteFile(file, []byte("{}"), 0o644))

	tok, err := Load(plain)
	require.NoError(t, err)
	require.IsType(t, &Byte{}, tok)
	require.Equal(t, 256, tok.VocabSize())

	for _, tc := range []struct {
		name, dir, want string
	}{
		{"empty tokenizer.json", withJSON, "tokenizer.json: model is missing"},
		{"missing dir", filepath.Join(plain, "nope"), filepath.Join(plain, "nope")},
		{"not a dir", file, "is not a directory"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := Load(tc.dir)
			require.ErrorContains(t, err, tc.want)
		})
	}
}
