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

// valueThreshold is Badger's value threshold: values this long or longer
// go to the value log, written once, and the LSM tree keeps a pointer.
// It is the size of a metric block one step short of full, so a block
// that will not change again (full, or the first block of a series that
// starts at step 1) goes there and compactions move a pointer of a few
// bytes instead of its 2.3 KB: at 10⁸ points the LSM tree held every
// block and Badger's compactions took most of the ingest's CPU and most
// of its memory (table builders). A block still filling is rewritten
// at every flush; it stays in the LSM tree, whose compactions discard
// the old versions (the value log keeps them until a GC).
const valueThreshold = blockHdr + 9*(blockSteps-1)

// flushAt is how many buffered metric values trigger a write; flushEvery
// how old the oldest buffered value (or progress) may get before the
// background flusher writes it.
const (
	flushAt    = 1 << 16
	flushEvery = 500 * time.Millisecond
)

// series buffers the unwritten points of one series, in arrival order.
type series struct{ pts []Point }

// pendingMetrics is the write buffer: run id -> metric name -> points. A
// flush keeps the entries of runs that had points in it (their slices
// truncated, so a training run's steps reuse them) and drops the others.
type pendingMetrics struct {
	runs map[string]map[string]*series
	n    int
	// free holds the point slices of series dropped by written (at most
	// flushAt points of capacity in all), for the next new series: in a
	// sweep every run's series would otherwise grow theirs from nothing.
	free    [][]Point
	freeCap int
}

func (p *pendingMetrics) dropRun(runID string) {
	for _, sr := range p.runs[runID] {
		p.n -= len(sr.pts)
	}
	delete(p.runs, runID)
}

// hasRun reports whether run runID has buffered points.
func (p *pendingMetrics) hasRun(runID string) bool {
	for _, sr := range p.runs[runID] {
		if len(sr.pts) > 0 {
			return true
		}
	}
	return false
}

// written empties the buffer after a flush, keeping what the next steps
// of the runs just written will reuse.
func (p *pendingMetrics) written() {
	for runID, byName := range p.runs {
		active := false
		for name, sr := range byName {
			if len(sr.pts) == 0 {
				if c := cap(sr.pts); c > 0 && p.freeCap+c <= flushAt {
					p.free = append(p.free, sr.pts)
					p.freeCap += c
				}
				delete(byName, name)
				continue
			}
			active = true
			sr.pts = sr.pts[:0]
		}
		if !active {
			delete(p.runs, runID)
		}
	}
	p.n = 0
}

// AddMetric records value v of metric name at step for run runID. Values are
// buffered and written in batches by Flush: when the buffer fills, every
// half second in the background, and on reads of metrics, SaveCheckpoint,
// Sync and Close. Writing a step twice keeps the last value. Names may
// contain "/" ("eval/loss").
func (s *Store) AddMetric(runID, name string, step int, v float64) error {
	return s.AddMetrics(runID, step, map[string]float64{name: v})
}

// valueRef is one value of an AddMetrics call on its way into the buffer.
type valueRef struct {
	name string
	sr   *series // nil: the series is not buffered yet
	v    float64
}

// AddMetrics records several metrics of one step, as AddMetric.
func (s *Store) AddMetrics(runID string, step int, values map[string]float64) error {
	if err := s.checkRunForMetrics(runID, step); err != nil {
		return fmt.Errorf("add metrics of run %s at step %d: %w", runID, step, err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	// One map lookup per value on the common path (a series already in the
	// buffer); names are validated, before anything is buffered, only the
	// first time this process sees them.
	byName := s.pending.runs[runID]
	known := s.knownNames[runID]
	var stack [16]valueRef
	refs := stack[:0]
	for name, v := range values {
		sr := byName[name]
		if sr == nil && !known[name] {
			if err := validatePart("metric name", name, true); err != nil {
				return fmt.Errorf("add metric %s of run %s: %w", name, runID, err)
			}
		}
		refs = append(refs, valueRef{name, sr, v})
	}
	if byName == nil {
		byName = map[string]*series{}
		s.pending.runs[runID] = byName
	}
	for _, r := range refs {
		sr := r.sr
		if sr == nil {
			if known == nil {
				known = map[string]bool{}
				s.knownNames[runID] = known
			}
			known[r.name] = true
			sr = &series{}
			if f := s.pending.free; len(f) > 0 {
				sr.pts = f[len(f)-1]
				s.pending.free, s.pending.freeCap = f[:len(f)-1], s.pending.freeCap-cap(sr.pts)
			}
			byName[r.name] = sr
		}
		sr.pts = append(sr.pts, Point{step, r.v})
	}
	if s.pending.n == 0 && len(s.progress) == 0 { // the buffer was empty
		s.pendingSince = time.Now()
	}
	s.pending.n += len(refs)
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
	if err := s.view(func(txn *badger.Txn) error { return requireRun(txn, runID) }); err != nil {
		return err
	}
	s.mu.Lock()
	s.knownRuns[runID] = true
	s.mu.Unlock()
	return nil
}

// Flush writes buffered metric values and progress.
func (s *Store) Flush() error {
	if s.ro.Load() {
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
	// Blocks are encoded into one buffer per flush rather than one
	// allocation each; a full buffer is about flushAt*9 bytes.
	arena := make([]byte, 0, blockHdr*len(s.pending.runs)*8+9*s.pending.n+9*blockSteps)
	err := s.view(func(txn *badger.Txn) error {
		for runID, byName := range s.pending.runs {
			for name, sr := range byName {
				if len(sr.pts) == 0 {
					continue
				}
				var err error
				keys, vals, arena, err = mergeSeries(txn, runID, name, sr.pts, keys, vals, arena)
				if err != nil {
					return err
				}
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
	s.pending.written()
	s.notePageOut(len(arena))
	return nil
}

// mergeSeries appends to keys and vals the blocks to write for new points
// of one series, encoding them into arena.
func mergeSeries(txn *badger.Txn, runID, name string, pts []Point, keys, vals [][]byte, arena []byte) ([][]byte, [][]byte, []byte, error) {
	// Stable: of two values for one step, the later one is kept. Steps
	// almost always arrive in order, so check before sorting.
	if !slices.IsSortedFunc(pts, func(a, b Point) int { return a.Step - b.Step }) {
		slices.SortStableFunc(pts, func(a, b Point) int { return a.Step - b.Step })
	}
	var old, merged []Point
	for i := 0; i < len(pts); {
		start := blockStart(pts[i].Step)
		j := i
		for j < len(pts) && pts[j].Step < start+blockSteps {
			j++
		}
		key := metricKey(runID, name, start)
		old = old[:0]
		item, gerr := txn.Get(key)
		switch {
		case gerr == nil:
			if err := item.Value(func(v []byte) error {
				var derr error
				old, derr = appendBlock(old, key, v, start)
				return derr
			}); err != nil {
				return keys, vals, arena, err
			}
		case !errors.Is(gerr, badger.ErrKeyNotFound):
			return keys, vals, arena, gerr
		}
		merged = appendMerged(merged[:0], old, pts[i:j])
		n := len(arena)
		arena = appendEncodedBlock(arena, merged, start)
		keys = append(keys, key)
		vals = append(vals, arena[n:len(arena):len(arena)])
		i = j
	}
	return keys, vals, arena, nil
}

// mergePoints merges sorted points, b's value winning on equal steps (and,
// within b, the last of equal steps).
func mergePoints(a, b []Point) []Point {
	return appendMerged(make([]Point, 0, len(a)+len(b)), a, b)
}

// appendMerged is mergePoints appending to out.
func appendMerged(out, a, b []Point) []Point {
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
	return appendEncodedBlock(nil, pts, start)
}

// appendEncodedBlock appends the encoding of pts to dst.
func appendEncodedBlock(dst []byte, pts []Point, start int) []byte {
	n := len(pts)
	dst = slices.Grow(dst, blockHdr+9*n)
	b := dst[len(dst) : len(dst)+blockHdr+9*n]
	b[0], b[1] = blockMagic, blockVersion
	binary.LittleEndian.PutUint16(b[2:], uint16(n))
	for i, p := range pts {
		b[blockHdr+i] = byte(p.Step - start)
		binary.LittleEndian.PutUint64(b[blockHdr+n+8*i:], math.Float64bits(p.Value))
	}
	binary.LittleEndian.PutUint32(b[4:], blockChecksum(b))
	return dst[:len(dst)+len(b)]
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
	err := s.view(func(txn *badger.Txn) error {
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
	if s.ro.Load() {
		return nil
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.pending.hasRun(runID) {
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
	err := s.view(func(txn *badger.Txn) error {
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

// pageOut triggers pageOutSealed once per value-log file's worth of
// flushed metric blocks, about when Badger seals a file.
type pageOut struct {
	written int64 // bytes flushed since the last call
	off     bool  // the kernel refused: stop trying
}

func (s *Store) notePageOut(n int) {
	p := &s.pageOut
	if p.off {
		return
	}
	if p.written += int64(n); p.written < MaxValueBytes {
		return
	}
	p.written = 0
	p.off = !pageOutSealed(s.dir)
}
