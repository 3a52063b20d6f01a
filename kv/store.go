// Package kv is lens's run store: one Badger database per workspace (by
// default ./.lens) holding run records, metric series, checkpoints, collected
// tensors and summaries, run events, and a content-addressed blob cache,
// behind a typed API.
//
// It is not a general key-value store: callers never see Badger types or
// keys. The key layout is documented in keys.go, the tensor encoding in
// tensor.go.
//
// One process writes a store at a time. Badger holds an exclusive lock on the
// directory for a writer and a shared one for a read-only open, so while a
// writer runs every other Open fails, with a *LockedError naming the holder.
// A writable Open marks runs left "running" by a process that died as
// "interrupted", finding them through the status index, so opening costs
// the same whatever the number of runs. A Store is safe for concurrent use by multiple goroutines.
package kv

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/dgraph-io/badger/v4/options"
)

// FormatVersion is the store format this package reads and writes, kept at
// store/version.
const FormatVersion = 3

// MaxValueBytes is Badger's value log file size, over which no single
// value can go. Tensors of any size are stored in chunks of chunkBytes
// (see chunk.go); collected values must fit in one.
const MaxValueBytes = 64 << 20

const (
	holderFile = "holder.json"
	lockFile   = "LOCK" // Badger's pid file, written under its directory lock
)

// Sentinel errors; match them with errors.Is.
var (
	// ErrNotFound: the run, checkpoint, blob... does not exist.
	ErrNotFound = errors.New("not found")
	// ErrExists: CreateRun with an id already in the store.
	ErrExists = errors.New("already exists")
	// ErrAmbiguous: FindRun with an id prefix matching several runs.
	ErrAmbiguous = errors.New("ambiguous")
	// ErrReadOnly: a write to a store opened with Options.ReadOnly.
	ErrReadOnly = errors.New("store is open read-only")
	// ErrClosed: a write after Close.
	ErrClosed = errors.New("store is closed")
)

// Options configure Open.
type Options struct {
	// ReadOnly opens without writing anything. It still fails while a writer
	// holds the store.
	ReadOnly bool
	// WriteOnDemand opens an existing store as ReadOnly does (a snapshot
	// from the writer when another process holds it) and makes it
	// writable at its first write: that write closes the read-only
	// database and opens it for writing, running all a writable Open
	// runs, so a caller that may write but mostly reads (lens run) creates
	// no file and takes no exclusive lock until it does. A write that
	// cannot get the store (another process holds it) returns an error
	// wrapping *LockedError, and the store stays readable. A missing or
	// empty store is opened writable at once. Ignored with ReadOnly.
	WriteOnDemand bool
	// Logger receives Badger's warnings and errors and the store's own notes
	// (runs marked interrupted). Nil discards them.
	Logger *slog.Logger
	// Command is the command line recorded in holder.json so that a second
	// process can say who holds the store ("lens run quickstart.star").
	// Empty means os.Args.
	Command string
	// Redact, when set, removes credentials from the text the store keeps
	// (run records' reason, config and args, event messages, the holder's
	// command line). The store knows no secrets itself: cmd/lens passes
	// engine/secret's Redactor.Redact.
	Redact func(string) string
	// RunsOnly, for a read-only open of a store that a writer holds,
	// asks the writer for the run records, summaries, progress and
	// indexes only (share.go), not metrics, checkpoints, collected values,
	// events or blobs: what listing runs needs, without copying the
	// store. Reads of the rest then find nothing. It changes nothing when
	// Badger itself opens the store.
	RunsOnly bool
	// Fault, when set, is called at the named points inside multi-commit
	// writes (the Fault* constants) with the step being written, so that
	// a test can kill the process exactly there.
	Fault func(point string, step int)

	// deferStart, for the upgrade of a WriteOnDemand store, stops a
	// writable Open after the version check: the upgrading store runs the
	// rest (startWriter) on itself.
	deferStart bool
}

// LockedError is returned by Open when another process holds the store.
// PID is 0 and Command empty when the holder could not be identified (for
// example a read-only reader, which leaves no pid behind).
type LockedError struct {
	Dir     string
	PID     int
	Command string
}

// Error names the store and, when known, the holder's pid and command.
func (e *LockedError) Error() string {
	switch {
	case e.PID > 0 && e.Command != "":
		return fmt.Sprintf("store %s is in use by pid %d (%s)", e.Dir, e.PID, e.Command)
	case e.PID > 0:
		return fmt.Sprintf("store %s is in use by pid %d", e.Dir, e.PID)
	}
	return fmt.Sprintf("store %s is in use by another process", e.Dir)
}

// VersionError is returned by Open when store/version is not FormatVersion.
// Found is 0 when a non-empty directory has no version at all.
type VersionError struct {
	Dir   string
	Found int
	Want  int
}

// Error names the store, both versions, and which side is newer.
func (e *VersionError) Error() string {
	switch {
	case e.Found == 0:
		return fmt.Sprintf("store %s holds data but no format version: it was not written by lens", e.Dir)
	case e.Found > e.Want:
		return fmt.Sprintf("store %s has format version %d but this lens reads version %d: it was written by a newer lens", e.Dir, e.Found, e.Want)
	}
	return fmt.Sprintf("store %s has format version %d but this lens reads version %d: it was written by an older lens and cannot be migrated", e.Dir, e.Found, e.Want)
}

// blockSize is the size of the blocks in Badger's tables. Every open reads
// and checksums the index of every table, one entry per block: with
// Badger's default 4 KB blocks and ~2 KB metric blocks (metrics.go) that
// was 33 MB of index at 10⁸ points, ~40 ms of every open however little
// the command reads. 64 KB blocks make it ~16x smaller; tables written
// before keep their blocks until compaction rewrites them.
const blockSize = 64 << 10

// holderInfo is holder.json: who has the store open for writing.
type holderInfo struct {
	PID     int       `json:"pid"`
	Command string    `json:"command"`
	Started time.Time `json:"started"`
	Host    string    `json:"host,omitempty"`
}

// Store is an open workspace store.
type Store struct {
	// db changes once at most, when a WriteOnDemand store upgrades: until
	// then (settled false) reads hold gate around their use of it.
	db          *badger.DB
	gate        dbGate
	settled     atomic.Bool
	dir         string
	ro          atomic.Bool // no writes now (ReadOnly, or WriteOnDemand before the first write)
	log         *slog.Logger
	interrupted []RunMeta

	closed atomic.Bool

	// WriteOnDemand (upgrade.go): onDemand is set until the first write
	// has made the store writable; upMu serializes upgrades with each
	// other and with Close.
	onDemand atomic.Bool
	upMu     sync.Mutex
	upErr    error   // a failed upgrade that left the store unwritable for good
	opts     Options // what to upgrade with

	snapshot atomic.Bool         // read-only copy served by the writer (share.go)
	redact   func(string) string // Options.Redact
	holder   *LockedError        // for a snapshot: who holds the store
	sharer   *sharer             // serves snapshots to readers while we write

	mu           sync.Mutex
	pending      pendingMetrics             // metric values not yet written
	progress     map[string]Progress        // run id -> progress not yet written
	pendingSince time.Time                  // when the buffer last went from empty to not
	knownRuns    map[string]bool            // run ids seen to exist, for AddMetric
	knownNames   map[string]map[string]bool // run id -> metric names already validated
	cache        runCache                   // decoded run records (runs.go)
	pageOut      pageOut                    // when to release mapped value-log pages (metrics.go)

	stopFlusher chan struct{}
	stopOnce    sync.Once
	flusherDone chan struct{}
	eventSeq    map[string]uint64 // run id -> next event seq
	issuedIDs   map[string]bool   // ids handed out by NewRunID

	onFault func(point string, step int) // Options.Fault

	gc gcState // value-log GC (gc.go)
}

// Open opens the store in dir, creating it (mode 0700) unless opts.ReadOnly
// or opts.WriteOnDemand. A writable open records the holder in holder.json
// and marks every run left "running" by another process as "interrupted"
// (see Interrupted).
func Open(dir string, opts Options) (*Store, error) {
	opts.deferStart = false
	if !opts.WriteOnDemand || opts.ReadOnly {
		opts.WriteOnDemand = false
		return open(dir, opts)
	}
	opts.WriteOnDemand = false
	ropts := opts
	ropts.ReadOnly = true
	s, err := open(dir, ropts)
	if errors.Is(err, ErrNotFound) {
		// No store there, or an empty one: only a write can follow.
		return open(dir, opts)
	}
	if err != nil {
		return nil, err
	}
	s.opts = opts
	s.settled.Store(false)
	s.onDemand.Store(true)
	return s, nil
}

func open(dir string, opts Options) (*Store, error) {
	dir = filepath.Clean(dir)
	log := opts.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if err := prepareDir(dir, opts.ReadOnly); err != nil {
		return nil, err
	}
	bopts := badger.DefaultOptions(dir).
		WithLogger(badgerLogger{log}).
		WithReadOnly(opts.ReadOnly).
		WithSyncWrites(false).
		WithMetricsEnabled(false).
		WithValueLogFileSize(vlogFileBytes).
		WithValueThreshold(valueThreshold).
		WithMemTableSize(16 << 20).
		WithNumMemtables(2).
		WithNumLevelZeroTables(2).
		WithNumLevelZeroTablesStall(8).
		WithNumCompactors(2).
		WithBlockCacheSize(8 << 20).
		WithIndexCacheSize(4 << 20).
		WithBlockSize(blockSize)
	// No block compression: metric blocks and tensors are float bits,
	// which Snappy barely shrinks (95 vs 90 MB of blocks at 10⁷ points),
	// while each table builder held its own compression buffers: at 10⁸
	// points the peak RSS was 2 GB, most of it those buffers.
	bopts = bopts.WithCompression(options.None)
	if opts.ReadOnly {
		// Uncompressed, unencrypted blocks and indexes are read straight
		// from the mapped tables; the caches would only copy them, and
		// setting them up cost a read-only open at 10,000 runs ~8 ms of
		// its ~90 ms CPU (median of 15 processes, open + list + close).
		bopts = bopts.WithBlockCacheSize(0).WithIndexCacheSize(0)
	}
	// Tables of every level are BaseTableSize (2 MB) instead of doubling
	// level by level: a compaction runs up to ten table builders at once,
	// each holding about twice its table in memory, and at 10⁸ points the
	// deep levels' 8-16 MB tables made that the bulk of the writer's
	// anonymous memory (peak 340 MB with 1, 460 MB with Badger's 2).
	bopts.TableSizeMultiplier = 1
	db, err := badger.Open(bopts)
	if err != nil && opts.ReadOnly && strings.Contains(err.Error(), "truncate required") {
		// A writer died mid-write: only a writable open can recover the log.
		// Nobody holds the store (else the lock error would come first), so
		// recover with a brief writable open (which also marks the dead
		// writer's runs interrupted) and read on.
		log.Warn("store was not closed cleanly; recovering it before reading", "dir", dir)
		w, werr := Open(dir, Options{Logger: opts.Logger, Command: opts.Command})
		if werr != nil {
			return nil, fmt.Errorf("open store %s: recover after a crash: %w", dir, werr)
		}
		if werr := w.Close(); werr != nil {
			return nil, fmt.Errorf("open store %s: recover after a crash: %w", dir, werr)
		}
		db, err = badger.Open(bopts)
	}
	if err != nil {
		if isLockErr(err) {
			le := lockedError(dir)
			if opts.ReadOnly {
				// Readers get a snapshot from the writer, if it serves one.
				if s, serr := openSnapshot(dir, Options{Logger: log, RunsOnly: opts.RunsOnly}); serr == nil {
					s.holder = le
					return s, nil
				} else {
					log.Debug("no snapshot from the store's holder", "err", serr)
				}
			}
			return nil, le
		}
		return nil, fmt.Errorf("open store %s: %w", dir, err)
	}
	s := &Store{
		db:         db,
		dir:        dir,
		log:        log,
		pending:    pendingMetrics{runs: map[string]map[string]*series{}},
		progress:   map[string]Progress{},
		knownNames: map[string]map[string]bool{},
		knownRuns:  map[string]bool{},
		eventSeq:   map[string]uint64{},
		issuedIDs:  map[string]bool{},
		onFault:    opts.Fault,
		redact:     opts.Redact,
	}
	s.ro.Store(opts.ReadOnly)
	s.settled.Store(true)
	if err := s.checkVersion(); err != nil {
		db.Close()
		var ve *VersionError
		if opts.ReadOnly && errors.As(err, &ve) && ve.Found > 0 && ve.Found < FormatVersion {
			// An older store: only a writable open migrates it. Nobody
			// holds it (we got the lock), so migrate briefly and read on.
			log.Warn("store has an older format; migrating it before reading", "dir", dir, "version", ve.Found)
			wopts := opts
			wopts.ReadOnly = false
			w, werr := open(dir, wopts)
			if werr != nil {
				return nil, fmt.Errorf("open store %s: migrate: %w", dir, werr)
			}
			if werr := w.Close(); werr != nil {
				return nil, fmt.Errorf("open store %s: migrate: %w", dir, werr)
			}
			return open(dir, opts)
		}
		return nil, err
	}
	if s.ro.Load() || opts.deferStart {
		return s, nil
	}
	if err := s.startWriter(opts.Command); err != nil {
		s.Close()
		return nil, err
	}
	return s, nil
}

// startWriter does what a writable open does once Badger has opened the
// store: holder.json, crash recovery, interrupted runs, the background
// flusher and the reader socket.
func (s *Store) startWriter(command string) error {
	if command == "" {
		command = commandLine()
	}
	if err := writeHolder(s.dir, s.redactText(command)); err != nil {
		return err
	}
	restrictFiles(s.dir)
	if err := s.finishIntents(); err != nil {
		return err
	}
	if err := s.markInterrupted(); err != nil {
		return err
	}
	s.stopFlusher, s.flusherDone = make(chan struct{}), make(chan struct{})
	go s.flusher(s.stopFlusher, s.flusherDone)
	s.share()
	return nil
}

// prepareDir creates dir (writable opens) and checks that it is a writable
// directory, so the error names the directory rather than a Badger file.
func prepareDir(dir string, readOnly bool) error {
	if readOnly {
		fi, err := os.Stat(dir)
		if errors.Is(err, fs.ErrNotExist) {
			return fmt.Errorf("open store %s read-only: no store there: %w", dir, ErrNotFound)
		}
		if err != nil {
			return fmt.Errorf("open store %s: %w", dir, err)
		}
		if !fi.IsDir() {
			return fmt.Errorf("open store %s: not a directory", dir)
		}
		return nil
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return fmt.Errorf("open store %s: cannot create the directory: %w", dir, err)
	}
	fi, err := os.Stat(dir)
	if err != nil {
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	if !fi.IsDir() {
		return fmt.Errorf("open store %s: not a directory", dir)
	}
	// Permission bits do not tell the whole story (root, ACLs, read-only
	// mounts), so try it.
	f, err := os.CreateTemp(dir, ".probe-*")
	if err != nil {
		return fmt.Errorf("open store %s: the directory is not writable: %w", dir, err)
	}
	f.Close()
	os.Remove(f.Name())
	return nil
}

// isLockErr recognises Badger's "directory is locked" failure. Badger
// formats the flock error into a string, so the message is all there is.
func isLockErr(err error) bool {
	msg := err.Error()
	return strings.Contains(msg, "Cannot acquire directory lock") ||
		strings.Contains(msg, "Another process is using this Badger database")
}

// lockedError identifies the holder of dir: Badger's LOCK file has the pid of
// the writer that holds the flock; holder.json, written by that writer just
// after opening, adds its command line. A holder.json left by a writer that
// was killed is ignored when its pid is not the LOCK pid.
func lockedError(dir string) *LockedError {
	e := &LockedError{Dir: dir}
	lockPID := 0
	if b, err := os.ReadFile(filepath.Join(dir, lockFile)); err == nil {
		lockPID, _ = strconv.Atoi(strings.TrimSpace(string(b)))
	}
	var h holderInfo
	if b, err := os.ReadFile(filepath.Join(dir, holderFile)); err == nil && json.Unmarshal(b, &h) == nil &&
		h.PID > 0 && (lockPID == 0 || h.PID == lockPID) && pidAlive(h.PID) {
		e.PID, e.Command = h.PID, h.Command
		return e
	}
	if lockPID > 0 && pidAlive(lockPID) {
		e.PID, e.Command = lockPID, processCommand(lockPID)
	}
	return e
}

func commandLine() string {
	if len(os.Args) == 0 {
		return ""
	}
	args := append([]string{filepath.Base(os.Args[0])}, os.Args[1:]...)
	return strings.Join(args, " ")
}

func writeHolder(dir, command string) error {
	host, _ := os.Hostname()
	b, err := json.MarshalIndent(holderInfo{PID: os.Getpid(), Command: command, Started: time.Now(), Host: host}, "", "  ")
	if err != nil {
		return fmt.Errorf("open store %s: %w", dir, err)
	}
	tmp := filepath.Join(dir, holderFile+".tmp")
	if err := os.WriteFile(tmp, append(b, '\n'), 0o600); err != nil {
		return fmt.Errorf("open store %s: write %s: %w", dir, holderFile, err)
	}
	if err := os.Rename(tmp, filepath.Join(dir, holderFile)); err != nil {
		return fmt.Errorf("open store %s: write %s: %w", dir, holderFile, err)
	}
	return nil
}

// removeHolder removes holder.json if it is ours.
func removeHolder(dir string) error {
	p := filepath.Join(dir, holderFile)
	b, err := os.ReadFile(p)
	if err != nil {
		if errors.Is(err, fs.ErrNotExist) {
			return nil
		}
		return err
	}
	var h holderInfo
	if json.Unmarshal(b, &h) == nil && h.PID != os.Getpid() {
		return nil
	}
	return os.Remove(p)
}

// restrictFiles drops group and other permissions from the files in dir.
// Badger creates some files 0666 minus umask; the directory itself is 0700
// when we create it, so this is belt and braces for directories made by
// someone else.
func restrictFiles(dir string) {
	entries, err := os.ReadDir(dir)
	if err != nil {
		return
	}
	for _, e := range entries {
		if !e.Type().IsRegular() {
			continue
		}
		if fi, err := e.Info(); err == nil && fi.Mode().Perm()&0o077 != 0 {
			os.Chmod(filepath.Join(dir, e.Name()), fi.Mode().Perm()&^0o077)
		}
	}
}

// checkVersion reads store/version, writing it into an empty writable store
// and migrating an older writable one (migrate.go).
func (s *Store) checkVersion() error {
	var found []byte
	empty := true
	err := s.view(func(txn *badger.Txn) error {
		item, err := txn.Get([]byte(keyVersion))
		if err == nil {
			found, err = item.ValueCopy(nil)
			return err
		}
		if !errors.Is(err, badger.ErrKeyNotFound) {
			return err
		}
		it := txn.NewIterator(badger.IteratorOptions{})
		defer it.Close()
		it.Rewind()
		empty = !it.Valid()
		return nil
	})
	if err != nil {
		return fmt.Errorf("open store %s: read format version: %w", s.dir, err)
	}
	if found == nil {
		if empty && s.ro.Load() {
			return fmt.Errorf("open store %s read-only: the store is empty: %w", s.dir, ErrNotFound)
		}
		if !empty {
			return &VersionError{Dir: s.dir, Found: 0, Want: FormatVersion}
		}
		err := s.db.Update(func(txn *badger.Txn) error {
			return txn.Set([]byte(keyVersion), []byte(strconv.Itoa(FormatVersion)))
		})
		if err != nil {
			return fmt.Errorf("open store %s: write format version: %w", s.dir, err)
		}
		return nil
	}
	v, err := strconv.Atoi(string(bytes.TrimSpace(found)))
	if err != nil || v <= 0 {
		return fmt.Errorf("open store %s: format version %q is not a positive integer: %w", s.dir, found, ErrCorrupt)
	}
	if v < FormatVersion && v >= 1 && !s.ro.Load() {
		return s.migrate(v)
	}
	if v != FormatVersion {
		return &VersionError{Dir: s.dir, Found: v, Want: FormatVersion}
	}
	return nil
}

// markInterrupted turns "running" runs into "interrupted". We hold the
// exclusive lock, so a run owned by any other process cannot still be
// writing here, whether or not that pid is alive (pids get reused). The
// status index names the running runs, so this reads only those.
func (s *Store) markInterrupted() error {
	var runs []RunMeta
	err := s.view(func(txn *badger.Txn) error {
		prefix := idxStatusPrefix(StatusRunning)
		return scanKeys(txn, prefix, func(k []byte) error {
			var m RunMeta
			if err := getJSON(txn, runMetaKey(string(k[len(prefix):])), &m); err != nil {
				return nil // an unreadable record must not make the store unopenable; Fsck reports it
			}
			withProgress(txn, &m)
			runs = append(runs, m)
			return nil
		})
	})
	if err != nil {
		return fmt.Errorf("open store %s: list runs: %w", s.dir, err)
	}
	me := os.Getpid()
	for _, r := range runs {
		if r.Status != StatusRunning || r.Owner == me {
			continue
		}
		reason := fmt.Sprintf("process %d stopped without finishing the run", r.Owner)
		if r.Owner > 0 && pidAlive(r.Owner) {
			reason = fmt.Sprintf("process %d no longer holds the store", r.Owner)
		}
		var updated RunMeta
		// updateRun, not UpdateRun: during an upgrade (upgrade.go) the
		// store is not yet writable for anyone else.
		err := s.updateRun(r.ID, func(m *RunMeta) error {
			if m.Status != StatusRunning {
				return nil
			}
			m.Status, m.Reason = StatusInterrupted, reason
			m.Steps = max(m.Steps, r.Steps) // the last progress it reported
			updated = *m
			return nil
		})
		if err != nil {
			return fmt.Errorf("open store %s: mark run %s interrupted: %w", s.dir, r.ID, err)
		}
		if updated.ID != "" {
			s.interrupted = append(s.interrupted, updated)
			s.log.Warn("run marked interrupted", "store", s.dir, "run", r.ID, "name", r.Name, "reason", reason)
		}
	}
	return nil
}

// Interrupted returns the runs this Open marked "interrupted" because the
// process that was writing them stopped without finishing.
func (s *Store) Interrupted() []RunMeta { return append([]RunMeta(nil), s.interrupted...) }

// Dir returns the store's directory as given to Open (cleaned).
func (s *Store) Dir() string { return s.dir }

// ReadOnly reports whether the store cannot be written now: opened
// read-only, or opened with WriteOnDemand and not written yet.
func (s *Store) ReadOnly() bool { return s.ro.Load() }

// Sync writes buffered metrics and forces everything to disk. A store not
// written yet (WriteOnDemand) has nothing to sync and stays read-only.
func (s *Store) Sync() error {
	if s.ro.Load() {
		return nil
	}
	if err := s.Flush(); err != nil {
		return err
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("sync store %s: %w", s.dir, err)
	}
	return nil
}

// Close flushes buffered metrics, closes the database and, for a writer,
// removes holder.json. Closing twice is a no-op.
func (s *Store) Close() error {
	// Not during an upgrade, which swaps the database and starts the
	// flusher.
	s.upMu.Lock()
	defer s.upMu.Unlock()
	// Before taking mu: a snapshot in flight and the flusher take it.
	if !s.closed.Load() {
		s.sharer.stop()
		if s.stopFlusher != nil {
			s.stopOnce.Do(func() { close(s.stopFlusher) })
			<-s.flusherDone
		}
		s.gcAtClose() // after the flusher, before the final flush
	}
	s.mu.Lock()
	if s.closed.Load() {
		s.mu.Unlock()
		return nil
	}
	var errs []error
	readOnly := s.ro.Load()
	if !readOnly {
		if err := s.flushLocked(); err != nil {
			errs = append(errs, err)
		}
	}
	s.closed.Store(true)
	s.mu.Unlock()
	if s.db != nil { // nil after an upgrade that could not reopen it
		if err := s.db.Close(); err != nil {
			errs = append(errs, fmt.Errorf("close store %s: %w", s.dir, err))
		}
	}
	if !readOnly {
		restrictFiles(s.dir)
		if err := removeHolder(s.dir); err != nil {
			errs = append(errs, fmt.Errorf("close store %s: %w", s.dir, err))
		}
	}
	return errors.Join(errs...)
}

// writable says whether a write may go ahead, first making a WriteOnDemand
// store writable (upgrade.go). Once it returns nil, s.db is settled.
func (s *Store) writable() error {
	if s.onDemand.Load() {
		if err := s.upgrade(); err != nil {
			return err
		}
	}
	if s.snapshot.Load() {
		return fmt.Errorf("%s; this process reads a snapshot of it: %w", s.holder.Error(), ErrReadOnly)
	}
	if s.ro.Load() {
		return fmt.Errorf("store %s: %w", s.dir, ErrReadOnly)
	}
	if s.closed.Load() {
		return fmt.Errorf("store %s: %w", s.dir, ErrClosed)
	}
	return nil
}

// badgerLogger routes Badger's log lines to slog: errors and warnings as
// such, the chatty info level as debug.
type badgerLogger struct{ l *slog.Logger }

func (b badgerLogger) logf(level slog.Level, format string, args ...any) {
	if !b.l.Enabled(context.Background(), level) {
		return
	}
	b.l.Log(context.Background(), level, "badger: "+strings.TrimSpace(fmt.Sprintf(format, args...)))
}

func (b badgerLogger) Errorf(f string, a ...any)   { b.logf(slog.LevelError, f, a...) }
func (b badgerLogger) Warningf(f string, a ...any) { b.logf(slog.LevelWarn, f, a...) }
func (b badgerLogger) Infof(f string, a ...any)    { b.logf(slog.LevelDebug, f, a...) }
func (b badgerLogger) Debugf(f string, a ...any)   { b.logf(slog.LevelDebug-4, f, a...) }

// redactText applies Options.Redact.
func (s *Store) redactText(text string) string {
	if s.redact == nil {
		return text
	}
	return s.redact(text)
}
