package kv

import (
	"encoding/binary"
	"encoding/json"
	"log/slog"
	"math"
	"path/filepath"
	"slices"
	"strconv"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// v1Store writes a store in format version 1 exactly as the previous code
// laid it out (keys.go's history: the record at run/<id>/meta, one 8-byte
// little-endian float per metric step, no status index), with the runs,
// series and checkpoint described below, and returns its directory.
func v1Store(t *testing.T) (dir string, runs []RunMeta, series map[string][]Point) {
	t.Helper()
	dir = filepath.Join(t.TempDir(), ".lens")
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueLogFileSize(MaxValueBytes))
	if err != nil {
		t.Fatal(err)
	}
	defer db.Close()
	created := time.Date(2026, 11, 25, 9, 45, 12, 0, time.UTC)
	loss := 1.25
	runs = []RunMeta{
		{ID: "20261125-094512-3f9a", Name: "base", Status: StatusDone, Tags: []string{"sweep", "a/b"}, Steps: 600, FinalLoss: &loss,
			Args: map[string]string{"r": "8"}, Config: json.RawMessage(`{"train":{"steps":600}}`), Seed: 3},
		{ID: "20261125-094513-0001", Name: "live", Status: StatusRunning, Owner: 4_000_001},
		{ID: "20261125-094514-0002", Status: StatusFailed, Reason: "diverged"},
	}
	series = map[string][]Point{}
	wb := db.NewWriteBatch()
	set := func(k, v []byte) {
		if err := wb.Set(k, v); err != nil {
			t.Fatal(err)
		}
	}
	set([]byte(keyVersion), []byte("1"))
	f64 := func(v float64) []byte { return binary.LittleEndian.AppendUint64(nil, math.Float64bits(v)) }
	for i := range runs {
		m := &runs[i]
		m.Created, m.Updated = created.Add(time.Duration(i)*time.Second), created.Add(time.Hour)
		b, _ := json.Marshal(m)
		set(cat("run/", m.ID, "/meta"), b)
		if m.Name != "" {
			set(idxNameKey(m.Name, m.ID), nil)
		}
		for _, tag := range m.Tags {
			set(idxTagKey(tag, m.ID), nil)
		}
		// "eval" and "eval/loss" interleave in key order: the migration
		// must keep them apart.
		for name, every := range map[string]int{"loss": 1, "eval": 100, "eval/loss": 50, "lr": 7} {
			for step := 0; step < 600-200*i; step += every {
				v := math.Sin(float64(step)) + float64(i)
				if name == "eval/loss" && step == 300 {
					v = math.NaN()
				}
				set(metricKey(m.ID, name, step), f64(v))
				series[m.ID+" "+name] = append(series[m.ID+" "+name], Point{step, v})
			}
		}
	}
	id := runs[0].ID
	tb, _ := encodeTensor(testTensor("lora_A", 4, 8))
	set(ckptTensorKey(id, 600, "lora_A"), tb)
	cm, _ := json.Marshal(CheckpointMeta{Step: 600, Time: created, Tensors: []string{"lora_A"}})
	set(ckptMetaKey(id, 600), cm)
	eb, _ := json.Marshal(Event{Seq: 1, Step: 3, Kind: "nan_skip", Message: "skipped", Time: created})
	set(eventKey(id, 1), eb)
	set(blobTensorKey("base-model", "k", "w"), tb)
	rb, _ := json.Marshal(blobRecord{Tensors: []string{"w"}, Time: created})
	set(blobMetaKey("base-model", "k"), rb)
	if err := wb.Flush(); err != nil {
		t.Fatal(err)
	}
	return dir, runs, series
}

// checkMigrated compares a migrated store with what v1Store wrote.
func checkMigrated(t *testing.T, s *Store, runs []RunMeta, series map[string][]Point) {
	t.Helper()
	if v := rawGet(t, s, []byte(keyVersion)); string(v) != strconv.Itoa(FormatVersion) {
		t.Errorf("store/version = %q, want %d", v, FormatVersion)
	}
	got, err := s.ListRuns()
	if err != nil || len(got) != len(runs) {
		t.Fatalf("ListRuns: %d runs, %v", len(got), err)
	}
	for i, m := range got {
		want := runs[i]
		if want.Status == StatusRunning { // its writer is gone: Open marks it
			want.Status = StatusInterrupted
		}
		if m.ID != want.ID || m.Name != want.Name || m.Status != want.Status || !slices.Equal(m.Tags, want.Tags) ||
			m.Steps != want.Steps || string(m.Config) != string(want.Config) || m.Seed != want.Seed || (m.FinalLoss == nil) != (want.FinalLoss == nil) {
			t.Errorf("run %d: %+v, want %+v", i, m, want)
		}
	}
	for key, want := range series {
		var id, name string
		for i := range key {
			if key[i] == ' ' {
				id, name = key[:i], key[i+1:]
				break
			}
		}
		pts, err := s.ReadMetric(id, name)
		if err != nil || len(pts) != len(want) {
			t.Fatalf("%s: %d points, %v; want %d", key, len(pts), err, len(want))
		}
		for i := range pts {
			if pts[i].Step != want[i].Step || math.Float64bits(pts[i].Value) != math.Float64bits(want[i].Value) {
				t.Fatalf("%s point %d: %v, want %v", key, i, pts[i], want[i])
			}
		}
	}
	if byTag, err := s.RunsByTag("a/b"); err != nil || len(byTag) != 1 {
		t.Errorf("RunsByTag: %v %v", byTag, err)
	}
	sums, err := s.ListSummaries()
	if err != nil || len(sums) != len(got) {
		t.Fatalf("ListSummaries: %d runs, %v", len(sums), err)
	}
	for i, r := range sums {
		if !sameSummary(r, got[i].Summary()) {
			t.Errorf("summary %d: %+v, want %+v", i, r, got[i].Summary())
		}
	}
	if _, ts, err := s.LoadCheckpoint(runs[0].ID, 600); err != nil || !sameTensors(ts, []Tensor{testTensor("lora_A", 4, 8)}) {
		t.Errorf("LoadCheckpoint: %v", err)
	}
	if _, _, err := s.GetBlob("base-model", "k"); err != nil {
		t.Errorf("GetBlob: %v", err)
	}
	if p, err := s.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck after migration: %v %v", p, err)
	}
}

// A store written in format 1 opens, migrates once and passes Fsck; a
// read-only open migrates it too; a migration cut short is finished by the
// next open.
func TestMigrateFromV1(t *testing.T) {
	t.Run("writable", func(t *testing.T) {
		dir, runs, series := v1Store(t)
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		checkMigrated(t, s, runs, series)
		if len(s.Interrupted()) != 1 || s.Interrupted()[0].ID != runs[1].ID {
			t.Errorf("Interrupted = %v, want the running run", s.Interrupted())
		}
		before := rawDump(t, s, nil)
		s = reopen(t, s, Options{})
		after := rawDump(t, s, nil)
		delete(before, keyVersion)
		for k, v := range before {
			if string(after[k]) != string(v) {
				t.Errorf("reopening changed %s: migrated twice?", k)
			}
		}
	})
	t.Run("read-only", func(t *testing.T) {
		dir, runs, series := v1Store(t)
		s, err := Open(dir, Options{ReadOnly: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		checkMigrated(t, s, runs, series)
	})
	t.Run("write on demand", func(t *testing.T) {
		// Migrated as a read-only open does, then read, then written.
		dir, runs, series := v1Store(t)
		s, err := Open(dir, Options{WriteOnDemand: true})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		if !s.ReadOnly() {
			t.Error("not read-only before the first write")
		}
		checkMigrated(t, s, runs, series)
		if err := s.AddEvent(runs[0].ID, Event{Kind: "note", Message: "after"}); err != nil {
			t.Fatal(err)
		}
		if s.ReadOnly() {
			t.Error("read-only after the first write")
		}
		// The migrating open marked the dead writer's run.
		if m, err := s.GetRun(runs[1].ID); err != nil || m.Status != StatusInterrupted {
			t.Errorf("the running run after the write: %s, %v", m.Status, err)
		}
		if ev, err := s.Events(runs[0].ID); err != nil || len(ev) == 0 || ev[len(ev)-1].Message != "after" {
			t.Errorf("events: %v, %v", ev, err)
		}
	})
	t.Run("cut short", func(t *testing.T) {
		dir, runs, series := v1Store(t)
		db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueLogFileSize(MaxValueBytes))
		if err != nil {
			t.Fatal(err)
		}
		part := &Store{db: db, dir: dir, log: slog.New(slog.DiscardHandler)}
		// Records moved and every series in blocks, but the version not
		// yet written, and some old points still there (their deletes
		// were lost) with a first run's record at both places.
		if _, err := part.migrateRecords(); err != nil {
			t.Fatal(err)
		}
		if _, err := part.migrateMetrics(); err != nil {
			t.Fatal(err)
		}
		id := runs[0].ID
		rawSet(t, part, metricKey(id, "loss", 5), binary.LittleEndian.AppendUint64(nil, math.Float64bits(math.Sin(5))))
		b, _ := json.Marshal(runs[0])
		rawSet(t, part, cat("run/", id, "/meta"), b)
		db.Close()
		s, err := Open(dir, Options{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Close()
		checkMigrated(t, s, runs, series)
	})
}
