package kv

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// blobRecord is stored at blob/<ns>/<key>/meta.
type blobRecord struct {
	Tensors []string  `json:"tensors"`
	Meta    []byte    `json:"meta,omitempty"`
	Time    time.Time `json:"time"`
}

// BlobKey returns a content address for the given parts (for example a
// model config and a data hash): the hex SHA-256 of the length-prefixed
// parts, usable as the key of PutBlob.
func BlobKey(parts ...[]byte) string {
	h := sha256.New()
	for _, p := range parts {
		h.Write(binary.BigEndian.AppendUint64(nil, uint64(len(p))))
		h.Write(p)
	}
	return hex.EncodeToString(h.Sum(nil))
}

// PutBlob caches tensors (of any size, see chunk.go) and opaque meta bytes
// under namespace ns and key (say "base-model" and a BlobKey of its config),
// replacing what was there. Like a checkpoint, the blob becomes visible only
// once complete, its meta being the commit point, and an intent makes a
// write cut short by a crash disappear at the next writable Open; it is
// synced to disk. ns and key may not contain "/".
func (s *Store) PutBlob(ns, key string, tensors []Tensor, meta []byte) error {
	if err := s.putBlob(ns, key, tensors, meta); err != nil {
		return fmt.Errorf("put blob %s/%s: %w", ns, key, err)
	}
	return nil
}

func validateBlob(ns, key string) error {
	if err := validatePart("blob namespace", ns, false); err != nil {
		return err
	}
	return validatePart("blob key", key, false)
}

func (s *Store) putBlob(ns, key string, tensors []Tensor, meta []byte) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateBlob(ns, key); err != nil {
		return err
	}
	keys, vals, names, err := encodeTensors(tensors, func(name string) []byte { return blobTensorKey(ns, key, name) })
	if err != nil {
		return err
	}
	rec, err := json.Marshal(blobRecord{Tensors: names, Meta: meta, Time: time.Now()})
	if err != nil {
		return err
	}
	intent := intentBlobKey(ns, key)
	if err := s.update(func(txn *badger.Txn) error {
		if err := txn.Delete(blobMetaKey(ns, key)); err != nil {
			return err
		}
		return txn.Set(intent, nil)
	}); err != nil {
		return err
	}
	if _, err := s.deletePrefix(blobPrefix(ns, key)); err != nil {
		return err
	}
	if err := s.writeBatch(keys, vals); err != nil {
		return err
	}
	s.fault(FaultBlobTensors, 0)
	if err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set(blobMetaKey(ns, key), rec); err != nil {
			return err
		}
		return txn.Delete(intent)
	}); err != nil {
		return err
	}
	return s.db.Sync()
}

// GetBlob returns the tensors (in the order put) and meta bytes cached under
// ns and key, verifying checksums; an error wrapping ErrNotFound if there is
// none.
func (s *Store) GetBlob(ns, key string) ([]Tensor, []byte, error) {
	var rec blobRecord
	var tensors []Tensor
	err := s.view(func(txn *badger.Txn) error {
		if err := validateBlob(ns, key); err != nil {
			return err
		}
		if err := getJSON(txn, blobMetaKey(ns, key), &rec); err != nil {
			return err
		}
		for _, name := range rec.Tensors {
			t, err := readTensor(txn, blobTensorKey(ns, key, name), name)
			if err != nil {
				return err
			}
			tensors = append(tensors, t)
		}
		return nil
	})
	if err != nil {
		return nil, nil, fmt.Errorf("get blob %s/%s: %w", ns, key, err)
	}
	return tensors, rec.Meta, nil
}

// BlobInfo returns the names of the tensors cached under ns and key (in
// the order put) and its meta bytes, reading no tensor; with BlobTensor a
// caller holds one tensor of a large blob at a time. An error wraps
// ErrNotFound if there is no blob.
func (s *Store) BlobInfo(ns, key string) (names []string, meta []byte, err error) {
	var rec blobRecord
	err = s.view(func(txn *badger.Txn) error {
		if err := validateBlob(ns, key); err != nil {
			return err
		}
		return getJSON(txn, blobMetaKey(ns, key), &rec)
	})
	if err != nil {
		return nil, nil, fmt.Errorf("get blob %s/%s: %w", ns, key, err)
	}
	return rec.Tensors, rec.Meta, nil
}

// BlobTensor returns tensor name of the blob under ns and key, verifying
// its checksum, as GetBlob would return it.
func (s *Store) BlobTensor(ns, key, name string) (Tensor, error) {
	var t Tensor
	err := s.view(func(txn *badger.Txn) error {
		if err := validateBlob(ns, key); err != nil {
			return err
		}
		ok, err := exists(txn, blobMetaKey(ns, key))
		if err != nil {
			return err
		}
		if !ok {
			return fmt.Errorf("blob meta: %w", ErrNotFound)
		}
		t, err = readTensor(txn, blobTensorKey(ns, key, name), name)
		return err
	})
	if err != nil {
		return Tensor{}, fmt.Errorf("get blob %s/%s tensor %s: %w", ns, key, name, err)
	}
	return t, nil
}

// HasBlob reports whether a complete blob is cached under ns and key.
func (s *Store) HasBlob(ns, key string) (bool, error) {
	if err := validateBlob(ns, key); err != nil {
		return false, fmt.Errorf("has blob: %w", err)
	}
	var ok bool
	err := s.view(func(txn *badger.Txn) error {
		var err error
		ok, err = exists(txn, blobMetaKey(ns, key))
		return err
	})
	if err != nil {
		return false, fmt.Errorf("has blob %s/%s: %w", ns, key, err)
	}
	return ok, nil
}

// DeleteBlob removes the blob under ns and key.
func (s *Store) DeleteBlob(ns, key string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateBlob(ns, key); err != nil {
		return fmt.Errorf("delete blob: %w", err)
	}
	if err := s.deleteBlob(ns, key); err != nil {
		return fmt.Errorf("delete blob %s/%s: %w", ns, key, err)
	}
	return nil
}

// deleteBlob removes the meta (so the blob disappears at once) and sets an
// intent in one commit, then the tensors, then the intent.
func (s *Store) deleteBlob(ns, key string) error {
	found := false
	intent := intentBlobKey(ns, key)
	err := s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, blobMetaKey(ns, key))
		if err != nil || !ok {
			return err
		}
		found = true
		if err := txn.Delete(blobMetaKey(ns, key)); err != nil {
			return err
		}
		return txn.Set(intent, nil)
	})
	if err != nil {
		return err
	}
	n, err := s.deletePrefix(blobPrefix(ns, key))
	if err != nil {
		return err
	}
	if err := s.update(func(txn *badger.Txn) error { return txn.Delete(intent) }); err != nil {
		return err
	}
	if !found && n == 0 {
		return ErrNotFound
	}
	return nil
}
