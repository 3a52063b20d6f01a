package tbread

import (
	"encoding/binary"
	"testing"

	"github.com/stretchr/testify/require"
)

// The reader's checksum against published values, so that a writer and
// reader sharing one mistake cannot agree with each other.
func TestMaskedCRCVectors(t *testing.T) {
	cases := []struct {
		name string
		data []byte
		want uint32
	}{
		// Masked checksum of a record in a real TensorFlow event file
		// (tensorboard/data/server/masked_crc.rs).
		{"tensorflow record", []byte("\x1a\x11CRC test, one two"), 0x5794d08a},
		// RFC 3720 B.4: CRC-32C of 32 zero bytes is 0x8a9136aa; masked by hand:
		// rotr(0x8a9136aa, 15) = 0x6d551522, + 0xa282ead8 mod 2³² = 0x0fd7fffa.
		{"rfc3720 zeros", make([]byte, 32), 0x0fd7fffa},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			require.Equal(t, c.want, masked(c.data))
		})
	}
}

func frame(data []byte) []byte {
	b := binary.LittleEndian.AppendUint64(nil, uint64(len(data)))
	b = binary.LittleEndian.AppendUint32(b, masked(b[:8]))
	b = append(b, data...)
	return binary.LittleEndian.AppendUint32(b, masked(data))
}

func TestRecordsFraming(t *testing.T) {
	// The file_version event TensorFlow writes, framed by hand.
	ev := []byte("\x1a\x0dbrain.Event:2")
	file := append(frame(ev), frame([]byte{})...)
	recs, err := Records(file)
	require.NoError(t, err)
	require.Equal(t, [][]byte{ev, {}}, recs)
	evs, err := Parse(file[:len(frame(ev))])
	require.NoError(t, err)
	require.Equal(t, "brain.Event:2", evs[0].FileVersion)

	for _, c := range []struct {
		name string
		b    []byte
		want string
	}{
		{"truncated header", file[:5], "truncated header"},
		{"length past the end", file[:20], "runs past the end"},
		{"flipped data byte", flip(file, 14), "data CRC"},
		{"flipped length byte", flip(file, 0), "length CRC"},
	} {
		t.Run(c.name, func(t *testing.T) {
			_, err := Records(c.b)
			require.ErrorContains(t, err, c.want)
		})
	}
}

func flip(b []byte, i int) []byte {
	out := append([]byte(nil), b...)
	out[i] ^= 0x01
	return out
}
