package kv

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// update runs fn in a read-write transaction, retrying when a concurrent
// transaction in this process conflicts with it.
func (s *Store) update(fn func(txn *badger.Txn) error) error {
	if err := s.writable(); err != nil {
		return err
	}
	return s.commit(fn)
}

// commit is update without the writable check: the store must be writable
// and its database settled.
func (s *Store) commit(fn func(txn *badger.Txn) error) error {
	var err error
	for conflicts, blocked := 0, 0; conflicts < 8 && blocked < 400; {
		err = s.db.Update(fn)
		switch {
		case errors.Is(err, badger.ErrConflict):
			conflicts++
		case errors.Is(err, badger.ErrBlockedWrites):
			// A GC pass (gc.go) is forcing a compaction through
			// DropPrefix, which refuses writes for milliseconds: wait it
			// out (at most 2 s) instead of failing another goroutine's write.
			blocked++
			time.Sleep(5 * time.Millisecond)
		default:
			return err
		}
	}
	return err
}

// getValue returns a copy of the value at key, or an error wrapping
// ErrNotFound.
func getValue(txn *badger.Txn, key []byte) ([]byte, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return nil, fmt.Errorf("%s: %w", displayKey(key), ErrNotFound)
	}
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", displayKey(key), err)
	}
	v, err := item.ValueCopy(nil)
	if err != nil {
		return nil, fmt.Errorf("read %s: %w", displayKey(key), err)
	}
	return v, nil
}

func exists(txn *badger.Txn, key []byte) (bool, error) {
	_, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return false, nil
	}
	if err != nil {
		return false, fmt.Errorf("read %s: %w", displayKey(key), err)
	}
	return true, nil
}

// getJSON decodes the JSON value at key into v.
func getJSON(txn *badger.Txn, key []byte, v any) error {
	b, err := getValue(txn, key)
	if err != nil {
		return err
	}
	return decodeJSON(key, b, v)
}

func decodeJSON(key, b []byte, v any) error {
	if err := json.Unmarshal(b, v); err != nil {
		return fmt.Errorf("%s: %w: %v", displayKey(key), ErrCorrupt, err)
	}
	return nil
}

// decodeTensorAt decodes a tensor record read from key, naming the key in
// any error.
func decodeTensorAt(key, b []byte, name string) (Tensor, error) {
	t, err := decodeTensor(b)
	if err != nil {
		return Tensor{}, fmt.Errorf("%s: %w", displayKey(key), err)
	}
	t.Name = name
	return t, nil
}

// readTensor reads and decodes the tensor at key.
func readTensor(txn *badger.Txn, key []byte, name string) (Tensor, error) {
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return Tensor{}, fmt.Errorf("tensor %s: %w", displayKey(key), ErrNotFound)
	}
	if err != nil {
		return Tensor{}, fmt.Errorf("read %s: %w", displayKey(key), err)
	}
	var t Tensor
	var chunked []byte
	err = item.Value(func(b []byte) error {
		if isManifest(b) {
			chunked = append([]byte(nil), b...)
			return nil
		}
		t, err = decodeTensorAt(key, b, name)
		return err
	})
	if err != nil || chunked == nil {
		return t, err
	}
	rec, err := readChunked(txn, key, chunked)
	if err != nil {
		return Tensor{}, err
	}
	return decodeTensorAt(key, rec, name)
}

// scanKeys calls fn for each key with prefix, in order, without reading
// values. fn may return errStop.
func scanKeys(txn *badger.Txn, prefix []byte, fn func(key []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		if err := fn(it.Item().Key()); err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

// scan calls fn for each key and value with prefix, in order. Neither slice
// may be kept after fn returns.
func scan(txn *badger.Txn, prefix []byte, fn func(key, val []byte) error) error {
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, PrefetchValues: true, PrefetchSize: 64})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		item := it.Item()
		key := item.Key()
		err := item.Value(func(v []byte) error { return fn(key, v) })
		if err != nil {
			if errors.Is(err, errStop) {
				return nil
			}
			return err
		}
	}
	return nil
}

var errStop = errors.New("stop")

// deletePrefix deletes every key under prefix in batches, so a run with
// millions of keys does not need one huge transaction. It returns how many
// keys it deleted.
func (s *Store) deletePrefix(prefix []byte) (int, error) {
	const chunk = 10000
	total := 0
	for {
		var keys [][]byte
		err := s.view(func(txn *badger.Txn) error {
			return scanKeys(txn, prefix, func(k []byte) error {
				keys = append(keys, bytes.Clone(k))
				if len(keys) == chunk {
					return errStop
				}
				return nil
			})
		})
		if err != nil {
			return total, err
		}
		if len(keys) == 0 {
			return total, nil
		}
		wb := s.db.NewWriteBatch()
		for _, k := range keys {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return total, err
			}
		}
		if err := wb.Flush(); err != nil {
			return total, err
		}
		total += len(keys)
	}
}

// writeBatch sets every key/value pair with a WriteBatch, which splits them
// into as many transactions as Badger's limits need.
func (s *Store) writeBatch(keys, vals [][]byte) error {
	wb := s.db.NewWriteBatch()
	for i := range keys {
		if err := wb.Set(keys[i], vals[i]); err != nil {
			wb.Cancel()
			return err
		}
	}
	return wb.Flush()
}
