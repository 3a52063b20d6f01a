package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"

	badger "github.com/dgraph-io/badger/v4"
)

// Tensors of any size. A tensor record (tensor.go) over chunkBytes is
// stored in chunks of chunkBytes at …/x/<name>/<n>, and its own key
// (…/t/<name>) holds a manifest instead of the record. Chunks and manifest
// are written under the same commit point as any tensor (a checkpoint's or
// blob's meta, with an intent around multi-commit writes), so a chunked
// tensor is visible whole or not at all. The manifest lists each chunk's
// CRC-32C, so Fsck can name a damaged chunk without reassembling the
// tensor; the record's own checksum is verified when it is read.
//
// Manifest layout (integers little-endian):
//
//	0   4  magic "LTNC"
//	4   1  format version (1)
//	5   3  reserved, zero
//	8   4  CRC-32C of every byte of the manifest except these four
//	12  8  length of the tensor record
//	20  4  chunk size
//	24  4  chunk count n
//	28  4n CRC-32C of each chunk
const (
	chunkMagic    = "LTNC"
	chunkVersion  = 1
	chunkFixedLen = 28
)

// chunkBytes is well under Badger's value log file size (MaxValueBytes):
// a few chunks fit one transaction, and reading one does not hold a whole
// value log file's worth of memory. Tests lower it to chunk small tensors.
var chunkBytes = 16 << 20

// manifest describes a chunked tensor record.
type manifest struct {
	total     uint64
	chunkSize uint32
	crcs      []uint32
}

func manifestChecksum(b []byte) uint32 {
	c := crc32.Update(0, castagnoli, b[:8])
	return crc32.Update(c, castagnoli, b[12:])
}

func isManifest(b []byte) bool { return len(b) >= 4 && string(b[:4]) == chunkMagic }

func encodeManifest(m manifest) []byte {
	b := make([]byte, chunkFixedLen+4*len(m.crcs))
	copy(b, chunkMagic)
	b[4] = chunkVersion
	binary.LittleEndian.PutUint64(b[12:], m.total)
	binary.LittleEndian.PutUint32(b[20:], m.chunkSize)
	binary.LittleEndian.PutUint32(b[24:], uint32(len(m.crcs)))
	for i, c := range m.crcs {
		binary.LittleEndian.PutUint32(b[chunkFixedLen+4*i:], c)
	}
	binary.LittleEndian.PutUint32(b[8:], manifestChecksum(b))
	return b
}

// decodeManifest parses a manifest; errors wrap ErrCorrupt.
func decodeManifest(b []byte) (manifest, error) {
	corrupt := func(format string, args ...any) (manifest, error) {
		return manifest{}, fmt.Errorf("%w: chunk manifest: %s", ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < chunkFixedLen || !isManifest(b) {
		return corrupt("truncated or bad magic (%d bytes)", len(b))
	}
	if b[4] != chunkVersion {
		return corrupt("unknown version %d", b[4])
	}
	if want, got := binary.LittleEndian.Uint32(b[8:]), manifestChecksum(b); want != got {
		return corrupt("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	m := manifest{total: binary.LittleEndian.Uint64(b[12:]), chunkSize: binary.LittleEndian.Uint32(b[20:])}
	n := binary.LittleEndian.Uint32(b[24:])
	if uint64(len(b)) != chunkFixedLen+4*uint64(n) {
		return corrupt("%d chunks in %d bytes", n, len(b))
	}
	if m.chunkSize == 0 || m.chunkSize > MaxValueBytes || uint64(n) != (m.total+uint64(m.chunkSize)-1)/uint64(m.chunkSize) {
		return corrupt("%d chunks of %d bytes cannot hold %d bytes", n, m.chunkSize, m.total)
	}
	m.crcs = make([]uint32, n)
	for i := range m.crcs {
		m.crcs[i] = binary.LittleEndian.Uint32(b[chunkFixedLen+4*i:])
	}
	return m, nil
}

// chunkLen is the length chunk i of m must have.
func (m manifest) chunkLen(i int) int {
	if i < len(m.crcs)-1 {
		return int(m.chunkSize)
	}
	return int(m.total - uint64(m.chunkSize)*uint64(len(m.crcs)-1))
}

// tensorKVs returns the keys and values storing record b at key: the
// record itself, or a manifest and its chunks (slices of b).
func tensorKVs(key, b []byte) (keys, vals [][]byte) {
	if len(b) <= chunkBytes {
		return [][]byte{key}, [][]byte{b}
	}
	m := manifest{total: uint64(len(b)), chunkSize: uint32(chunkBytes)}
	for off := 0; off < len(b); off += chunkBytes {
		c := b[off:min(off+chunkBytes, len(b))]
		m.crcs = append(m.crcs, crc32.Checksum(c, castagnoli))
		keys = append(keys, chunkKey(key, len(m.crcs)-1))
		vals = append(vals, c)
	}
	return append(keys, key), append(vals, encodeManifest(m))
}

// readChunked reassembles the record described by manifest value mb at key.
func readChunked(txn *badger.Txn, key, mb []byte) ([]byte, error) {
	m, err := decodeManifest(mb)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", displayKey(key), err)
	}
	buf := make([]byte, 0, m.total)
	for i, want := range m.crcs {
		ck := chunkKey(key, i)
		item, err := txn.Get(ck)
		if errors.Is(err, badger.ErrKeyNotFound) {
			return nil, fmt.Errorf("%s: %w: chunk %d of %d is missing", displayKey(key), ErrCorrupt, i, len(m.crcs))
		}
		if err != nil {
			return nil, fmt.Errorf("read %s: %w", displayKey(ck), err)
		}
		err = item.Value(func(c []byte) error {
			if len(c) != m.chunkLen(i) {
				return fmt.Errorf("%s: %w: chunk is %d bytes, want %d", displayKey(ck), ErrCorrupt, len(c), m.chunkLen(i))
			}
			if got := crc32.Checksum(c, castagnoli); got != want {
				return fmt.Errorf("%s: %w: chunk checksum mismatch (manifest %08x, computed %08x)", displayKey(ck), ErrCorrupt, want, got)
			}
			buf = append(buf, c...)
			return nil
		})
		if err != nil {
			return nil, err
		}
	}
	return buf, nil
}
