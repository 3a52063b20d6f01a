package kv

import (
	"bytes"
	"errors"
	"fmt"

	badger "github.com/dgraph-io/badger/v4"
)

// ImportRun copies run id, with its metrics, checkpoints, collected values
// and events, from src (for example the store of a trial that ran in its own
// process) into s. The run's record and index entries are written last, in
// one transaction, so the run appears only once complete; an import cut
// short leaves keys that DeleteRun or a second ImportRun clears. It fails
// with ErrExists if s already has the run. src may be open read-only.
func (s *Store) ImportRun(src *Store, id string) error {
	if err := s.importRun(src, id); err != nil {
		return fmt.Errorf("import run %s from %s: %w", id, src.dir, err)
	}
	return nil
}

func (s *Store) importRun(src *Store, id string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateRunID(id); err != nil {
		return err
	}
	if err := src.Flush(); err != nil {
		return err
	}
	var meta RunMeta
	var metaBytes []byte
	err := src.db.View(func(txn *badger.Txn) error {
		var err error
		if metaBytes, err = getValue(txn, runMetaKey(id)); err != nil {
			return err
		}
		return decodeJSON(runMetaKey(id), metaBytes, &meta)
	})
	if err != nil {
		return err
	}
	if _, err := s.GetRun(id); err == nil {
		return ErrExists
	} else if !errors.Is(err, ErrNotFound) {
		return err
	}
	// Clear what an earlier, interrupted import may have left.
	if _, err := s.deletePrefix(runPrefix(id)); err != nil {
		return err
	}
	const chunk = 1000
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	metaKey := runMetaKey(id)
	err = src.db.View(func(txn *badger.Txn) error {
		n := 0
		return scan(txn, runPrefix(id), func(k, v []byte) error {
			if bytes.Equal(k, metaKey) {
				return nil
			}
			if err := wb.Set(bytes.Clone(k), bytes.Clone(v)); err != nil {
				return err
			}
			if n++; n%chunk == 0 {
				return wb.Error()
			}
			return nil
		})
	})
	if err != nil {
		return err
	}
	if err := wb.Flush(); err != nil {
		return err
	}
	err = s.update(func(txn *badger.Txn) error {
		if ok, err := exists(txn, metaKey); err != nil || ok {
			if ok {
				return ErrExists
			}
			return err
		}
		if err := txn.Set(metaKey, metaBytes); err != nil {
			return err
		}
		return setIndex(txn, RunMeta{}, meta)
	})
	if err != nil {
		return err
	}
	return s.db.Sync()
}
