package ui

import (
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"

	"lens/kv"
)

// source hands out read-only views of the store. A view is shared by the
// requests that arrive within ttl of its opening, then replaced, so the page
// sees new steps within about a second. Two cases, both through kv.Open with
// ReadOnly:
//   - a writer holds the store: the view is a snapshot it sends over its
//     reader socket (kv/share.go), a copy as of that moment;
//   - nobody holds it: the view is the directory itself, under Badger's shared
//     lock, which would stop a `lens run` from opening the store; so an idle
//     view is closed after ttl, and the lock is held only while requests run.
type source struct {
	dir string
	ttl time.Duration
	log *slog.Logger

	mu     sync.Mutex
	cur    *view
	timer  *time.Timer
	closed bool
	opens  int // views opened, for tests
}

type view struct {
	st     *kv.Store
	opened time.Time
	ttl    time.Duration // how long it serves new requests
	refs   int
	stale  bool // replaced: close when the last request is done
}

// linger is how long a view of the directory itself (not a snapshot) is
// kept for the requests of one page load: it holds Badger's shared lock,
// which would make a `lens run` starting then fail.
const linger = 100 * time.Millisecond

// with runs fn on a current view of the store and says whether the view was
// the directory itself (nobody writing), whose answers stay true until the
// directory changes.
func (s *source) with(fn func(st *kv.Store) error) (direct bool, err error) {
	v, err := s.acquire()
	if err != nil {
		return false, err
	}
	defer s.release(v)
	return !v.st.Snapshot(), fn(v.st)
}

// fingerprint identifies the state of the store's files while nobody
// writes it: names, sizes and modification times. It is "" while a writer
// may hold the store (Badger's LOCK pid file or the reader socket exists),
// when answers cannot be reused.
func (s *source) fingerprint() string {
	ents, err := os.ReadDir(s.dir)
	if err != nil {
		return ""
	}
	h := sha256.New()
	for _, e := range ents {
		if e.Name() == "LOCK" || e.Name() == "reader.sock" {
			return ""
		}
		if e.IsDir() {
			continue
		}
		fi, err := e.Info()
		if err != nil {
			return ""
		}
		fmt.Fprintf(h, "%s\x00%d\x00%d\n", e.Name(), fi.Size(), fi.ModTime().UnixNano())
	}
	return hex.EncodeToString(h.Sum(nil))
}

func (s *source) acquire() (*view, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil, kv.ErrClosed
	}
	if v := s.cur; v != nil && time.Since(v.opened) < v.ttl {
		v.refs++
		return v, nil
	}
	s.retire()
	// Opening under the lock keeps one open (one snapshot) at a time; the
	// requests that queue behind it share its result.
	st, err := kv.Open(s.dir, kv.Options{ReadOnly: true, Logger: s.log, Command: "lens ui"})
	if err != nil {
		return nil, err
	}
	s.opens++
	v := &view{st: st, opened: time.Now(), refs: 1, ttl: s.ttl}
	if !st.Snapshot() {
		v.ttl = min(s.ttl, linger)
	}
	s.cur = v
	if s.timer == nil {
		s.timer = time.AfterFunc(v.ttl, s.expire)
	} else {
		s.timer.Reset(v.ttl)
	}
	return v, nil
}

func (s *source) release(v *view) {
	s.mu.Lock()
	defer s.mu.Unlock()
	v.refs--
	if v.stale && v.refs == 0 {
		s.closeView(v)
	}
}

// expire closes the current view once it is older than ttl, releasing the
// store's lock while nobody asks.
func (s *source) expire() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if v := s.cur; v != nil && time.Since(v.opened) >= v.ttl {
		s.retire()
	} else if v != nil {
		s.timer.Reset(v.ttl - time.Since(v.opened))
	}
}

// retire marks the current view stale and closes it if unused. Called with
// s.mu held.
func (s *source) retire() {
	v := s.cur
	if v == nil {
		return
	}
	s.cur = nil
	v.stale = true
	if v.refs == 0 {
		s.closeView(v)
	}
}

func (s *source) closeView(v *view) {
	if err := v.st.Close(); err != nil {
		s.log.Warn("closing a view of the store", "err", err)
	}
}

// close releases the store; later requests fail.
func (s *source) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.closed = true
	if s.timer != nil {
		s.timer.Stop()
	}
	s.retire()
}
