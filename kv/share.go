package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"net"
	"os"
	"path/filepath"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Readers while a writer runs. Badger lets one process open a store, so a
// writable Store also listens on a unix socket in its directory and hands
// every caller a consistent snapshot (a Badger backup stream taken in one
// read transaction, after pending metrics are flushed). A read-only Open
// that finds the store locked loads that snapshot into an in-memory store:
// `lens runs`, `lens show` and scripts that only read work while a run
// trains. What they see is the store as of the moment they opened it.
//
// A reader that only lists runs (Options.RunsOnly) asks for the run
// records, summaries, progress and indexes alone: a store of 10⁸ metric
// points is ~1 GB of snapshot, its runs a few MB. The reader sends its
// request line ("LENS-SNAPSHOT-REQ runs\n" or "... all\n") first; a
// reader that sends none (an older lens) gets everything.

const (
	socketFile  = "reader.sock"
	snapshotHdr = "LENS-SNAPSHOT 1\n"
	snapshotReq = "LENS-SNAPSHOT-REQ "
	// requestWait bounds how long the writer waits for a request line
	// before serving a full snapshot.
	requestWait = 2 * time.Second
	// maxSocketPath is the longest unix socket path Linux accepts (108
	// bytes with the terminating NUL); deeper stores serve no snapshots.
	maxSocketPath = 107
)

// sharer serves snapshots of a writable store.
type sharer struct {
	ln   net.Listener
	path string
	wg   sync.WaitGroup
}

// share starts serving snapshots of s. Failing to listen is not fatal: the
// store works, readers just get a LockedError as before.
func (s *Store) share() {
	path := filepath.Join(s.dir, socketFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	if len(path) > maxSocketPath {
		s.log.Debug("store path too long for a reader socket; concurrent readers disabled", "path", path)
		return
	}
	// We hold the store's lock, so a socket file left here is stale.
	if err := os.Remove(path); err != nil && !errors.Is(err, fs.ErrNotExist) {
		s.log.Warn("cannot remove a stale reader socket; concurrent readers disabled", "path", path, "err", err)
		return
	}
	ln, err := net.Listen("unix", path)
	if err != nil {
		s.log.Warn("cannot listen for readers; concurrent readers disabled", "path", path, "err", err)
		return
	}
	_ = os.Chmod(path, 0o600)
	sh := &sharer{ln: ln, path: path}
	s.sharer = sh
	sh.wg.Add(1)
	go func() {
		defer sh.wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return // closed
			}
			sh.wg.Add(1)
			go func() {
				defer sh.wg.Done()
				defer c.Close()
				if err := s.serveSnapshot(c, readRequest(c)); err != nil {
					s.log.Debug("snapshot for a reader failed", "err", err)
				}
			}()
		}
	}()
}

// readRequest reads a reader's request line and says whether it asks for
// the runs only; no line within requestWait means everything.
func readRequest(c net.Conn) (runsOnly bool) {
	_ = c.SetReadDeadline(time.Now().Add(requestWait))
	defer c.SetReadDeadline(time.Time{})
	line, err := bufio.NewReaderSize(c, 64).ReadString('\n')
	return err == nil && line == snapshotReq+"runs\n"
}

// runsOnlyKey says whether a key belongs in a runs-only snapshot: what
// listing runs reads, none of the runs' data or the blobs.
func runsOnlyKey(k []byte) bool {
	for _, p := range []string{keyVersion, prefixRec, prefixSum, prefixProg, "idx/"} {
		if bytes.HasPrefix(k, []byte(p)) {
			return true
		}
	}
	return false
}

func (s *Store) serveSnapshot(w io.Writer, runsOnly bool) error {
	if err := s.Flush(); err != nil {
		return err
	}
	bw := bufio.NewWriterSize(w, 1<<20)
	if _, err := io.WriteString(bw, snapshotHdr); err != nil {
		return err
	}
	// One stream, so one read timestamp: the records, summaries and
	// indexes a reader gets agree.
	stream := s.db.NewStream()
	stream.LogPrefix = "lens snapshot"
	if runsOnly {
		stream.ChooseKey = func(item *badger.Item) bool { return runsOnlyKey(item.Key()) }
	}
	if _, err := stream.Backup(bw, 0); err != nil {
		return err
	}
	return bw.Flush()
}

// stop closes the listener, waits for snapshots in flight and removes the
// socket file.
func (sh *sharer) stop() {
	if sh == nil {
		return
	}
	sh.ln.Close()
	sh.wg.Wait()
	os.Remove(sh.path)
}

// openSnapshot asks the writer holding dir for a snapshot and loads it into
// an in-memory read-only store.
func openSnapshot(dir string, opts Options) (*Store, error) {
	path := filepath.Join(dir, socketFile)
	if abs, err := filepath.Abs(path); err == nil {
		path = abs
	}
	c, err := net.DialTimeout("unix", path, 2*time.Second)
	if err != nil {
		return nil, err
	}
	defer c.Close()
	// A snapshot of a big store takes a while; a stuck writer must not hang
	// the reader forever.
	_ = c.SetDeadline(time.Now().Add(10 * time.Minute))
	req := snapshotReq + "all\n"
	if opts.RunsOnly {
		req = snapshotReq + "runs\n"
	}
	if _, err := io.WriteString(c, req); err != nil {
		return nil, fmt.Errorf("snapshot from the writer: send the request: %w", err)
	}
	r := bufio.NewReaderSize(c, 1<<20)
	hdr := make([]byte, len(snapshotHdr))
	if _, err := io.ReadFull(r, hdr); err != nil || string(hdr) != snapshotHdr {
		return nil, fmt.Errorf("snapshot from the writer: bad header (%v)", err)
	}
	log := opts.Logger
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).
		WithLogger(badgerLogger{log}).WithMetricsEnabled(false).
		WithValueLogFileSize(MaxValueBytes).WithMemTableSize(16 << 20).
		WithBlockCacheSize(8 << 20).WithIndexCacheSize(4 << 20))
	if err != nil {
		return nil, fmt.Errorf("snapshot: open in-memory store: %w", err)
	}
	if err := db.Load(r, 64); err != nil {
		db.Close()
		return nil, fmt.Errorf("snapshot from the writer: %w", err)
	}
	s := &Store{db: db, dir: dir, log: log,
		pending: pendingMetrics{runs: map[string]map[string]*series{}}, progress: map[string]Progress{}, knownNames: map[string]map[string]bool{}, knownRuns: map[string]bool{}, eventSeq: map[string]uint64{}, issuedIDs: map[string]bool{}}
	s.ro.Store(true)
	s.snapshot.Store(true)
	s.settled.Store(true)
	return s, nil
}

// Snapshot says whether this read-only store is a copy handed over by the
// process that holds the store (see Open).
func (s *Store) Snapshot() bool { return s.snapshot.Load() }

// Holder names the process that holds the store this snapshot was taken
// from; nil when the store is not a snapshot.
func (s *Store) Holder() *LockedError {
	s.upMu.Lock()
	defer s.upMu.Unlock()
	if !s.snapshot.Load() {
		return nil
	}
	return s.holder
}
