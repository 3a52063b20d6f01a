package kv

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Run statuses.
const (
	StatusRunning     = "running"
	StatusDone        = "done"
	StatusFailed      = "failed"
	StatusCancelled   = "cancelled"
	StatusInterrupted = "interrupted" // the writing process died; set by Open
	StatusStopped     = "stopped"     // ended early on purpose by its sweep (successive halving), not a failure
)

var validStatus = map[string]bool{
	StatusRunning: true, StatusDone: true, StatusFailed: true,
	StatusCancelled: true, StatusInterrupted: true, StatusStopped: true,
}

// RunMeta is the record of one run, at run/<id>/meta.
type RunMeta struct {
	ID          string            `json:"id"`
	Name        string            `json:"name,omitempty"`        // indexed; FindRun picks the latest run with a name
	Script      string            `json:"script,omitempty"`      // script path
	ScriptHash  string            `json:"script_hash,omitempty"` // hash of the script's content
	Args        map[string]string `json:"args,omitempty"`
	Config      json.RawMessage   `json:"config,omitempty"` // full resolved config
	Seed        uint64            `json:"seed"`
	Status      string            `json:"status"` // one of the Status constants
	Reason      string            `json:"reason,omitempty"`
	Tags        []string          `json:"tags,omitempty"` // indexed
	Created     time.Time         `json:"created"`
	Updated     time.Time         `json:"updated"`
	LensVersion string            `json:"lens_version,omitempty"`
	Steps       int               `json:"steps"`
	FinalLoss   *float64          `json:"final_loss,omitempty"` // may be NaN or ±Inf
	Owner       int               `json:"owner,omitempty"`      // pid of the process writing the run
	// Progress is set by reads of a running run that has reported its
	// progress (SetProgress); it is not part of the stored record.
	Progress *Progress `json:"progress,omitempty"`
}

// runMetaJSON is RunMeta's stored form: FinalLoss survives NaN.
type runMetaJSON struct {
	runMetaPlain
	FinalLoss *jsonFloat `json:"final_loss,omitempty"`
}

type runMetaPlain RunMeta

// MarshalJSON encodes a RunMeta, writing a NaN or infinite FinalLoss as a
// string.
func (m RunMeta) MarshalJSON() ([]byte, error) {
	return json.Marshal(runMetaJSON{runMetaPlain(m), toJSONFloatPtr(m.FinalLoss)})
}

// decodeRunMeta decodes a stored record straight into its stored form:
// json.Unmarshal into a RunMeta would scan the record twice (once to find
// the value for UnmarshalJSON, once inside it), 4x the cost, which is
// what the first listing of 10,000 runs pays.
func decodeRunMeta(key, b []byte, m *RunMeta) error {
	var j runMetaJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return fmt.Errorf("%s: %w: %v", displayKey(key), ErrCorrupt, err)
	}
	*m = RunMeta(j.runMetaPlain)
	m.FinalLoss = fromJSONFloatPtr(j.FinalLoss)
	return nil
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (m *RunMeta) UnmarshalJSON(b []byte) error {
	var j runMetaJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*m = RunMeta(j.runMetaPlain)
	m.FinalLoss = fromJSONFloatPtr(j.FinalLoss)
	return nil
}

// redact keeps credentials out of the stored record (Options.Redact).
func (m *RunMeta) redact(redact func(string) string) {
	if redact == nil {
		return
	}
	m.Reason = redact(m.Reason)
	if c := redact(string(m.Config)); c != string(m.Config) {
		m.Config = json.RawMessage(c) // the marker has no JSON metacharacters
	}
	for k, v := range m.Args {
		if r := redact(v); r != v {
			m.Args = cloneMap(m.Args)
			m.Args[k] = r
		}
	}
}

func (m *RunMeta) validate() error {
	if err := validateRunID(m.ID); err != nil {
		return err
	}
	if m.Name != "" {
		if err := validatePart("run name", m.Name, true); err != nil {
			return err
		}
	}
	for _, t := range m.Tags {
		if err := validatePart("tag", t, true); err != nil {
			return err
		}
	}
	if !validStatus[m.Status] {
		return fmt.Errorf("run %s: unknown status %q", m.ID, m.Status)
	}
	return nil
}

// NewRunID returns a new time-sortable run id, "20261125-094512-3f9a" (UTC
// date and time, then random hex), unused in the store and never returned
// twice by this Store.
func (s *Store) NewRunID() string {
	for {
		var b [2]byte
		rand.Read(b[:])
		id := time.Now().UTC().Format("20060102-150405") + "-" + hex.EncodeToString(b[:])
		s.mu.Lock()
		taken := s.issuedIDs[id]
		s.issuedIDs[id] = true
		s.mu.Unlock()
		if taken {
			continue
		}
		var used bool
		s.view(func(txn *badger.Txn) error {
			if ok, _ := exists(txn, runMetaKey(id)); ok {
				used = true
				return nil
			}
			it := txn.NewIterator(badger.IteratorOptions{Prefix: runPrefix(id)})
			defer it.Close()
			it.Seek(runPrefix(id))
			used = it.ValidForPrefix(runPrefix(id))
			return nil
		})
		if !used {
			return id
		}
	}
}

// CreateRun stores a new run. ID is required (see NewRunID); an empty Status
// becomes "running", a zero Created now, Updated is set to Created, and a
// zero Owner this process's pid.
func (s *Store) CreateRun(m RunMeta) error {
	if m.Status == "" {
		m.Status = StatusRunning
	}
	if m.Created.IsZero() {
		m.Created = time.Now()
	}
	m.Updated = m.Created
	if m.Owner == 0 {
		m.Owner = os.Getpid()
	}
	m.Tags = dedup(m.Tags)
	m.redact(s.redact)
	m.Progress = nil
	if err := m.validate(); err != nil {
		return fmt.Errorf("create run: %w", err)
	}
	b, err := json.Marshal(m)
	if err != nil {
		return fmt.Errorf("create run %s: %w", m.ID, err)
	}
	err = s.update(func(txn *badger.Txn) error {
		ok, err := exists(txn, runMetaKey(m.ID))
		if err != nil {
			return err
		}
		if ok {
			return ErrExists
		}
		if err := txn.Set(runMetaKey(m.ID), b); err != nil {
			return err
		}
		return setIndex(txn, RunMeta{}, m)
	})
	if err != nil {
		return fmt.Errorf("create run %s: %w", m.ID, err)
	}
	s.mu.Lock()
	s.knownRuns[m.ID] = true
	s.mu.Unlock()
	return nil
}

// setIndex moves the index entries of a run from old to new in txn and
// writes its summary. A new record with no status (a delete) removes them
// all.
func setIndex(txn *badger.Txn, old, m RunMeta) error {
	if err := setSummary(txn, m); err != nil {
		return err
	}
	if (old.Status == "") != (m.Status == "") || !old.Created.Equal(m.Created) {
		if old.Status != "" {
			if err := txn.Delete(idxCreatedKey(old.Created, old.ID)); err != nil {
				return err
			}
		}
		if m.Status != "" {
			if err := txn.Set(idxCreatedKey(m.Created, m.ID), nil); err != nil {
				return err
			}
		}
	}
	if old.Status != m.Status {
		if old.Status != "" {
			if err := txn.Delete(idxStatusKey(old.Status, old.ID)); err != nil {
				return err
			}
		}
		if m.Status != "" {
			if err := txn.Set(idxStatusKey(m.Status, m.ID), nil); err != nil {
				return err
			}
		}
	}
	if old.Status == StatusRunning && m.Status != StatusRunning {
		if err := txn.Delete(progressKey(old.ID)); err != nil {
			return err
		}
	}
	if old.Name != m.Name && old.Name != "" {
		if err := txn.Delete(idxNameKey(old.Name, old.ID)); err != nil {
			return err
		}
	}
	if m.Name != "" && old.Name != m.Name {
		if err := txn.Set(idxNameKey(m.Name, m.ID), nil); err != nil {
			return err
		}
	}
	for _, t := range old.Tags {
		if !slices.Contains(m.Tags, t) {
			if err := txn.Delete(idxTagKey(t, old.ID)); err != nil {
				return err
			}
		}
	}
	for _, t := range m.Tags {
		if !slices.Contains(old.Tags, t) {
			if err := txn.Set(idxTagKey(t, m.ID), nil); err != nil {
				return err
			}
		}
	}
	return nil
}

func dedup(ss []string) []string {
	var out []string
	for _, s := range ss {
		if !slices.Contains(out, s) {
			out = append(out, s)
		}
	}
	return out
}

// UpdateRun applies fn to the stored record of run id and writes it back in
// one transaction, updating the name and tag indexes. fn must not change ID;
// Updated is set to now. An error from fn aborts the update.
func (s *Store) UpdateRun(id string, fn func(*RunMeta) error) error {
	if err := s.writable(); err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return s.updateRun(id, fn)
}

// updateRun is UpdateRun without the writable check, for Open's own
// updates (markInterrupted) while it makes the store writable.
func (s *Store) updateRun(id string, fn func(*RunMeta) error) error {
	err := s.commit(func(txn *badger.Txn) error {
		var old RunMeta
		if err := getJSON(txn, runMetaKey(id), &old); err != nil {
			return err
		}
		m := old
		m.Args = cloneMap(old.Args)
		m.Tags = slices.Clone(old.Tags)
		m.Config = slices.Clone(old.Config)
		if err := fn(&m); err != nil {
			return err
		}
		if m.ID != id {
			return fmt.Errorf("the update changed the id to %q", m.ID)
		}
		m.Tags = dedup(m.Tags)
		m.redact(s.redact)
		m.Progress = nil
		if err := m.validate(); err != nil {
			return err
		}
		m.Updated = time.Now()
		b, err := json.Marshal(m)
		if err != nil {
			return err
		}
		if err := txn.Set(runMetaKey(id), b); err != nil {
			return err
		}
		return setIndex(txn, old, m)
	})
	if err != nil {
		return fmt.Errorf("update run %s: %w", id, err)
	}
	return nil
}

// runCache keeps decoded run records by id with the Badger version they
// were read at: a record unchanged since is not decoded again, so listing
// 10,000 runs a second time reads keys and versions only.
type runCache struct {
	mu   sync.Mutex
	byID map[string]cachedRun
}

type cachedRun struct {
	version uint64
	meta    RunMeta
}

// record decodes the run record in item (a rec/<id> key), through the cache.
// The result shares nothing with the cache.
func (s *Store) record(item *badger.Item) (RunMeta, error) {
	id := string(item.Key()[len(prefixRec):])
	v := item.Version()
	s.cache.mu.Lock()
	c, ok := s.cache.byID[id]
	s.cache.mu.Unlock()
	if ok && c.version == v {
		return c.meta.clone(), nil
	}
	var m RunMeta
	err := item.Value(func(b []byte) error { return decodeRunMeta(item.Key(), b, &m) })
	if err != nil {
		return RunMeta{}, err
	}
	s.cache.mu.Lock()
	if s.cache.byID == nil {
		s.cache.byID = map[string]cachedRun{}
	}
	s.cache.byID[id] = cachedRun{v, m}
	s.cache.mu.Unlock()
	return m.clone(), nil
}

// getRun reads the record of run id in txn, with its progress folded in.
func (s *Store) getRun(txn *badger.Txn, id string) (RunMeta, error) {
	key := runMetaKey(id)
	item, err := txn.Get(key)
	if errors.Is(err, badger.ErrKeyNotFound) {
		return RunMeta{}, fmt.Errorf("%s: %w", displayKey(key), ErrNotFound)
	}
	if err != nil {
		return RunMeta{}, fmt.Errorf("read %s: %w", displayKey(key), err)
	}
	m, err := s.record(item)
	if err != nil {
		return RunMeta{}, err
	}
	s.foldProgress(txn, &m)
	return m, nil
}

func (m RunMeta) clone() RunMeta {
	m.Args = cloneMap(m.Args)
	m.Tags = slices.Clone(m.Tags)
	m.Config = slices.Clone(m.Config)
	if m.FinalLoss != nil {
		f := *m.FinalLoss
		m.FinalLoss = &f
	}
	return m
}

func cloneMap(m map[string]string) map[string]string {
	if m == nil {
		return nil
	}
	out := make(map[string]string, len(m))
	for k, v := range m {
		out[k] = v
	}
	return out
}

// GetRun returns the record of run id.
func (s *Store) GetRun(id string) (RunMeta, error) {
	var m RunMeta
	if err := validateRunID(id); err != nil {
		return m, fmt.Errorf("get run: %w", err)
	}
	err := s.view(func(txn *badger.Txn) error {
		var err error
		m, err = s.getRun(txn, id)
		return err
	})
	if err != nil {
		return RunMeta{}, fmt.Errorf("get run %s: %w", id, err)
	}
	return m, nil
}

// FindRun resolves what a person typed: an exact run id, else a run name
// (the most recently created run with it), else a unique id prefix. Several
// runs matching the prefix give an error wrapping ErrAmbiguous that lists
// them; nothing matching, one wrapping ErrNotFound.
func (s *Store) FindRun(idOrName string) (RunMeta, error) {
	if idOrName == "" {
		return RunMeta{}, fmt.Errorf("find run: empty id or name: %w", ErrNotFound)
	}
	if validateRunID(idOrName) == nil {
		m, err := s.GetRun(idOrName)
		if err == nil || !errors.Is(err, ErrNotFound) {
			return m, err
		}
	}
	byName, err := s.RunsByName(idOrName)
	if err != nil {
		return RunMeta{}, fmt.Errorf("find run %q: %w", idOrName, err)
	}
	if len(byName) > 0 {
		return byName[len(byName)-1], nil
	}
	if strings.ContainsAny(idOrName, "/\x00") {
		return RunMeta{}, fmt.Errorf("find run %q: %w", idOrName, ErrNotFound)
	}
	var matches []RunMeta
	err = s.view(func(txn *badger.Txn) error {
		var err error
		matches, err = s.runsUnder(txn, []byte(prefixRec+idOrName), true)
		return err
	})
	if err != nil {
		return RunMeta{}, fmt.Errorf("find run %q: %w", idOrName, err)
	}
	switch len(matches) {
	case 0:
		return RunMeta{}, fmt.Errorf("find run %q: no run has that id, id prefix or name: %w", idOrName, ErrNotFound)
	case 1:
		return matches[0], nil
	}
	ids := make([]string, len(matches))
	for i, m := range matches {
		ids[i] = m.ID
	}
	return RunMeta{}, fmt.Errorf("find run %q: %w: it prefixes %d run ids: %s", idOrName, ErrAmbiguous, len(ids), strings.Join(ids, ", "))
}

// runsUnder reads the record of every run whose rec/ key starts with
// prefix (prefixRec for all), through the cache, with progress folded into
// running runs. With strict false, unreadable records are skipped.
func (s *Store) runsUnder(txn *badger.Txn, prefix []byte, strict bool) ([]RunMeta, error) {
	var runs []RunMeta
	it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
	defer it.Close()
	for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
		m, err := s.record(it.Item())
		if err != nil {
			if strict {
				return nil, err
			}
			continue
		}
		s.foldProgress(txn, &m)
		runs = append(runs, m)
	}
	sortRuns(runs)
	return runs, nil
}

func sortRuns(runs []RunMeta) {
	sort.SliceStable(runs, func(i, j int) bool {
		if !runs[i].Created.Equal(runs[j].Created) {
			return runs[i].Created.Before(runs[j].Created)
		}
		return runs[i].ID < runs[j].ID
	})
}

// ListRuns returns every run, oldest first.
func (s *Store) ListRuns() ([]RunMeta, error) {
	var runs []RunMeta
	err := s.view(func(txn *badger.Txn) error {
		var err error
		runs, err = s.runsUnder(txn, []byte(prefixRec), true)
		return err
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	return runs, nil
}

// EachRun calls fn with the record of every run, oldest first, reading
// each as it goes (in one read transaction, through the creation-order
// index), so the first comes at once however many runs there are. An
// error from fn stops it and is returned. fn must not use the store: it
// runs inside the read, which a first write (WriteOnDemand) waits for.
func (s *Store) EachRun(fn func(RunMeta) error) error {
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte(prefixIdxCre)
		return scanKeys(txn, prefix, func(k []byte) error {
			if len(k) <= len(prefix)+12 {
				return fmt.Errorf("index entry %s: %w: too short", displayKey(k), ErrCorrupt)
			}
			m, err := s.getRun(txn, string(k[len(prefix)+12:]))
			if errors.Is(err, ErrNotFound) {
				return nil // an entry a delete of a corrupt record left; Fsck reports it
			}
			if err != nil {
				return fmt.Errorf("index entry %s: %w", displayKey(k), err)
			}
			return fn(m)
		})
	})
	if err != nil {
		return fmt.Errorf("list runs: %w", err)
	}
	return nil
}

// RunsByName returns the runs named name, oldest first.
func (s *Store) RunsByName(name string) ([]RunMeta, error) {
	return s.runsByIndex(idxNamePrefix(name), "name "+name)
}

// RunsByTag returns the runs tagged tag, oldest first.
func (s *Store) RunsByTag(tag string) ([]RunMeta, error) {
	return s.runsByIndex(idxTagPrefix(tag), "tag "+tag)
}

func (s *Store) runsByIndex(prefix []byte, what string) ([]RunMeta, error) {
	var runs []RunMeta
	err := s.view(func(txn *badger.Txn) error {
		return scanKeys(txn, prefix, func(k []byte) error {
			id := string(k[len(prefix):])
			if strings.IndexByte(id, '/') >= 0 {
				return nil // an entry for a longer name that shares this prefix
			}
			m, err := s.getRun(txn, id)
			if err != nil {
				return fmt.Errorf("index entry %s: %w", displayKey(k), err)
			}
			runs = append(runs, m)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("runs with %s: %w", what, err)
	}
	sortRuns(runs)
	return runs, nil
}

// DeleteRun removes run id: its record and index entries in one
// transaction (so it disappears at once), then every other key under
// run/<id>/ in batches. It also finishes a delete that was cut short.
func (s *Store) DeleteRun(id string) error {
	if err := s.writable(); err != nil {
		return err
	}
	if err := validateRunID(id); err != nil {
		return fmt.Errorf("delete run: %w", err)
	}
	s.mu.Lock()
	s.pending.dropRun(id)
	delete(s.progress, id)
	delete(s.knownNames, id)
	delete(s.knownRuns, id)
	delete(s.eventSeq, id)
	s.mu.Unlock()

	found := false
	err := s.update(func(txn *badger.Txn) error {
		var m RunMeta
		err := getJSON(txn, runMetaKey(id), &m)
		if errors.Is(err, ErrNotFound) {
			return nil
		}
		if err != nil && !errors.Is(err, ErrCorrupt) {
			return err
		}
		found = true
		if err := txn.Delete(runMetaKey(id)); err != nil {
			return err
		}
		if err := txn.Delete(progressKey(id)); err != nil {
			return err
		}
		return setIndex(txn, m, RunMeta{ID: id})
	})
	if err != nil {
		return fmt.Errorf("delete run %s: %w", id, err)
	}
	n, err := s.deletePrefix(runPrefix(id))
	if err != nil {
		return fmt.Errorf("delete run %s: %w", id, err)
	}
	if !found && n == 0 {
		return fmt.Errorf("delete run %s: %w", id, ErrNotFound)
	}
	return nil
}

// requireRun returns an error wrapping ErrNotFound unless run id exists.
func requireRun(txn *badger.Txn, id string) error {
	if err := validateRunID(id); err != nil {
		return err
	}
	ok, err := exists(txn, runMetaKey(id))
	if err != nil {
		return err
	}
	if !ok {
		return fmt.Errorf("run %s: %w", id, ErrNotFound)
	}
	return nil
}
