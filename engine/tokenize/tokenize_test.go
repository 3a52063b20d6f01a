package tokenize

import (
	"testing"

	"github.com/stretchr/testify/require"
)

func TestByteRoundTrip(t *testing.T) {
	tok := NewByte("<bos>", "<eos>")
	for _, s := range []string{"", "hello", "naïve ☃", string([]byte{0, 0xff, 0xc3, 0x28})} {
		ids := tok.Encode(s)
		require.Len(t, ids, len(s))
		for _, id := range ids {
			require.True(t, id >= 0 && id < 256)
		}
		require.Equal(t, s, tok.Decode(ids))
	}
	require.Equal(t, 258, tok.VocabSize())
	require.Equal(t, "a<eos>", tok.Decode([]int32{'a', 257}))
	require.Equal(t, "⟨999⟩", tok.Decode([]int32{999}))
}
