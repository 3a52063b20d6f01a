package kv

import (
	"encoding/binary"
	"fmt"
	"math"
	"slices"

	badger "github.com/dgraph-io/badger/v4"
)

// Point is one value of a metric series.
type Point struct {
	Step  int     `json:"step"`
	Value float64 `json:"value"`
}

// flushAt is how many buffered metric values trigger a write.
const flushAt = 4096

// AddMetric records value v of metric name at step for run runID. Values are
// buffered and written in a batch by Flush (called when the buffer fills,
// by reads of metrics, SaveCheckpoint, Sync and Close). Writing a step twice
// keeps the last value. Names may contain "/" ("eval/loss").
func (s *Store) AddMetric(runID, name string, step int, v float64) error {
	if err := s.checkMetric(runID, name, step); err != nil {
		return fmt.Errorf("add metric %s of run %s: %w", name, runID, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	s.pending[string(metricKey(runID, name, step))] = v
	if len(s.pending) >= flushAt {
		return s.flushLocked()
	}
	return nil
}

// AddMetrics records several metrics of one step, as AddMetric.
func (s *Store) AddMetrics(runID string, step int, values map[string]float64) error {
	for name := range values {
		if err := s.checkMetric(runID, name, step); err != nil {
			return fmt.Errorf("add metric %s of run %s: %w", name, runID, err)
		}
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	for name, v := range values {
		s.pending[string(metricKey(runID, name, step))] = v
	}
	if len(s.pending) >= flushAt {
		return s.flushLocked()
	}
	return nil
}

func (s *Store) checkMetric(runID, name string, step int) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validatePart("metric name", name, true); err != nil {
		return err
	}
	if err := validateStep(step); err != nil {
		return err
	}
	s.mu.Lock()
	known := s.knownRuns[runID]
	s.mu.Unlock()
	if known {
		return nil
	}
	if err := s.db.View(func(txn *badger.Txn) error { return requireRun(txn, runID) }); err != nil {
		return err
	}
	s.mu.Lock()
	s.knownRuns[runID] = true
	s.mu.Unlock()
	return nil
}

// Flush writes buffered metric values.
func (s *Store) Flush() error {
	if s.readOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

func (s *Store) flushLocked() error {
	if len(s.pending) == 0 || s.closed.Load() {
		return nil
	}
	keys := make([][]byte, 0, len(s.pending))
	vals := make([][]byte, 0, len(s.pending))
	for k, v := range s.pending {
		keys = append(keys, []byte(k))
		vals = append(vals, encodeFloat(v))
	}
	if err := s.writeBatch(keys, vals); err != nil {
		return fmt.Errorf("flush %d metric values to %s: %w", len(keys), s.dir, err)
	}
	clear(s.pending)
	return nil
}

func encodeFloat(v float64) []byte {
	return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v))
}

func decodeFloat(key, b []byte) (float64, error) {
	if len(b) != 8 {
		return 0, fmt.Errorf("%s: %w: metric value is %d bytes, want 8", displayKey(key), ErrCorrupt, len(b))
	}
	return math.Float64frombits(binary.LittleEndian.Uint64(b)), nil
}

// ReadMetric returns the series name of run runID ordered by step (empty if
// the run has no such metric).
func (s *Store) ReadMetric(runID, name string) ([]Point, error) {
	if err := validatePart("metric name", name, true); err != nil {
		return nil, fmt.Errorf("read metric of run %s: %w", runID, err)
	}
	if err := s.Flush(); err != nil {
		return nil, err
	}
	prefix := metricSeriesPrefix(runID, name)
	var pts []Point
	err := s.db.View(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		return scan(txn, prefix, func(k, v []byte) error {
			if len(k) != len(prefix)+8 {
				return nil // a series whose name extends this one ("eval" vs "eval/loss")
			}
			f, err := decodeFloat(k, v)
			if err != nil {
				return err
			}
			pts = append(pts, Point{Step: int(binary.BigEndian.Uint64(k[len(prefix):])), Value: f})
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read metric %s of run %s: %w", name, runID, err)
	}
	return pts, nil
}

// MetricNames returns the names of run runID's metric series, sorted.
func (s *Store) MetricNames(runID string) ([]string, error) {
	if err := s.Flush(); err != nil {
		return nil, err
	}
	var names []string
	err := s.db.View(func(txn *badger.Txn) error {
		if err := requireRun(txn, runID); err != nil {
			return err
		}
		return scanKeys(txn, metricPrefix(runID), func(k []byte) error {
			if p := parseKey(k); p.kind == kindMetric && (len(names) == 0 || names[len(names)-1] != p.name) {
				names = append(names, p.name)
			}
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("metric names of run %s: %w", runID, err)
	}
	// Keys of "a" and "a/b" interleave (the step bytes sort among the name
	// bytes), so neighbours are not enough to deduplicate.
	slices.Sort(names)
	return slices.Compact(names), nil
}
