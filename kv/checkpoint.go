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
// returning the keys and values and the names in order.
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
		if len(b) > MaxValueBytes {
			return nil, nil, nil, fmt.Errorf("tensor %q is %d bytes encoded, over the store's limit of %d", t.Name, len(b), MaxValueBytes)
		}
		keys = append(keys, keyOf(t.Name))
		vals = append(vals, b)
		names = append(names, t.Name)
	}
	return keys, vals, names, nil
}

// SaveCheckpoint stores a checkpoint of run runID at meta.Step. The tensors
// and the meta go in one transaction when they fit; a larger checkpoint is
// written tensors first and meta last, so it becomes visible (to
// Checkpoints, LoadCheckpoint) only once complete, and a crash in between
// leaves invisible tensors that the next save of that step replaces and
// Fsck reports. Saving a step again replaces that checkpoint. Buffered
// metrics are flushed, and everything is synced to disk before returning.
// meta.Tensors is set to the tensors' names; a zero meta.Time to now.
func (s *Store) SaveCheckpoint(runID string, meta CheckpointMeta, tensors []Tensor) error {
	err := s.saveCheckpoint(runID, meta, tensors)
	if err != nil {
		return fmt.Errorf("save checkpoint of run %s at step %d: %w", runID, meta.Step, err)
	}
	return nil
}

func (s *Store) saveCheckpoint(runID string, meta CheckpointMeta, tensors []Tensor) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateStep(meta.Step); err != nil {
		return err
	}
	if err := s.db.View(func(txn *badger.Txn) error { return requireRun(txn, runID) }); err != nil {
		return err
	}
	step := meta.Step
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
	// Hide any previous checkpoint at this step before touching its tensors.
	if err := s.deleteCheckpoint(runID, step); err != nil && !errors.Is(err, ErrNotFound) {
		return err
	}
	// One transaction when it fits (the common case: an adapter and its
	// optimizer state), so a process killed mid-save leaves either the
	// whole checkpoint or none of it; larger ones go in batches, with the
	// meta last as the commit point.
	err = s.update(func(txn *badger.Txn) error {
		for i := range keys {
			if err := txn.Set(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return txn.Set(ckptMetaKey(runID, step), mb)
	})
	if errors.Is(err, badger.ErrTxnTooBig) {
		if err = s.writeBatch(keys, vals); err == nil {
			err = s.update(func(txn *badger.Txn) error { return txn.Set(ckptMetaKey(runID, step), mb) })
		}
	}
	if err != nil {
		return err
	}
	return s.db.Sync()
}

// Checkpoints returns the complete checkpoints of run runID, by step.
func (s *Store) Checkpoints(runID string) ([]CheckpointMeta, error) {
	var out []CheckpointMeta
	err := s.db.View(func(txn *badger.Txn) error {
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
	err := s.db.View(func(txn *badger.Txn) error {
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

// DeleteCheckpoint removes the checkpoint of run runID at step: the meta
// first, so it disappears at once, then its tensors.
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
	return nil
}

func (s *Store) deleteCheckpoint(runID string, step int) error {
	found := false
	err := s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, ckptMetaKey(runID, step))
		if err != nil || !ok {
			return err
		}
		found = true
		return txn.Delete(ckptMetaKey(runID, step))
	})
	if err != nil {
		return err
	}
	n, err := s.deletePrefix(ckptStepPrefix(runID, uint64(step)))
	if err != nil {
		return err
	}
	if !found && n == 0 {
		return ErrNotFound
	}
	return nil
}
