package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"hash/crc32"
	"math"
	"slices"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Point is one value of a metric series.
type Point struct {
	Step  int     `json:"step"`
	Value float64 `json:"value"`
}

// Metric series are stored in blocks of blockSteps consecutive steps, one
// key per block: a 10⁵-point series is 391 keys rather than 10⁵, so a
// series reads in a few milliseconds and ingest writes one key per block
// per flush. A block's key carries its first step (a multiple of
// blockSteps). Block layout (integers little-endian):
//
//	0   1  magic 'M'
//	1   1  format version (1)
//	2   2  point count n (1..blockSteps)
//	4   4  CRC-32C of bytes 0..3 and 8..end
//	8   n  offsets of the points' steps from the block's first step, increasing
//	8+n 8n values, float64 bits
//
// A format-1 point was 8 bytes, a length no block has.
const (
	blockSteps   = 256
	blockMagic   = 'M'
	blockVersion = 1
	blockHdr     = 8
)

func blockStart(step int) int { return step &^ (blockSteps - 1) }

// flushAt is how many buffered metric values trigger a write; flushEvery
// how old the oldest buffered value (or progress) may get before the
// background flusher writes it.
const (
	flushAt    = 1 << 16
	flushEvery = 500 * time.Millisecond
)

// series buffers the unwritten points of one series, in arrival order.
type series struct{ pts []Point }

// pendingMetrics is the write buffer: run id -> metric name -> points.
type pendingMetrics struct {
	runs map[string]map[string]*series
	n    int
}

func (p *pendingMetrics) add(runID, name string, step int, v float64) {
	byName := p.runs[runID]
	if byName == nil {
		byName = map[string]*series{}
		p.runs[runID] = byName
	}
	sr := byName[name]
	if sr == nil {
		sr = &series{}
		byName[name] = sr
	}
	sr.pts = append(sr.pts, Point{step, v})
	p.n++
}

func (p *pendingMetrics) dropRun(runID string) {
	for _, sr := range p.runs[runID] {
		p.n -= len(sr.pts)
	}
	delete(p.runs, runID)
}

// AddMetric records value v of metric name at step for run runID. Values are
// buffered and written in batches by Flush: when the buffer fills, every
// half second in the background, and on reads of metrics, SaveCheckpoint,
// Sync and Close. Writing a step twice keeps the last value. Names may
// contain "/" ("eval/loss").
func (s *Store) AddMetric(runID, name string, step int, v float64) error {
	return s.AddMetrics(runID, step, map[string]float64{name: v})
}

// AddMetrics records several metrics of one step, as AddMetric.
func (s *Store) AddMetrics(runID string, step int, values map[string]float64) error {
	if err := s.checkRunForMetrics(runID, step); err != nil {
		return fmt.Errorf("add metrics of run %s at step %d: %w", runID, step, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	known := s.knownNames[runID]
	for name := range values {
		if !known[name] {
			if err := validatePart("metric name", name, true); err != nil {
				return fmt.Errorf("add metric %s of run %s: %w", name, runID, err)
			}
		}
	}
	if known == nil {
		known = map[string]bool{}
		s.knownNames[runID] = known
	}
	for name, v := range values {
		known[name] = true
		s.pending.add(runID, name, step, v)
	}
	if s.pending.n == len(values) && len(s.progress) == 0 { // the buffer was empty
		s.pendingSince = time.Now()
	}
	if s.pending.n >= flushAt {
		return s.flushLocked()
	}
	return nil
}

func (s *Store) checkRunForMetrics(runID string, step int) error {
	if err := s.writable(); err != nil {
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

// Flush writes buffered metric values and progress.
func (s *Store) Flush() error {
	if s.readOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.flushLocked()
}

// flushLocked writes every buffered series: for each block it touches, the
// stored block (if any) is read, merged with the new points (new values win)
// and written back, all through one WriteBatch.
func (s *Store) flushLocked() error {
	if s.closed.Load() {
		return nil
	}
	if err := s.flushProgressLocked(); err != nil {
		return err
	}
	if s.pending.n == 0 {
		return nil
	}
	var keys, vals [][]byte
	err := s.db.View(func(txn *badger.Txn) error {
		for runID, byName := range s.pending.runs {
			for name, sr := range byName {
				k, v, err := mergeSeries(txn, runID, name, sr.pts)
				if err != nil {
					return err
				}
				keys, vals = append(keys, k...), append(vals, v...)
			}
		}
		return nil
	})
	if err == nil {
		err = s.writeBatch(keys, vals)
	}
	if err != nil {
		return fmt.Errorf("flush %d metric values to %s: %w", s.pending.n, s.dir, err)
	}
	clear(s.pending.runs)
	s.pending.n = 0
	return nil
}

// mergeSeries returns the blocks to write for new points of one series.
func mergeSeries(txn *badger.Txn, runID, name string, pts []Point) (keys, vals [][]byte, err error) {
	// Stable: of two values for one step, the later one is kept.
	slices.SortStableFunc(pts, func(a, b Point) int { return a.Step - b.Step })
	for i := 0; i < len(pts); {
		start := blockStart(pts[i].Step)
		j := i
		for j < len(pts) && pts[j].Step < start+blockSteps {
			j++
		}
		key := metricKey(runID, name, start)
		var old []Point
		item, gerr := txn.Get(key)
		switch {
		case gerr == nil:
			if err := item.Value(func(v []byte) error {
				var derr error
				old, derr = decodeBlock(key, v, start)
				return derr
			}); err != nil {
				return nil, nil, err
			}
		case !errors.Is(gerr, badger.ErrKeyNotFound):
			return nil, nil, gerr
		}
		keys = append(keys, key)
		vals = append(vals, encodeBlock(mergePoints(old, pts[i:j]), start))
		i = j
	}
	return keys, vals, nil
}

// mergePoints merges sorted points, b's value winning on equal steps (and,
// within b, the last of equal steps).
func mergePoints(a, b []Point) []Point {
	out := make([]Point, 0, len(a)+len(b))
	i, j := 0, 0
	for i < len(a) || j < len(b) {
		switch {
		case j == len(b) || (i < len(a) && a[i].Step < b[j].Step):
			out = append(out, a[i])
			i++
		default:
			if i < len(a) && a[i].Step == b[j].Step {
				i++
			}
			if n := len(out); n > 0 && out[n-1].Step == b[j].Step {
				out[n-1] = b[j]
			} else {
				out = append(out, b[j])
			}
			j++
		}
	}
	return out
}

var blockCRC = crc32.MakeTable(crc32.Castagnoli)

func blockChecksum(b []byte) uint32 {
	c := crc32.Update(0, blockCRC, b[:4])
	return crc32.Update(c, blockCRC, b[blockHdr:])
}

// encodeBlock encodes sorted, distinct points of the block starting at start.
func encodeBlock(pts []Point, start int) []byte {
	n := len(pts)
	b := make([]byte, blockHdr+9*n)
	b[0], b[1] = blockMagic, blockVersion
	binary.LittleEndian.PutUint16(b[2:], uint16(n))
	for i, p := range pts {
		b[blockHdr+i] = byte(p.Step - start)
		binary.LittleEndian.PutUint64(b[blockHdr+n+8*i:], math.Float64bits(p.Value))
	}
	binary.LittleEndian.PutUint32(b[4:], blockChecksum(b))
	return b
}

// decodeBlock parses a block; errors wrap ErrCorrupt and name the key.
func decodeBlock(key, b []byte, start int) ([]Point, error) {
	return appendBlock(nil, key, b, start)
}

func appendBlock(dst []Point, key, b []byte, start int) ([]Point, error) {
	corrupt := func(format string, args ...any) ([]Point, error) {
		return dst, fmt.Errorf("%s: %w: metric block: %s", displayKey(key), ErrCorrupt, fmt.Sprintf(format, args...))
	}
	if len(b) < blockHdr || b[0] != blockMagic {
		return corrupt("%d bytes, not a block", len(b))
	}
	if b[1] != blockVersion {
		return corrupt("unknown version %d", b[1])
	}
	n := int(binary.LittleEndian.Uint16(b[2:]))
	if n == 0 || n > blockSteps || len(b) != blockHdr+9*n {
		return corrupt("%d points in %d bytes", n, len(b))
	}
	if want, got := binary.LittleEndian.Uint32(b[4:]), blockChecksum(b); want != got {
		return corrupt("checksum mismatch (stored %08x, computed %08x)", want, got)
	}
	if start%blockSteps != 0 {
		return corrupt("block starts at step %d, not a multiple of %d", start, blockSteps)
	}
	prev := -1
	for i := range n {
		off := int(b[blockHdr+i])
		if off <= prev {
			return corrupt("steps out of order")
		}
		prev = off
		dst = append(dst, Point{start + off, math.Float64frombits(binary.LittleEndian.Uint64(b[blockHdr+n+8*i:]))})
	}
	return dst, nil
}

// ReadMetric returns the series name of run runID ordered by step (empty if
// the run has no such metric).
func (s *Store) ReadMetric(runID, name string) ([]Point, error) {
	if err := validatePart("metric name", name, true); err != nil {
		return nil, fmt.Errorf("read metric of run %s: %w", runID, err)
	}
	if err := s.flushRun(runID); err != nil {
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
			var err error
			pts, err = appendBlock(pts, k, v, int(binary.BigEndian.Uint64(k[len(prefix):])))
			return err
		})
	})
	if err != nil {
		return nil, fmt.Errorf("read metric %s of run %s: %w", name, runID, err)
	}
	return pts, nil
}

// flushRun flushes the buffer if it holds points of run runID.
func (s *Store) flushRun(runID string) error {
	if s.readOnly {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.pending.runs[runID] == nil {
		return nil
	}
	return s.flushLocked()
}

// MetricNames returns the names of run runID's metric series, sorted.
func (s *Store) MetricNames(runID string) ([]string, error) {
	if err := s.flushRun(runID); err != nil {
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
