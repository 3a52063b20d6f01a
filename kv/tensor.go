package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
)

// Tensor is a named dense float32 array in row-major order.
type Tensor struct {
	Name  string    `json:"name"`
	Shape []int     `json:"shape"`
	Data  []float32 `json:"data"`
}

// ErrCorrupt is wrapped by every error about a stored value that fails to
// decode (bad checksum, truncated, malformed JSON...).
var ErrCorrupt = errors.New("corrupt value")

// Tensor record layout (all integers little-endian):
//
//	0   4  magic "LTNS"
//	4   1  format version (1)
//	5   1  dtype (1 = float32)
//	6   1  rank r (at most maxRank)
//	7   1  reserved, zero
//	8   4  CRC-32C of every byte of the record except these four
//	12  8r dims, uint64 each
//	..     data, 4 bytes per element
//
// The name is not stored: it is the last part of the key.
const (
	tensorMagic    = "LTNS"
	tensorVersion  = 1
	dtypeF32       = 1
	tensorFixedLen = 12
	maxRank        = 8
)

var castagnoli = crc32.MakeTable(crc32.Castagnoli)

func tensorChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:8])
	return crc32.Update(c, castagnoli, b[tensorFixedLen:])
}

// numElements returns the element count of shape, or an error if a dim is
// negative, the rank is over maxRank, or the count overflows limit.
func numElements(shape []int, limit uint64) (uint64, error) {
	if len(shape) > maxRank {
		return 0, fmt.Errorf("rank %d is over the limit of %d", len(shape), maxRank)
	}
	n := uint64(1)
	for _, d := range shape {
		if d < 0 {
			return 0, fmt.Errorf("shape %v has a negative dimension", shape)
		}
		if d != 0 && n > limit/uint64(d) {
			return 0, fmt.Errorf("shape %v has more than %d elements", shape, limit)
		}
		n *= uint64(d)
	}
	return n, nil
}

// encodeTensor returns the record for t; the shape must match len(t.Data).
func encodeTensor(t Tensor) ([]byte, error) {
	n, err := numElements(t.Shape, math.MaxInt32)
	if err != nil {
		return nil, fmt.Errorf("tensor %q: %w", t.Name, err)
	}
	if n != uint64(len(t.Data)) {
		return nil, fmt.Errorf("tensor %q: shape %v needs %d values, have %d", t.Name, t.Shape, n, len(t.Data))
	}
	hdr := tensorFixedLen + 8*len(t.Shape)
	b := make([]byte, hdr+4*len(t.Data))
	copy(b, tensorMagic)
	b[4], b[5], b[6] = tensorVersion, dtypeF32, byte(len(t.Shape))
	for i, d := range t.Shape {
		binary.LittleEndian.PutUint64(b[tensorFixedLen+8*i:], uint64(d))
	}
	for i, v := range t.Data {
		binary.LittleEndian.PutUint32(b[hdr+4*i:], math.Float32bits(v))
	}
	binary.LittleEndian.PutUint32(b[8:], tensorChecksum(b))
	return b, nil
}

// decodeTensor parses a tensor record. Every failure wraps ErrCorrupt. The
// declared shape is checked against the record's length before anything is
// allocated, so a corrupt header cannot ask for a huge buffer.
func decodeTensor(b []byte) (Tensor, error) {
	corrupt := func(format string, args ...any) (Tensor, error) {
		return Tensor{}, fmt.Errorf("%w: tensor record: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < tensorFixedLen {
		return corrupt("truncated: %d bytes, the header alone is %d", len(b), tensorFixedLen)
	}
	if string(b[:4]) != tensorMagic {
		return corrupt("bad magic %q", b[:4])
	}
	if b[4] != tensorVersion {
		return corrupt("unknown record version %d", b[4])
	}
	rank := int(b[6])
	if rank > maxRank {
		return corrupt("rank %d is over the limit of %d", rank, maxRank)
	}
	hdr := tensorFixedLen + 8*rank
	if len(b) < hdr {
		return corrupt("truncated: %d bytes, a rank-%d header is %d", len(b), rank, hdr)
	}
	if want, got := binary.LittleEndian.Uint32(b[8:]), tensorChecksum(b); want != got {
		return corrupt("checksum mismatch (stored %08x, computed %08x): the value is damaged or truncated", want, got)
	}
	if b[5] != dtypeF32 {
		return corrupt("unsupported dtype %d", b[5])
	}
	if b[7] != 0 {
		return corrupt("reserved byte is %d", b[7])
	}
	avail := uint64(len(b)-hdr) / 4
	shape := make([]int, rank)
	n := uint64(1)
	for i := range shape {
		d := binary.LittleEndian.Uint64(b[tensorFixedLen+8*i:])
		if d > math.MaxInt32 || (d != 0 && n > avail/d) {
			return corrupt("dimension %d of %d is larger than the %d values the record holds", i, d, avail)
		}
		n *= d
		shape[i] = int(d)
	}
	if want := uint64(hdr) + 4*n; want != uint64(len(b)) {
		return corrupt("shape %v needs %d bytes, the record has %d", shape, want, len(b))
	}
	data := make([]float32, n)
	for i := range data {
		data[i] = math.Float32frombits(binary.LittleEndian.Uint32(b[hdr+4*i:]))
	}
	return Tensor{Shape: shape, Data: data}, nil
}
