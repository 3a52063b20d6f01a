package kv

import (
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// CheckpointMeta describes one checkpoint of a run, at
// run/<id>/ckpt/<step>/meta.
type CheckpointMeta struct {
	Step int       `json:"step"`
	Time time.Time `json:"time"`
	// State is opaque to kv: optimizer step count, RNG state, data position...
	State json.RawMessage `json:"state,omitempty"`
	// Tensors names the checkpoint's tensors in the order they were saved;
	// SaveCheckpoint fills it in.
	Tensors  []string           `json:"tensors"`
	EvalLoss map[string]float64 `json:"eval_loss,omitempty"` // may hold NaN or ±Inf
}

type ckptMetaPlain CheckpointMeta

type ckptMetaJSON struct {
	ckptMetaPlain
	EvalLoss map[string]jsonFloat `json:"eval_loss,omitempty"`
}

// MarshalJSON encodes a CheckpointMeta, writing NaN or infinite losses as
// strings.
func (m CheckpointMeta) MarshalJSON() ([]byte, error) {
	return json.Marshal(ckptMetaJSON{ckptMetaPlain(m), toJSONFloatMap(m.EvalLoss)})
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (m *CheckpointMeta) UnmarshalJSON(b []byte) error {
	var j ckptMetaJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = CheckpointMeta(j.ckptMetaPlain)
	m.EvalLoss = fromJSONFloatMap(j.EvalLoss)
	return nil
}

// encodeTensors validates and encodes tensors for storage under keyOf(name),
// returning the keys and values (with the chunks of large tensors, see
// chunk.go) and the names in order.
func encodeTensors(tensors []Tensor, keyOf func(name string) []byte) (keys, vals [][]byte, names []string, err error) {
	seen := make(map[string]bool, len(tensors))
	for _, t := range tensors {
		if err := validatePart("tensor name", t.Name, true); err != nil {
			return nil, nil, nil, err
		}
		if seen[t.Name] {
			return nil, nil, nil, fmt.Errorf("tensor %q given twice", t.Name)
		}
		seen[t.Name] = true
		b, err := encodeTensor(t)
		if err != nil {
			return nil, nil, nil, err
		}
		k, v := tensorKVs(keyOf(t.Name), b)
		keys = append(keys, k...)
		vals = append(vals, v...)
		names = append(names, t.Name)
	}
	return keys, vals, names, nil
}

// SaveCheckpoint stores a checkpoint of run runID at meta.Step and removes
// the run's checkpoints at the steps in drop (rotation), as one commit: the
// tensors, the meta, the replacement of any checkpoint already at that step
// and the removals go in one transaction when they fit, so a process killed
// mid-save leaves all of it or none of it. A larger checkpoint is written in
// parts under an intent (see intent.go): tensors first, the meta last as the
// commit point, then each removal; a crash in between leaves a state that
// Fsck accepts and the next writable Open completes. Buffered metrics are
// flushed first, so the store never holds a checkpoint newer than the
// metrics before it, and everything is synced to disk before returning.
// meta.Tensors is set to the tensors' names; a zero meta.Time to now.
func (s *Store) SaveCheckpoint(runID string, meta CheckpointMeta, tensors []Tensor, drop ...int) error {
	err := s.saveCheckpoint(runID, meta, tensors, drop)
	if err != nil {
		return fmt.Errorf("save checkpoint of run %s at step %d: %w", runID, meta.Step, err)
	}
	return nil
}

func (s *Store) saveCheckpoint(runID string, meta CheckpointMeta, tensors []Tensor, drop []int) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateStep(meta.Step); err != nil {
		return err
	}
	step := meta.Step
	for _, d := range drop {
		if err := validateStep(d); err != nil {
			return fmt.Errorf("drop: %w", err)
		}
		if d == step {
			return fmt.Errorf("drop: step %d is the one being saved", d)
		}
	}
	if err := s.view(func(txn *badger.Txn) error { return requireRun(txn, runID) }); err != nil {
		return err
	}
	keys, vals, names, err := encodeTensors(tensors, func(name string) []byte { return ckptTensorKey(runID, step, name) })
	if err != nil {
		return err
	}
	meta.Tensors = names
	if meta.Time.IsZero() {
		meta.Time = time.Now()
	}
	mb, err := json.Marshal(meta)
	if err != nil {
		return err
	}
	if err := s.Flush(); err != nil {
		return err
	}
	s.fault(FaultCheckpointBegin, step)
	var freed int64 // value bytes deleted, for the automatic GC (gc.go)
	err = s.update(func(txn *badger.Txn) error {
		freed = 0
		// Whatever was at this step and the dropped steps goes; deletes
		// come first, so the new values win where keys repeat.
		for _, st := range append([]int{step}, drop...) {
			old, n, err := stepKeys(txn, runID, st)
			if err != nil {
				return err
			}
			freed += n
			for _, k := range old {
				if err := txn.Delete(k); err != nil {
					return err
				}
			}
		}
		for i := range keys {
			if err := txn.Set(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return txn.Set(ckptMetaKey(runID, step), mb)
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		err = s.saveInParts(runID, step, keys, vals, mb, drop)
	} else if err == nil {
		s.noteDeleted(freed)
		s.fault(FaultCheckpointSaved, step)
	}
	if err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return err
	}
	s.maybeGC()
	return nil
}

// saveInParts is saveCheckpoint for a checkpoint too large for one
// transaction: under an intent, hide and remove whatever is at the step,
// write the tensors, then the meta with the intent's removal as the commit
// point, then drop the old steps one by one.
func (s *Store) saveInParts(runID string, step int, keys, vals [][]byte, meta []byte, drop []int) error {
	intent := intentCkptKey(runID, step)
	if err := s.update(func(txn *badger.Txn) error {
		if err := txn.Delete(ckptMetaKey(runID, step)); err != nil {
			return err
		}
		return txn.Set(intent, nil)
	}); err != nil {
		return err
	}
	if _, err := s.deletePrefix(ckptStepPrefix(runID, uint64(step))); err != nil {
		return err
	}
	if err := s.writeBatch(keys, vals); err != nil {
		return err
	}
	s.fault(FaultCheckpointTensors, step)
	if err := s.update(func(txn *badger.Txn) error {
		if err := txn.Set(ckptMetaKey(runID, step), meta); err != nil {
			return err
		}
		return txn.Delete(intent)
	}); err != nil {
		return err
	}
	s.fault(FaultCheckpointSaved, step)
	for _, d := range drop {
		if err := s.deleteCheckpoint(runID, d); err != nil && !errors.Is(err, ErrNotFound) {
			return fmt.Errorf("drop checkpoint %d: %w", d, err)
		}
	}
	return nil
}

// stepKeys lists the keys of one checkpoint step and the size of their
// values (read from the keys' entries, not the values).
func stepKeys(txn *badger.Txn, runID string, step int) ([][]byte, int64, error) {
	var out [][]byte
	var size int64
	prefix := ckptStepPrefix(runID, uint64(step))
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		out = append(out, it.Item().KeyCopy(nil))
		size += it.Item().ValueSize()
	}
	return out, size, nil
}

// Checkpoints returns the complete checkpoints of run runID, by step.
func (s *Store) Checkpoints(runID string) ([]CheckpointMeta, error) {
	var out []CheckpointMeta
	err := s.view(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		prefix := ckptPrefix(runID)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			k := it.Item().KeyCopy(nil)
			p := parseKey(k)
			if len(k) < len(prefix)+8 {
				it.Next()
				continue
			}
			step := binary.BigEndian.Uint64(k[len(prefix):])
			if p.kind == kindCkptMeta {
				var m CheckpointMeta
				if err := getJSON(txn, k, &m); err != nil {
					return err
				}
				m.Step = int(step)
				out = append(out, m)
			}
			// "meta" sorts before "t/", so the step's meta, if any, was its
			// first key: skip the rest of the step.
			it.Seek(prefixEnd(ckptStepPrefix(runID, step)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("checkpoints of run %s: %w", runID, err)
	}
	return out, nil
}

// LatestCheckpoint returns the complete checkpoint of run runID with the
// highest step, or an error wrapping ErrNotFound.
func (s *Store) LatestCheckpoint(runID string) (CheckpointMeta, error) {
	all, err := s.Checkpoints(runID)
	if err != nil {
		return CheckpointMeta{}, err
	}
	if len(all) == 0 {
		return CheckpointMeta{}, fmt.Errorf("latest checkpoint of run %s: %w", runID, ErrNotFound)
	}
	return all[len(all)-1], nil
}

// LoadCheckpoint returns the checkpoint of run runID at step with its
// tensors in saved order, verifying every tensor's checksum.
func (s *Store) LoadCheckpoint(runID string, step int) (CheckpointMeta, []Tensor, error) {
	var meta CheckpointMeta
	var tensors []Tensor
	err := s.view(func(txn *badger.Txn) error {
		if err := validateRunID(runID); err != nil {
			return err
		}
		if err := validateStep(step); err != nil {
			return err
		}
		if err := getJSON(txn, ckptMetaKey(runID, step), &meta); err != nil {
			return err
		}
		meta.Step = step
		for _, name := range meta.Tensors {
			t, err := readTensor(txn, ckptTensorKey(runID, step, name), name)
			if err != nil {
				return err
			}
			tensors = append(tensors, t)
		}
		return nil
	})
	if err != nil {
		return CheckpointMeta{}, nil, fmt.Errorf("load checkpoint of run %s at step %d: %w", runID, step, err)
	}
	return meta, tensors, nil
}

// DeleteCheckpoint removes the checkpoint of run runID at step, atomically
// (see deleteCheckpoint).
func (s *Store) DeleteCheckpoint(runID string, step int) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateRunID(runID); err != nil {
		return fmt.Errorf("delete checkpoint: %w", err)
	}
	if err := validateStep(step); err != nil {
		return fmt.Errorf("delete checkpoint of run %s: %w", runID, err)
	}
	if err := s.deleteCheckpoint(runID, step); err != nil {
		return fmt.Errorf("delete checkpoint of run %s at step %d: %w", runID, step, err)
	}
	s.maybeGC()
	return nil
}

// deleteCheckpoint removes one checkpoint step in one transaction when it
// fits, else under an intent: the meta first (so it disappears at once),
// then the tensors.
func (s *Store) deleteCheckpoint(runID string, step int) error {
	found := false
	var freed int64
	err := s.update(func(txn *badger.Txn) error {
		old, n, err := stepKeys(txn, runID, step)
		found, freed = len(old) > 0, n
		for _, k := range old {
			if err := txn.Delete(k); err != nil {
				return err
			}
		}
		return err
	})
	if !errors.Is(err, badger.ErrTxnTooBig) {
		if err == nil && !found {
			return ErrNotFound
		}
		if err == nil {
			s.noteDeleted(freed)
		}
		return err
	}
	intent := intentCkptKey(runID, step)
	if err := s.update(func(txn *badger.Txn) error {
		if err := txn.Delete(ckptMetaKey(runID, step)); err != nil {
			return err
		}
		return txn.Set(intent, nil)
	}); err != nil {
		return err
	}
	s.fault(FaultCheckpointDrop, step)
	if _, err := s.deletePrefix(ckptStepPrefix(runID, uint64(step))); err != nil {
		return err
	}
	s.noteDeleted(freed) // counted by the transaction that was too big
	return s.update(func(txn *badger.Txn) error { return txn.Delete(intent) })
}
