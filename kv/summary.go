package kv

import (
	"bytes"
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// RunSummary is the part of a run's record that listing, filtering and
// ordering runs need: everything but the config, args, script and
// versions. It is kept at sum/<id>, written in the same transaction as the
// record (setIndex), in a small binary form, so that listing 10,000 runs
// reads 10,000 values of ~100 bytes and decodes no JSON. Progress is folded
// into a running run's summary as into its record.
type RunSummary struct {
	ID        string
	Name      string
	Status    string
	Reason    string
	Tags      []string
	Created   time.Time
	Updated   time.Time
	Steps     int
	FinalLoss *float64 // may be NaN or ±Inf
	Owner     int
	Progress  *Progress
}

// Summary returns the summary of m.
func (m RunMeta) Summary() RunSummary {
	s := RunSummary{ID: m.ID, Name: m.Name, Status: m.Status, Reason: m.Reason, Tags: slices.Clone(m.Tags),
		Created: m.Created, Updated: m.Updated, Steps: m.Steps, Owner: m.Owner, Progress: m.Progress}
	if m.FinalLoss != nil {
		f := *m.FinalLoss
		s.FinalLoss = &f
	}
	return s
}

// Meta returns a RunMeta holding the summary's fields; Config, Args,
// Script, ScriptHash, Seed and LensVersion are empty (GetRun has them).
func (s RunSummary) Meta() RunMeta {
	m := RunMeta{ID: s.ID, Name: s.Name, Status: s.Status, Reason: s.Reason, Tags: slices.Clone(s.Tags),
		Created: s.Created, Updated: s.Updated, Steps: s.Steps, Owner: s.Owner, Progress: s.Progress}
	if s.FinalLoss != nil {
		f := *s.FinalLoss
		m.FinalLoss = &f
	}
	return m
}

// summaryV is the first byte of an encoded summary: its encoding version,
// so the form can change without a store format bump.
const summaryV = 1

// encodeSummary writes s as: version byte; ID, Name, Status, Reason as
// uvarint length + bytes; uvarint tag count and the tags likewise; Created
// and Updated as varint Unix seconds + uvarint nanoseconds; varint Steps
// and Owner; a byte saying whether FinalLoss follows as 8 little-endian
// bytes of its bits. Progress is not stored (it lives at prog/<id>).
func encodeSummary(s RunSummary) []byte {
	b := make([]byte, 0, 96+len(s.ID)+len(s.Name)+len(s.Reason))
	b = append(b, summaryV)
	str := func(v string) { b = binary.AppendUvarint(b, uint64(len(v))); b = append(b, v...) }
	str(s.ID)
	str(s.Name)
	str(s.Status)
	str(s.Reason)
	b = binary.AppendUvarint(b, uint64(len(s.Tags)))
	for _, t := range s.Tags {
		str(t)
	}
	for _, t := range []time.Time{s.Created, s.Updated} {
		b = binary.AppendVarint(b, t.Unix())
		b = binary.AppendUvarint(b, uint64(t.Nanosecond()))
	}
	b = binary.AppendVarint(b, int64(s.Steps))
	b = binary.AppendVarint(b, int64(s.Owner))
	if s.FinalLoss == nil {
		return append(b, 0)
	}
	b = append(b, 1)
	return binary.LittleEndian.AppendUint64(b, math.Float64bits(*s.FinalLoss))
}

var errSummary = errors.New("truncated or malformed summary")

// decodeSummary is the inverse of encodeSummary; key names the value in
// errors.
func decodeSummary(key, b []byte) (RunSummary, error) {
	var s RunSummary
	fail := func(what string) (RunSummary, error) {
		return RunSummary{}, fmt.Errorf("%s: %w: %s: %v", displayKey(key), ErrCorrupt, what, errSummary)
	}
	if len(b) == 0 || b[0] != summaryV {
		return fail("unknown summary encoding")
	}
	b = b[1:]
	uv := func() (uint64, bool) {
		v, n := binary.Uvarint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	sv := func() (int64, bool) {
		v, n := binary.Varint(b)
		if n <= 0 {
			return 0, false
		}
		b = b[n:]
		return v, true
	}
	str := func() (string, bool) {
		n, ok := uv()
		if !ok || n > uint64(len(b)) {
			return "", false
		}
		v := string(b[:n])
		b = b[n:]
		return v, true
	}
	var ok bool
	for _, f := range []*string{&s.ID, &s.Name, &s.Status, &s.Reason} {
		if *f, ok = str(); !ok {
			return fail("strings")
		}
	}
	nt, ok := uv()
	if !ok || nt > uint64(len(b)) {
		return fail("tags")
	}
	if nt > 0 {
		s.Tags = make([]string, nt)
	}
	for i := range s.Tags {
		if s.Tags[i], ok = str(); !ok {
			return fail("tags")
		}
	}
	for _, t := range []*time.Time{&s.Created, &s.Updated} {
		sec, ok1 := sv()
		ns, ok2 := uv()
		if !ok1 || !ok2 || ns >= 1e9 {
			return fail("times")
		}
		*t = time.Unix(sec, int64(ns))
	}
	steps, ok1 := sv()
	owner, ok2 := sv()
	if !ok1 || !ok2 || len(b) == 0 {
		return fail("steps and owner")
	}
	s.Steps, s.Owner = int(steps), int(owner)
	switch {
	case b[0] == 0 && len(b) == 1:
	case b[0] == 1 && len(b) == 9:
		f := math.Float64frombits(binary.LittleEndian.Uint64(b[1:]))
		s.FinalLoss = &f
	default:
		return fail("final loss")
	}
	return s, nil
}

// setSummary writes (m non-zero) or deletes (m.Status empty) the summary of
// run m.ID in txn.
func setSummary(txn *badger.Txn, m RunMeta) error {
	if m.Status == "" {
		return txn.Delete(summaryKey(m.ID))
	}
	return txn.Set(summaryKey(m.ID), encodeSummary(m.Summary()))
}

// foldSummaryProgress is foldProgress for a summary.
func (s *Store) foldSummaryProgress(txn *badger.Txn, r *RunSummary) {
	if r.Status != StatusRunning {
		return
	}
	m := RunMeta{ID: r.ID, Status: r.Status, Steps: r.Steps}
	s.foldProgress(txn, &m)
	r.Steps, r.Progress = m.Steps, m.Progress
}

func sortSummaries(runs []RunSummary) {
	sort.SliceStable(runs, func(i, j int) bool {
		if !runs[i].Created.Equal(runs[j].Created) {
			return runs[i].Created.Before(runs[j].Created)
		}
		return runs[i].ID < runs[j].ID
	})
}

// ListSummaries returns the summary of every run, oldest first, reading
// one small value per run and no run record.
func (s *Store) ListSummaries() ([]RunSummary, error) {
	var runs []RunSummary
	err := s.view(func(txn *badger.Txn) error {
		prefix := []byte(prefixSum)
		// Summaries are small, so their values sit in the LSM tree beside
		// their keys: prefetching would only copy them.
		// Counting first (keys only, ~0.2 µs a run) lets the slice be
		// made once: growing it by appends cost more than the reads in a
		// fresh process (growslice, page faults and GC of the copies).
		n := 0
		if err := scanKeys(txn, prefix, func([]byte) error { n++; return nil }); err != nil {
			return err
		}
		runs = make([]RunSummary, 0, n)
		it := txn.NewIterator(badger.IteratorOptions{Prefix: prefix})
		defer it.Close()
		for it.Seek(prefix); it.ValidForPrefix(prefix); it.Next() {
			item := it.Item()
			var r RunSummary
			err := item.Value(func(v []byte) error {
				var err error
				r, err = decodeSummary(item.Key(), v)
				return err
			})
			if err != nil {
				return err
			}
			s.foldSummaryProgress(txn, &r)
			runs = append(runs, r)
		}
		return nil
	})
	if err != nil {
		return nil, fmt.Errorf("list runs: %w", err)
	}
	sortSummaries(runs)
	return runs, nil
}

// SummariesByName returns the summaries of the runs named name, oldest
// first.
func (s *Store) SummariesByName(name string) ([]RunSummary, error) {
	return s.summariesByIndex(idxNamePrefix(name), "name "+name)
}

// SummariesByTag returns the summaries of the runs tagged tag, oldest
// first.
func (s *Store) SummariesByTag(tag string) ([]RunSummary, error) {
	return s.summariesByIndex(idxTagPrefix(tag), "tag "+tag)
}

func (s *Store) summariesByIndex(prefix []byte, what string) ([]RunSummary, error) {
	var runs []RunSummary
	err := s.view(func(txn *badger.Txn) error {
		return scanKeys(txn, prefix, func(k []byte) error {
			id := string(k[len(prefix):])
			if strings.IndexByte(id, '/') >= 0 {
				return nil // an entry for a longer name that shares this prefix
			}
			key := summaryKey(id)
			v, err := getValue(txn, key)
			if err != nil {
				return fmt.Errorf("index entry %s: %w", displayKey(k), err)
			}
			r, err := decodeSummary(key, v)
			if err != nil {
				return err
			}
			s.foldSummaryProgress(txn, &r)
			runs = append(runs, r)
			return nil
		})
	})
	if err != nil {
		return nil, fmt.Errorf("runs with %s: %w", what, err)
	}
	sortSummaries(runs)
	return runs, nil
}

// summaryMatches reports whether v is the summary of record m, for Fsck.
func summaryMatches(m RunMeta, v []byte) bool {
	return bytes.Equal(encodeSummary(m.Summary()), v)
}
