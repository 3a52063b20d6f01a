package kv

import (
	"bytes"
	"crypto/sha256"
	"encoding/binary"
	"errors"
	"fmt"
	"hash"
	"strings"

	badger "github.com/dgraph-io/badger/v4"
)

// ImportRun copies run id, with its metrics, checkpoints, collected values
// and events, from src (for example the store of a trial that ran in its own
// process) into s. The run's record and index entries are written last, in
// one transaction, so the run appears only once complete; an import cut
// short leaves keys that DeleteRun or a second ImportRun clears. It fails
// with ErrExists if s already has the run. src may be open read-only.
func (s *Store) ImportRun(src *Store, id string) error {
	if err := s.importRun(src, id, nil); err != nil {
		return fmt.Errorf("import run %s from %s: %w", id, src.dir, err)
	}
	return nil
}

// MergeOutcome says what MergeRun did with a run.
type MergeOutcome int

const (
	// MergeAdded: s did not have the run; it has it now.
	MergeAdded MergeOutcome = iota
	// MergeReplaced: s had an older copy (for example one merged while the
	// trial was still training); it now has src's.
	MergeReplaced
	// MergeUnchanged: s already had exactly src's copy; nothing was written.
	MergeUnchanged
	// MergeKeptNewer: s's copy was updated later than src's, so src's older
	// copy was not merged.
	MergeKeptNewer
)

// String is the outcome in words, for messages.
func (o MergeOutcome) String() string {
	switch o {
	case MergeAdded:
		return "added"
	case MergeReplaced:
		return "replaced"
	case MergeUnchanged:
		return "unchanged"
	case MergeKeptNewer:
		return "kept newer"
	}
	return fmt.Sprintf("MergeOutcome(%d)", int(o))
}

// MergeRun brings run id from src into s, idempotently and atomically per
// run:
//
//   - every value of src's copy is decoded and checked (checksums, JSON,
//     checkpoint tensor lists) before anything is written; a problem fails
//     the merge with an error wrapping ErrCorrupt and s is left as it was;
//   - when s holds exactly the same keys and values, nothing is written
//     (MergeUnchanged), so merging a shard twice leaves one copy;
//   - when s holds a copy last updated after src's, it is kept
//     (MergeKeptNewer);
//   - otherwise s's copy, if any, is deleted and src's written, record and
//     index entries last in one transaction: readers see the old copy, then
//     none, then the new one, never a mix. A merge cut short leaves keys
//     without a record, invisible to readers, which the next merge clears.
//
// Checkpoint tensors without their meta (a save cut short by a kill) are
// not copied. src may be open read-only.
func (s *Store) MergeRun(src *Store, id string) (MergeOutcome, error) {
	o, err := s.mergeRun(src, id)
	if err != nil {
		return o, fmt.Errorf("merge run %s from %s: %w", id, src.dir, err)
	}
	return o, nil
}

func (s *Store) mergeRun(src *Store, id string) (MergeOutcome, error) {
	if err := s.writable(); err != nil {
		return 0, err
	}
	if err := validateRunID(id); err != nil {
		return 0, err
	}
	if err := src.Flush(); err != nil {
		return 0, err
	}
	plan, err := src.checkRun(id)
	if err != nil {
		return 0, err
	}
	old, err := s.GetRun(id)
	switch {
	case errors.Is(err, ErrNotFound):
		if err := s.importRun(src, id, plan); err != nil {
			return 0, err
		}
		return MergeAdded, nil
	case err != nil:
		return 0, err
	}
	mine, err := s.runDigest(id)
	if err != nil {
		return 0, err
	}
	if bytes.Equal(mine, plan.digest) {
		return MergeUnchanged, nil
	}
	if old.Updated.After(plan.meta.Updated) {
		return MergeKeptNewer, nil
	}
	if err := s.DeleteRun(id); err != nil {
		return 0, err
	}
	if err := s.importRun(src, id, plan); err != nil {
		return 0, err
	}
	return MergeReplaced, nil
}

// CheckRun decodes and checks every value of run id as MergeRun does
// before writing, so a caller can check all the runs of a shard before
// merging any of them. The error wraps ErrCorrupt for bad data.
func (s *Store) CheckRun(id string) error {
	if err := validateRunID(id); err != nil {
		return err
	}
	if err := s.Flush(); err != nil {
		return err
	}
	if _, err := s.checkRun(id); err != nil {
		return fmt.Errorf("check run %s in %s: %w", id, s.dir, err)
	}
	return nil
}

// runCopy is what checkRun found in a source store: the run's record, its
// digest, and the incomplete checkpoints whose tensors are not copied.
type runCopy struct {
	meta      RunMeta
	metaBytes []byte
	skipSteps map[uint64]bool
	digest    []byte
}

// checkRun decodes every value of run id the way Fsck does and checks that
// each checkpoint's meta and tensors agree. The error wraps ErrCorrupt and
// lists the first problems.
func (s *Store) checkRun(id string) (*runCopy, error) {
	f := &fsckState{
		runs:       map[string]*RunMeta{},
		runKeys:    map[string]int{},
		ckptMeta:   map[stepID][]string{},
		ckptTensor: map[stepID][]string{},
		blobMeta:   map[string][]string{},
		blobTensor: map[string][]string{},
	}
	f.init()
	rc := &runCopy{skipSteps: map[uint64]bool{}}
	err := s.view(func(txn *badger.Txn) error {
		b, err := getValue(txn, runMetaKey(id))
		if err != nil {
			return err
		}
		rc.metaBytes = b
		f.check(runMetaKey(id), b)
		return scan(txn, runPrefix(id), func(k, v []byte) error {
			f.check(k, v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	for sid, stored := range f.ckptTensor {
		listed, ok := f.ckptMeta[sid]
		if !ok {
			rc.skipSteps[sid.step] = true
			continue
		}
		f.compareTensors(fmt.Sprintf("run/%s/ckpt/%d/", id, sid.step), listed, stored)
	}
	for sid, listed := range f.ckptMeta {
		if _, ok := f.ckptTensor[sid]; !ok && len(listed) > 0 {
			f.compareTensors(fmt.Sprintf("run/%s/ckpt/%d/", id, sid.step), listed, nil)
		}
	}
	f.checkChunks(func(at manifestAt) bool {
		_, ok := f.ckptMeta[at.ckpt]
		return !ok
	})
	if m := f.runs[id]; m != nil {
		rc.meta = *m
	}
	if len(f.problems) > 0 {
		var msgs []string
		for i, p := range f.problems {
			if i == 3 {
				msgs = append(msgs, fmt.Sprintf("and %d more", len(f.problems)-3))
				break
			}
			msgs = append(msgs, p.String())
		}
		return nil, fmt.Errorf("%w: %s", ErrCorrupt, strings.Join(msgs, "; "))
	}
	h := sha256.New()
	digestKV(h, runMetaKey(id), rc.metaBytes)
	err = s.view(func(txn *badger.Txn) error {
		return scan(txn, runPrefix(id), func(k, v []byte) error {
			if !rc.skip(k) {
				digestKV(h, k, v)
			}
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	rc.digest = h.Sum(nil)
	return rc, nil
}

// skip says whether key belongs to an incomplete checkpoint.
func (rc *runCopy) skip(k []byte) bool {
	if len(rc.skipSteps) == 0 {
		return false
	}
	p := parseKey(k)
	return (p.kind == kindCkptTensor || p.kind == kindCkptChunk) && rc.skipSteps[p.step]
}

// runDigest hashes every key and value under run id.
func (s *Store) runDigest(id string) ([]byte, error) {
	h := sha256.New()
	err := s.view(func(txn *badger.Txn) error {
		b, err := getValue(txn, runMetaKey(id))
		if err != nil {
			return err
		}
		digestKV(h, runMetaKey(id), b)
		return scan(txn, runPrefix(id), func(k, v []byte) error {
			digestKV(h, k, v)
			return nil
		})
	})
	if err != nil {
		return nil, err
	}
	return h.Sum(nil), nil
}

func digestKV(h hash.Hash, k, v []byte) {
	var n [8]byte
	binary.BigEndian.PutUint64(n[:], uint64(len(k)))
	h.Write(n[:])
	h.Write(k)
	binary.BigEndian.PutUint64(n[:], uint64(len(v)))
	h.Write(n[:])
	h.Write(v)
}

// importRun copies run id from src; plan, when given, says which keys to
// leave out and holds the record to publish.
func (s *Store) importRun(src *Store, id string, plan *runCopy) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateRunID(id); err != nil {
		return err
	}
	if err := src.Flush(); err != nil {
		return err
	}
	if plan == nil {
		plan = &runCopy{}
		err := src.db.View(func(txn *badger.Txn) error {
			var err error
			if plan.metaBytes, err = getValue(txn, runMetaKey(id)); err != nil {
				return err
			}
			return decodeJSON(runMetaKey(id), plan.metaBytes, &plan.meta)
		})
		if err != nil {
			return err
		}
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
	err := src.db.View(func(txn *badger.Txn) error {
		n := 0
		return scan(txn, runPrefix(id), func(k, v []byte) error {
			if bytes.Equal(k, metaKey) || plan.skip(k) {
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
		if err := txn.Set(metaKey, plan.metaBytes); err != nil {
			return err
		}
		return setIndex(txn, RunMeta{}, plan.meta)
	})
	if err != nil {
		return err
	}
	s.mu.Lock()
	s.knownRuns[id] = true
	delete(s.eventSeq, id)
	s.mu.Unlock()
	return s.db.Sync()
}
