package kv

import (
	"errors"
	"fmt"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// A store opened with Options.WriteOnDemand reads through a read-only
// Badger database (or a snapshot from the writer) and swaps in a writable
// one at its first write. Badger's directory lock is a flock, shared for
// readers and exclusive for a writer, and this process's own shared lock
// would refuse its exclusive one, so the read-only database is closed
// before the writable one opens: the swap waits for the reads in flight
// and holds off new ones (dbGate). Another process sees either the
// read-only lock or the writer's, whose recovery (intents, interrupted
// runs) runs before it serves readers, never a store half made writable.

// upgradeWait bounds how long an upgrade retries while another process
// holds the store: readers such as `lens runs` hold it for a moment.
const upgradeWait = 2 * time.Second

// dbGate lets reads share the database while holding off the upgrade's
// swap: a pending swap stops new reads and waits for those in flight (a
// swap that waited for a moment with no read at all would never come
// while goroutines read in turn). No read may therefore wait on another
// inside its transaction: no Store method calls view from a view, and
// EachRun's callback must not use the store.
type dbGate struct {
	mu       sync.Mutex
	cond     sync.Cond
	readers  int
	swapping bool
}

func (g *dbGate) init() {
	if g.cond.L == nil {
		g.cond.L = &g.mu
	}
}

func (g *dbGate) enter() {
	g.mu.Lock()
	g.init()
	for g.swapping {
		g.cond.Wait()
	}
	g.readers++
	g.mu.Unlock()
}

func (g *dbGate) leave() {
	g.mu.Lock()
	g.readers--
	if g.readers == 0 {
		g.cond.Broadcast()
	}
	g.mu.Unlock()
}

func (g *dbGate) lock() {
	g.mu.Lock()
	g.init()
	for g.swapping {
		g.cond.Wait()
	}
	g.swapping = true
	for g.readers > 0 {
		g.cond.Wait()
	}
	g.mu.Unlock()
}

func (g *dbGate) unlock() {
	g.mu.Lock()
	g.swapping = false
	g.cond.Broadcast()
	g.mu.Unlock()
}

// view runs fn in a read transaction of the store's current database.
func (s *Store) view(fn func(txn *badger.Txn) error) error {
	if s.settled.Load() {
		return s.db.View(fn)
	}
	s.gate.enter()
	defer s.gate.leave()
	if s.db == nil {
		return fmt.Errorf("store %s: %w", s.dir, s.upErr)
	}
	return s.db.View(fn)
}

// upgrade makes a WriteOnDemand store writable: once, whichever goroutine
// writes first; the others wait for it here. On failure the store stays
// readable and not upgraded, so a later write tries again.
func (s *Store) upgrade() error {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if !s.onDemand.Load() {
		return nil
	}
	if s.upErr != nil {
		return s.upErr
	}
	if s.closed.Load() {
		return fmt.Errorf("store %s: %w", s.dir, ErrClosed)
	}
	wopts := s.opts
	wopts.ReadOnly, wopts.deferStart = false, true
	var w *Store
	var err error
	if s.snapshot.Load() {
		// The snapshot is in memory and holds no lock: try first.
		if w, err = openRetrying(s.dir, wopts); err != nil {
			return fmt.Errorf("store %s: cannot open it for writing: %w", s.dir, err)
		}
		s.gate.lock()
		old := s.db
		s.db = w.db
		s.gate.unlock()
		old.Close()
	} else {
		s.gate.lock()
		cerr := s.db.Close()
		if cerr == nil {
			w, err = openRetrying(s.dir, wopts)
		} else {
			err = fmt.Errorf("close the read-only database: %w", cerr)
		}
		if err != nil {
			// Read on as before: from the store itself, or from a
			// snapshot if a writer took it in between.
			ropts := s.opts
			ropts.ReadOnly = true
			r, rerr := open(s.dir, ropts)
			s.db = nil
			if rerr == nil {
				s.db = r.db
				s.holder = r.holder
				s.snapshot.Store(r.snapshot.Load())
			} else {
				s.upErr = fmt.Errorf("cannot open it for writing (%w) nor again for reading (%v)", err, rerr)
			}
			s.gate.unlock()
			return fmt.Errorf("store %s: cannot open it for writing: %w", s.dir, err)
		}
		s.db = w.db
		s.gate.unlock()
	}
	s.settled.Store(true)
	s.snapshot.Store(false)
	s.ro.Store(false)
	// Records and run ids read from the read-only database may be stale
	// once recovery has run.
	s.cache.mu.Lock()
	s.cache.byID = nil
	s.cache.mu.Unlock()
	s.mu.Lock()
	clear(s.knownRuns)
	clear(s.knownNames)
	clear(s.eventSeq)
	s.mu.Unlock()
	if err := s.startWriter(s.opts.Command); err != nil {
		s.upErr = fmt.Errorf("store %s: open for writing: %w", s.dir, err)
		return s.upErr
	}
	s.onDemand.Store(false)
	s.log.Debug("store opened for writing at its first write", "dir", s.dir)
	return nil
}

// openRetrying opens dir with opts, retrying for up to upgradeWait while
// another process holds it.
func openRetrying(dir string, opts Options) (*Store, error) {
	deadline := time.Now().Add(upgradeWait)
	for wait := 10 * time.Millisecond; ; wait = min(2*wait, 200*time.Millisecond) {
		w, err := open(dir, opts)
		var le *LockedError
		if err == nil || !errors.As(err, &le) || time.Now().Add(wait).After(deadline) {
			return w, err
		}
		time.Sleep(wait)
	}
}
