package kv

// Reclaiming disk space (value-log GC).
//
// Values of valueThreshold bytes or more (full metric blocks, checkpoint
// tensors, chunk parts) live in Badger's value log, and deleting them
// frees nothing by itself: only db.RunValueLogGC gives space back, by
// rewriting a sealed value-log file whose discard count (bytes known to
// be garbage) is at least gcRatio of its size, and Badger fills those
// counts only in compactions, when a delete meets the version it shadows.
// Checkpoint keys are a few hundred pointers, so a rotating run's deletes
// sat in the 16 MB memtable for hundreds of checkpoints, no compaction saw
// them, and GC found nothing to rewrite however much was deleted.
//
// A pass therefore first forces the compaction: it writes a short-lived
// sentinel key and drops its prefix (db.DropPrefix), which flushes the
// memtables to level 0 and compacts level 0 into the next level, counting
// every deleted value it meets. GC (lens gc) also flattens the tree, so
// deletes and values on different levels meet too. Then RunValueLogGC
// runs until no sealed file qualifies. The value-log file being written is
// never rewritten, which is why its size (vlogFileBytes) bounds what a
// pass leaves behind.
//
// Passes run by themselves: after SaveCheckpoint or DeleteCheckpoint once
// 2·vlogFileBytes have been deleted since the last pass (enough for a
// sealed file to qualify), and at Close when anything was deleted.
// DropPrefix makes Badger refuse other writes while it runs (they fail
// with badger.ErrBlockedWrites), so a pass holds s.mu, which the metric
// buffer and the background flusher take, and runs from the goroutine
// that saved or deleted: lens writes a store from one goroutine plus the
// flusher. A write from yet another goroutine during those milliseconds
// would fail; commit retrying ErrBlockedWrites would close that gap.
//
// A kill during a pass loses nothing: the sentinel carries a TTL (a crash
// leaves nothing visible after gcSentinelTTL), compactions commit through
// Badger's manifest, and a rewrite moves live values into the current file
// before the old one is deleted.

import (
	"errors"
	"fmt"
	"io/fs"
	"path/filepath"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Fault points of a GC pass (see Options.Fault).
const (
	FaultGCCompacted = "gc/compacted" // the forced compaction done, no file rewritten yet (step 0)
	FaultGCRewrote   = "gc/rewrote"   // step files rewritten so far
)

// vlogFileBytes is Badger's value-log file size (ValueLogFileSize). A
// variable so that tests can fill several files quickly.
var vlogFileBytes int64 = MaxValueBytes

// autoGC lets tests turn the automatic passes off.
var autoGC = true

const (
	// gcRatio: a sealed value-log file is rewritten when at least half of
	// it is garbage, so after a pass every sealed file is at least half
	// live, and rewriting costs at most one live byte per garbage byte.
	gcRatio = 0.5
	// gcSentinel is the key whose DropPrefix forces the compaction. It
	// never outlives the pass but by gcSentinelTTL after a crash.
	gcSentinel    = "gc/flush"
	gcSentinelTTL = 2 * time.Second
)

// GCStats describes one GC pass. Sizes are the bytes the store's
// directory occupies on disk (allocated blocks where the platform says).
type GCStats struct {
	BytesBefore    int64   `json:"bytes_before"`
	BytesAfter     int64   `json:"bytes_after"`
	FilesRewritten int     `json:"files_rewritten"`
	Seconds        float64 `json:"seconds"`
}

// gcState is the Store's GC bookkeeping.
type gcState struct {
	deleted atomic.Int64 // value bytes deleted since the last pass
	pass    sync.Mutex   // one pass at a time
}

// noteDeleted records n bytes of deleted values, for the automatic passes.
func (s *Store) noteDeleted(n int64) {
	if n > 0 {
		s.gc.deleted.Add(n)
	}
}

// GC reclaims the disk space of deleted runs and checkpoints now: it
// compacts the whole tree, so that Badger sees every delete, and rewrites
// each sealed value-log file that is at least half garbage. It can take a
// while on a large store; metric writes wait for its compaction step,
// other writes must not run concurrently with it (see the top of gc.go).
func (s *Store) GC() (GCStats, error) {
	if err := s.writable(); err != nil {
		return GCStats{}, err
	}
	st, err := s.gcPass(true)
	if err != nil {
		return st, fmt.Errorf("gc store %s: %w", s.dir, err)
	}
	return st, nil
}

// maybeGC runs a light pass when enough has been deleted since the last.
// Its failure is logged, not returned: the write that called it succeeded.
func (s *Store) maybeGC() {
	if !autoGC || s.gc.deleted.Load() < 2*vlogFileBytes {
		return
	}
	if st, err := s.gcPass(false); err != nil {
		s.log.Warn("value-log GC failed", "store", s.dir, "err", err.Error())
	} else {
		s.log.Debug("value-log GC", "store", s.dir, "before", st.BytesBefore, "after", st.BytesAfter, "files", st.FilesRewritten)
	}
}

// gcAtClose runs a light pass before Close when this session deleted
// anything. The caller has stopped the flusher and holds no lock.
func (s *Store) gcAtClose() {
	if !autoGC || s.gc.deleted.Load() == 0 || s.ReadOnly() || s.closed.Load() || s.db == nil {
		return
	}
	if _, err := s.gcPass(false); err != nil {
		s.log.Warn("value-log GC at close failed", "store", s.dir, "err", err.Error())
	}
}

// gcPass forces the compaction (all levels when full) and rewrites every
// qualifying value-log file.
func (s *Store) gcPass(full bool) (GCStats, error) {
	s.gc.pass.Lock()
	defer s.gc.pass.Unlock()
	start := time.Now()
	st := GCStats{BytesBefore: diskBytes(s.dir)}
	deleted := s.gc.deleted.Load()

	s.mu.Lock()
	err := s.flushLocked()
	if err == nil {
		err = s.compactForGC(full)
	}
	s.mu.Unlock()
	if err != nil {
		return st, err
	}
	s.fault(FaultGCCompacted, 0)
	for {
		err := s.db.RunValueLogGC(gcRatio)
		if errors.Is(err, badger.ErrNoRewrite) || errors.Is(err, badger.ErrRejected) {
			break
		}
		if err != nil {
			return st, fmt.Errorf("rewrite value log: %w", err)
		}
		st.FilesRewritten++
		s.fault(FaultGCRewrote, st.FilesRewritten)
	}
	s.gc.deleted.Add(-deleted)
	st.BytesAfter = diskBytes(s.dir)
	st.Seconds = time.Since(start).Seconds()
	return st, nil
}

// compactForGC makes Badger's compactions see the deletes: the sentinel's
// DropPrefix flushes the memtables and compacts level 0 down; full also
// flattens the tree into one level. The caller holds s.mu.
func (s *Store) compactForGC(full bool) error {
	err := s.db.Update(func(txn *badger.Txn) error {
		return txn.SetEntry(badger.NewEntry([]byte(gcSentinel), nil).WithTTL(gcSentinelTTL))
	})
	if err != nil {
		return fmt.Errorf("write %s: %w", gcSentinel, err)
	}
	if err := s.db.DropPrefix([]byte(gcSentinel)); err != nil {
		return fmt.Errorf("flush and compact level 0: %w", err)
	}
	if full {
		if err := s.db.Flatten(2); err != nil {
			return fmt.Errorf("flatten: %w", err)
		}
	}
	return nil
}

// diskBytes is what the files under dir occupy on disk. Badger sizes its
// value-log and memtable files up front and fills them later, so their
// apparent size overstates the use; fileDiskBytes counts allocated blocks
// where the platform reports them.
func diskBytes(dir string) int64 {
	var n int64
	filepath.WalkDir(dir, func(_ string, d fs.DirEntry, err error) error {
		if err != nil || !d.Type().IsRegular() {
			return nil
		}
		if fi, err := d.Info(); err == nil {
			n += fileDiskBytes(fi)
		}
		return nil
	})
	return n
}
