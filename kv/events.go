package kv

import (
	"encoding/binary"
	"encoding/json"
	"fmt"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Event is a note in a run's log: a resume, a NaN, a learning-rate change, a
// warning.
type Event struct {
	Seq     uint64    `json:"seq"` // position in the run's log, from 1; set by AddEvent
	Step    int       `json:"step"`
	Kind    string    `json:"kind"`
	Message string    `json:"message"`
	Time    time.Time `json:"time"`
}

// AddEvent appends e to the log of run runID. A zero e.Time becomes now.
func (s *Store) AddEvent(runID string, e Event) error {
	if err := s.addEvent(runID, e); err != nil {
		return fmt.Errorf("add event to run %s: %w", runID, err)
	}
	return nil
}

func (s *Store) addEvent(runID string, e Event) error {
	e.Message = s.redactText(e.Message)
	if err := s.writable(); err != nil {
		return err
	}
	if e.Time.IsZero() {
		e.Time = time.Now()
	}
	// Sequence numbers come from one counter per run, guarded by s.mu: one
	// process writes the store, so nothing else allocates them.
	s.mu.Lock()
	defer s.mu.Unlock()
	next, ok := s.eventSeq[runID]
	err := s.update(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		if !ok {
			last, err := lastEventSeq(txn, runID)
			if err != nil {
				return err
			}
			next = last + 1
		}
		e.Seq = next
		b, err := json.Marshal(e)
		if err != nil {
			return err
		}
		return txn.Set(eventKey(runID, e.Seq), b)
	})
	if err != nil {
		return err
	}
	s.eventSeq[runID] = next + 1
	return nil
}

func lastEventSeq(txn *badger.Txn, runID string) (uint64, error) {
	prefix := eventPrefix(runID)
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix, Reverse: true})
	defer it.Close()
	it.Seek(prefixEnd(prefix))
	if !it.ValidForPrefix(prefix) {
		return 0, nil
	}
	k := it.Item().Key()
	if len(k) != len(prefix)+8 {
		return 0, fmt.Errorf("%s: %w: malformed event key", displayKey(k), ErrCorrupt)
	}
	return binary.BigEndian.Uint64(k[len(prefix):]), nil
}

// Events returns the log of run runID in order.
func (s *Store) Events(runID string) ([]Event, error) {
	var out []Event
	err := s.view(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		return scan(txn, eventPrefix(runID), func(k, v []byte) error {
			var e Event
			if err := decodeJSON(k, v, &e); err != nil {
				return err
			}
			if p := parseKey(k); p.kind == kindEvent {
				e.Seq = p.step
			}
			out = append(out, e)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("events of run %s: %w", runID, err)
	}
	return out, nil
}
