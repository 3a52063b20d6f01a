package kv

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
)

// Kinds of collected values.
const (
	KindTensor = "tensor" // Collected.Tensor is set
	KindJSON   = "json"   // Collected.Data is a JSON document
	KindBytes  = "bytes"  // Collected.Data is opaque
)

// Stored values under run/<id>/collect/ start with one of these tags.
var kindTags = map[string]byte{KindTensor: 't', KindJSON: 'j', KindBytes: 'b'}

// Collected is one value recorded by a collector at a step.
type Collected struct {
	Collector string  `json:"collector"`
	Step      int     `json:"step"`
	Name      string  `json:"name"`
	Kind      string  `json:"kind"` // KindTensor, KindJSON or KindBytes
	Tensor    *Tensor `json:"tensor,omitempty"`
	Data      []byte  `json:"data,omitempty"`
}

// PutCollected stores items recorded by collector at step for run runID, in
// one transaction. Each item needs Name and Kind, and Tensor or Data to
// match the kind; its Collector and Step fields are ignored. A name already
// stored at that step is replaced.
func (s *Store) PutCollected(runID, collector string, step int, items ...Collected) error {
	if err := s.putCollected(runID, collector, step, items); err != nil {
		return fmt.Errorf("put %s values of run %s at step %d: %w", collector, runID, step, err)
	}
	return nil
}

func (s *Store) putCollected(runID, collector string, step int, items []Collected) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validatePart("collector", collector, false); err != nil {
		return err
	}
	if err := validateStep(step); err != nil {
		return err
	}
	keys := make([][]byte, len(items))
	vals := make([][]byte, len(items))
	for i, it := range items {
		if err := validatePart("collected name", it.Name, true); err != nil {
			return err
		}
		tag, ok := kindTags[it.Kind]
		if !ok {
			return fmt.Errorf("%s: unknown kind %q", it.Name, it.Kind)
		}
		var payload []byte
		switch it.Kind {
		case KindTensor:
			if it.Tensor == nil {
				return fmt.Errorf("%s: kind tensor without a tensor", it.Name)
			}
			b, err := encodeTensor(*it.Tensor)
			if err != nil {
				return err
			}
			payload = b
		case KindJSON:
			if !json.Valid(it.Data) {
				return fmt.Errorf("%s: data is not valid JSON", it.Name)
			}
			payload = it.Data
		case KindBytes:
			payload = it.Data
		}
		if len(payload)+1 > MaxValueBytes {
			return fmt.Errorf("%s: %d bytes, over the store's limit of %d", it.Name, len(payload)+1, MaxValueBytes)
		}
		keys[i] = collectKey(runID, collector, step, it.Name)
		vals[i] = append([]byte{tag}, payload...)
	}
	return s.update(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		for i := range keys {
			if err := txn.Set(keys[i], vals[i]); err != nil {
				return err
			}
		}
		return nil
	})
}

// PutCollectedTensor stores tensor t (under t.Name) as recorded by collector
// at step.
func (s *Store) PutCollectedTensor(runID, collector string, step int, t Tensor) error {
	return s.PutCollected(runID, collector, step, Collected{Name: t.Name, Kind: KindTensor, Tensor: &t})
}

// PutCollectedJSON stores v, marshalled with encoding/json, as recorded by
// collector at step.
func (s *Store) PutCollectedJSON(runID, collector string, step int, name string, v any) error {
	b, err := json.Marshal(v)
	if err != nil {
		return fmt.Errorf("put %s value %s of run %s at step %d: %w", collector, name, runID, step, err)
	}
	return s.PutCollected(runID, collector, step, Collected{Name: name, Kind: KindJSON, Data: b})
}

// PutCollectedBytes stores opaque bytes as recorded by collector at step.
func (s *Store) PutCollectedBytes(runID, collector string, step int, name string, b []byte) error {
	return s.PutCollected(runID, collector, step, Collected{Name: name, Kind: KindBytes, Data: b})
}

// decodeCollected decodes a stored collected value.
func decodeCollected(key, v []byte, collector string, step uint64, name string) (Collected, error) {
	c := Collected{Collector: collector, Step: int(step), Name: name}
	if len(v) == 0 {
		return c, fmt.Errorf("%s: %w: empty value", displayKey(key), ErrCorrupt)
	}
	switch v[0] {
	case 't':
		t, err := decodeTensorAt(key, v[1:], name)
		if err != nil {
			return c, err
		}
		c.Kind, c.Tensor = KindTensor, &t
	case 'j':
		if !json.Valid(v[1:]) {
			return c, fmt.Errorf("%s: %w: invalid JSON", displayKey(key), ErrCorrupt)
		}
		c.Kind, c.Data = KindJSON, slices.Clone(v[1:])
	case 'b':
		c.Kind, c.Data = KindBytes, slices.Clone(v[1:])
	default:
		return c, fmt.Errorf("%s: %w: unknown kind tag %q", displayKey(key), ErrCorrupt, v[0])
	}
	return c, nil
}

// ReadCollected returns everything collector recorded for run runID,
// ordered by step then name.
func (s *Store) ReadCollected(runID, collector string) ([]Collected, error) {
	out, err := s.readCollected(runID, collector, -1)
	if err != nil {
		return nil, fmt.Errorf("read %s values of run %s: %w", collector, runID, err)
	}
	return out, nil
}

// ReadCollectedStep returns what collector recorded for run runID at step,
// ordered by name.
func (s *Store) ReadCollectedStep(runID, collector string, step int) ([]Collected, error) {
	if err := validateStep(step); err != nil {
		return nil, fmt.Errorf("read %s values of run %s: %w", collector, runID, err)
	}
	out, err := s.readCollected(runID, collector, step)
	if err != nil {
		return nil, fmt.Errorf("read %s values of run %s at step %d: %w", collector, runID, step, err)
	}
	return out, nil
}

func (s *Store) readCollected(runID, collector string, step int) ([]Collected, error) {
	if err := validatePart("collector", collector, false); err != nil {
		return nil, err
	}
	prefix := collectorPrefix(runID, collector)
	if step >= 0 {
		prefix = collectStepPrefix(runID, collector, uint64(step))
	}
	var out []Collected
	err := s.view(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		return scan(txn, prefix, func(k, v []byte) error {
			p := parseKey(k)
			if p.kind != kindCollect {
				return fmt.Errorf("%s: %w: malformed key", displayKey(k), ErrCorrupt)
			}
			c, err := decodeCollected(k, v, collector, p.step, p.name)
			if err != nil {
				return err
			}
			out = append(out, c)
			return nil
		})
	})
	return out, err
}

// GetCollected returns one value recorded by collector at step.
func (s *Store) GetCollected(runID, collector string, step int, name string) (Collected, error) {
	var c Collected
	err := s.view(func(txn *badger.Txn) error {
		if err := validatePart("collector", collector, false); err != nil {
			return err
		}
		if err := validateStep(step); err != nil {
			return err
		}
		key := collectKey(runID, collector, step, name)
		v, err := getValue(txn, key)
		if err != nil {
			return err
		}
		c, err = decodeCollected(key, v, collector, uint64(step), name)
		return err
	})
	if err != nil {
		return Collected{}, fmt.Errorf("get %s value %s of run %s at step %d: %w", collector, name, runID, step, err)
	}
	return c, nil
}

// Collectors returns the names of the collectors that recorded anything for
// run runID, sorted.
func (s *Store) Collectors(runID string) ([]string, error) {
	var names []string
	err := s.view(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		prefix := collectPrefix(runID)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			p := parseKey(it.Item().Key())
			if p.kind != kindCollect {
				it.Next()
				continue
			}
			names = append(names, p.collector)
			it.Seek(prefixEnd(collectorPrefix(runID, p.collector)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("collectors of run %s: %w", runID, err)
	}
	slices.Sort(names) // key order puts "a.b" before "a"
	return names, nil
}

// CollectedSteps returns the steps at which collector recorded anything for
// run runID, ascending.
func (s *Store) CollectedSteps(runID, collector string) ([]int, error) {
	var steps []int
	err := s.view(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		if err := validatePart("collector", collector, false); err != nil {
			return err
		}
		prefix := collectorPrefix(runID, collector)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); {
			k := it.Item().Key()
			if len(k) < len(prefix)+8 {
				it.Next()
				continue
			}
			step := binary.BigEndian.Uint64(k[len(prefix):])
			steps = append(steps, int(step))
			it.Seek(prefixEnd(collectStepPrefix(runID, collector, step)))
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("steps of %s in run %s: %w", collector, runID, err)
	}
	return steps, nil
}
