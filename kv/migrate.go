package kv

import (
	"encoding/binary"
	"errors"
	"fmt"
	"math"
	"strconv"

	badger "github.com/dgraph-io/badger/v4"
)

// Migration from format versions 1 and 2 (see keys.go), run by a writable
// Open:
//
//  1. (from 1) each run/<id>/meta moves to rec/<id>, with its idx/status entry;
//  2. (from 1) each series' 8-byte points are gathered into blocks (metrics.go);
//  3. (from 1 and 2) each record's summary is written at sum/<id>, and its
//     idx/created entry;
//  4. store/version becomes 3.
//
// Each part writes its new keys before deleting the old ones, and the
// version is written last, so a migration cut short is simply run again
// by the next Open: a record found at both places is copied again, points
// still in the old form are merged into the blocks already written.
// Tensors need nothing: records up to the old 64 MB limit are read as
// they are.

// migrateBatch is how many points are gathered before their blocks are
// written, to bound memory on a large store.
const migrateBatch = 1 << 20

func (s *Store) migrate(from int) error {
	if from != 1 && from != 2 {
		return &VersionError{Dir: s.dir, Found: from, Want: FormatVersion}
	}
	s.log.Warn("migrating store to the current format", "dir", s.dir, "from", from, "to", FormatVersion)
	var runs, points int
	var err error
	if from == 1 {
		if _, err = s.migrateRecords(); err != nil {
			return fmt.Errorf("open store %s: migrate from format %d: run records: %w", s.dir, from, err)
		}
		if points, err = s.migrateMetrics(); err != nil {
			return fmt.Errorf("open store %s: migrate from format %d: metrics: %w", s.dir, from, err)
		}
	}
	if runs, err = s.migrateSummaries(); err != nil {
		return fmt.Errorf("open store %s: migrate from format %d: run summaries: %w", s.dir, from, err)
	}
	if err := s.db.Update(func(txn *badger.Txn) error {
		return txn.Set([]byte(keyVersion), []byte(strconv.Itoa(FormatVersion)))
	}); err != nil {
		return fmt.Errorf("open store %s: migrate from format %d: write format version: %w", s.dir, from, err)
	}
	if err := s.db.Sync(); err != nil {
		return fmt.Errorf("open store %s: migrate: %w", s.dir, err)
	}
	s.log.Info("store migrated", "dir", s.dir, "runs", runs, "metric points", points)
	return nil
}

// migrateRecords moves run/<id>/meta to rec/<id> and indexes the status.
func (s *Store) migrateRecords() (int, error) {
	type rec struct {
		id   string
		val  []byte
		meta RunMeta
		ok   bool
	}
	var recs []rec
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRun)})
		defer it.Close()
		for it.Seek([]byte(prefixRun)); it.ValidForPrefix([]byte(prefixRun)); {
			k := it.Item().Key()
			p := parseKey(k)
			if p.run == "" {
				it.Next()
				continue
			}
			item, err := txn.Get(v1RunMetaKey(p.run))
			if err == nil {
				r := rec{id: p.run}
				if r.val, err = item.ValueCopy(nil); err != nil {
					return err
				}
				// An unreadable record moves as it is; Fsck reports it.
				r.ok = decodeJSON(k, r.val, &r.meta) == nil
				recs = append(recs, r)
			} else if !errors.Is(err, badger.ErrKeyNotFound) {
				return err
			}
			it.Seek(prefixEnd(runPrefix(p.run)))
		}
		return nil
	})
	if err != nil {
		return 0, err
	}
	for _, r := range recs {
		// One transaction per run: the record is at one place or both,
		// never neither.
		err := s.db.Update(func(txn *badger.Txn) error {
			if err := txn.Set(runMetaKey(r.id), r.val); err != nil {
				return err
			}
			if r.ok && validStatus[r.meta.Status] {
				if err := txn.Set(idxStatusKey(r.meta.Status, r.id), nil); err != nil {
					return err
				}
			}
			return txn.Delete(v1RunMetaKey(r.id))
		})
		if err != nil {
			return 0, fmt.Errorf("run %s: %w", r.id, err)
		}
	}
	return len(recs), nil
}

// migrateSummaries writes the summary and creation-order entry of every
// readable rec/<id> (an unreadable record gets none; Fsck reports the
// record). Running it again
// rewrites the same values.
func (s *Store) migrateSummaries() (int, error) {
	wb := s.db.NewWriteBatch()
	defer wb.Cancel()
	n := 0
	err := s.view(func(txn *badger.Txn) error {
		return scan(txn, []byte(prefixRec), func(k, v []byte) error {
			var m RunMeta
			if decodeRunMeta(k, v, &m) != nil || m.ID != string(k[len(prefixRec):]) {
				return nil
			}
			n++
			if err := wb.Set(idxCreatedKey(m.Created, m.ID), nil); err != nil {
				return err
			}
			return wb.Set(summaryKey(m.ID), encodeSummary(m.Summary()))
		})
	})
	if err != nil {
		return 0, err
	}
	if err := wb.Flush(); err != nil {
		return 0, err
	}
	return n, nil
}

// migrateMetrics turns format-1 points (one 8-byte value per step) into
// blocks.
func (s *Store) migrateMetrics() (int, error) {
	type blockID struct {
		run, name string
		start     int
	}
	total := 0
	gathered := map[blockID][]Point{}
	var old [][]byte
	n := 0
	write := func() error {
		if n == 0 {
			return nil
		}
		var keys, vals [][]byte
		err := s.view(func(txn *badger.Txn) error {
			for b, pts := range gathered {
				key := metricKey(b.run, b.name, b.start)
				var have []Point
				item, err := txn.Get(key)
				switch {
				case err == nil:
					err = item.Value(func(v []byte) error {
						if len(v) == 8 { // the format-1 point at the block's first step
							have = []Point{{b.start, decodeV1Point(v)}}
							return nil
						}
						var derr error
						have, derr = decodeBlock(key, v, b.start)
						return derr
					})
					if err != nil {
						return err
					}
				case !errors.Is(err, badger.ErrKeyNotFound):
					return err
				}
				keys = append(keys, key)
				vals = append(vals, encodeBlock(mergePoints(have, pts), b.start))
			}
			return nil
		})
		if err != nil {
			return err
		}
		// Blocks first, then the old points they replace, in two batches
		// so that no point is deleted before its block is written.
		if err := s.writeBatch(keys, vals); err != nil {
			return err
		}
		wb := s.db.NewWriteBatch()
		for _, k := range old {
			if err := wb.Delete(k); err != nil {
				wb.Cancel()
				return err
			}
		}
		if err := wb.Flush(); err != nil {
			return err
		}
		total += n
		clear(gathered)
		old, n = old[:0], 0
		return nil
	}
	err := s.view(func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte(prefixRun), PrefetchValues: true})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			item := it.Item()
			p := parseKey(item.Key())
			if p.kind != kindMetric || item.ValueSize() != 8 {
				continue
			}
			v, err := item.ValueCopy(nil)
			if err != nil {
				return err
			}
			if len(v) != 8 {
				continue
			}
			b := blockID{p.run, p.name, blockStart(int(p.step))}
			// Points come in step order within a series, so appending keeps
			// each block's points sorted.
			gathered[b] = append(gathered[b], Point{int(p.step), decodeV1Point(v)})
			if int(p.step) != b.start {
				old = append(old, item.KeyCopy(nil))
			}
			if n++; n >= migrateBatch {
				if err := write(); err != nil {
					return err
				}
			}
		}
		return nil
	})
	if err != nil {
		return total, err
	}
	return total, write()
}

func decodeV1Point(v []byte) float64 {
	return math.Float64frombits(binary.LittleEndian.Uint64(v))
}
