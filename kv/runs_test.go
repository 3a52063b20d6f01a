package kv

import (
	"encoding/json"
	"errors"
	"math"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestRunRoundTrip(t *testing.T) {
	s := openTemp(t)
	loss := math.NaN()
	in := RunMeta{
		ID: "r1", Name: "sweep/lr", Script: "sweep.star", ScriptHash: "abc",
		Args: map[string]string{"lr": "3e-4"}, Config: json.RawMessage(`{"rank":8}`),
		Seed: 42, Tags: []string{"a", "b", "a"}, LensVersion: "0.1", Steps: 10, FinalLoss: &loss,
	}
	if err := s.CreateRun(in); err != nil {
		t.Fatal(err)
	}
	got, err := s.GetRun("r1")
	if err != nil {
		t.Fatal(err)
	}
	if got.Status != StatusRunning || got.Owner == 0 || got.Created.IsZero() || !got.Updated.Equal(got.Created) {
		t.Errorf("defaults not applied: %+v", got)
	}
	if got.FinalLoss == nil || !math.IsNaN(*got.FinalLoss) {
		t.Errorf("FinalLoss = %v, want NaN", got.FinalLoss)
	}
	if !slices.Equal(got.Tags, []string{"a", "b"}) || got.Args["lr"] != "3e-4" || string(got.Config) != `{"rank":8}` || got.Seed != 42 {
		t.Errorf("fields lost: %+v", got)
	}
	if err := s.CreateRun(in); !errors.Is(err, ErrExists) {
		t.Errorf("second CreateRun: %v, want ErrExists", err)
	}
}

func TestCreateRunValidates(t *testing.T) {
	s := openTemp(t)
	tests := []struct {
		name string
		m    RunMeta
		want string
	}{
		{"empty id", RunMeta{}, "run id is empty"},
		{"slash in id", RunMeta{ID: "a/b"}, `contains "/"`},
		{"nul in name", RunMeta{ID: "a", Name: "x\x00"}, "NUL"},
		{"bad status", RunMeta{ID: "a", Status: "paused"}, "unknown status"},
		{"empty tag", RunMeta{ID: "a", Tags: []string{""}}, "tag is empty"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			err := s.CreateRun(tt.m)
			if err == nil || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("CreateRun(%+v) = %v, want %q", tt.m, err, tt.want)
			}
		})
	}
}

func TestUpdateRunMaintainsIndexes(t *testing.T) {
	s := openTemp(t)
	if err := s.CreateRun(RunMeta{ID: "r1", Name: "old", Tags: []string{"keep", "drop"}}); err != nil {
		t.Fatal(err)
	}
	before, _ := s.GetRun("r1")
	time.Sleep(time.Millisecond)
	err := s.UpdateRun("r1", func(m *RunMeta) error {
		m.Name, m.Tags, m.Status, m.Steps = "new", []string{"keep", "add"}, StatusDone, 100
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	m, _ := s.GetRun("r1")
	if m.Name != "new" || m.Status != StatusDone || m.Steps != 100 || !m.Updated.After(before.Updated) {
		t.Errorf("after update: %+v", m)
	}
	checks := []struct {
		what string
		get  func() ([]RunMeta, error)
		want int
	}{
		{"name old", func() ([]RunMeta, error) { return s.RunsByName("old") }, 0},
		{"name new", func() ([]RunMeta, error) { return s.RunsByName("new") }, 1},
		{"tag keep", func() ([]RunMeta, error) { return s.RunsByTag("keep") }, 1},
		{"tag drop", func() ([]RunMeta, error) { return s.RunsByTag("drop") }, 0},
		{"tag add", func() ([]RunMeta, error) { return s.RunsByTag("add") }, 1},
	}
	for _, c := range checks {
		runs, err := c.get()
		if err != nil || len(runs) != c.want {
			t.Errorf("%s: %d runs (%v), want %d", c.what, len(runs), err, c.want)
		}
	}

	boom := errors.New("boom")
	if err := s.UpdateRun("r1", func(m *RunMeta) error { m.Name = "x"; return boom }); !errors.Is(err, boom) {
		t.Errorf("fn error: %v", err)
	}
	if err := s.UpdateRun("r1", func(m *RunMeta) error { m.ID = "r2"; return nil }); err == nil {
		t.Error("changing the id was accepted")
	}
	if err := s.UpdateRun("nope", func(*RunMeta) error { return nil }); !errors.Is(err, ErrNotFound) {
		t.Errorf("missing run: %v", err)
	}
	if m2, _ := s.GetRun("r1"); m2.Name != "new" {
		t.Errorf("failed updates changed the run: %+v", m2)
	}
	if p, err := s.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck: %v %v", p, err)
	}
}

func TestFindRun(t *testing.T) {
	s := openTemp(t)
	t0 := time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC)
	for i, m := range []RunMeta{
		{ID: "20260101-000000-aaaa", Name: "base"},
		{ID: "20260101-000001-bbbb", Name: "base"},
		{ID: "20260102-000000-cccc", Name: "other"},
		{ID: "20260102-000001-cccd", Name: "20260101-000000-aaaa"}, // a name that is another run's id
	} {
		m.Created = t0.Add(time.Duration(i) * time.Hour)
		if err := s.CreateRun(m); err != nil {
			t.Fatal(err)
		}
	}
	tests := []struct {
		query string
		want  string // run id, or "" for an error
		err   error
	}{
		{"20260101-000000-aaaa", "20260101-000000-aaaa", nil}, // id beats name
		{"base", "20260101-000001-bbbb", nil},                 // latest with the name
		{"other", "20260102-000000-cccc", nil},
		{"20260101-000001", "20260101-000001-bbbb", nil}, // unique prefix
		{"20260102-000000-c", "20260102-000000-cccc", nil},
		{"20260102", "", ErrAmbiguous},
		{"2026", "", ErrAmbiguous},
		{"zzz", "", ErrNotFound},
		{"", "", ErrNotFound},
		{"a/b", "", ErrNotFound},
	}
	for _, tt := range tests {
		t.Run(tt.query, func(t *testing.T) {
			m, err := s.FindRun(tt.query)
			if tt.err != nil {
				if !errors.Is(err, tt.err) {
					t.Errorf("FindRun(%q) = %v, %v; want error %v", tt.query, m.ID, err, tt.err)
				}
				return
			}
			if err != nil || m.ID != tt.want {
				t.Errorf("FindRun(%q) = %q, %v; want %q", tt.query, m.ID, err, tt.want)
			}
		})
	}
	_, err := s.FindRun("20260102")
	if err == nil || !strings.Contains(err.Error(), "20260102-000000-cccc") || !strings.Contains(err.Error(), "20260102-000001-cccd") {
		t.Errorf("ambiguous error should list the candidates: %v", err)
	}
}

func TestListRunsCreationOrder(t *testing.T) {
	s := openTemp(t)
	t0 := time.Now()
	// ids in the opposite order of creation times
	for i, id := range []string{"c", "b", "a"} {
		if err := s.CreateRun(RunMeta{ID: id, Created: t0.Add(time.Duration(i) * time.Second)}); err != nil {
			t.Fatal(err)
		}
	}
	// a run with keys but no record is not listed
	rawSet(t, s, metricKey("orphan", "loss", 0), encodeBlock([]Point{{1, 1}}, 0))
	runs, err := s.ListRuns()
	if err != nil {
		t.Fatal(err)
	}
	var ids []string
	for _, r := range runs {
		ids = append(ids, r.ID)
	}
	if !slices.Equal(ids, []string{"c", "b", "a"}) {
		t.Errorf("ListRuns order %v", ids)
	}
}

func TestNewRunID(t *testing.T) {
	s := openTemp(t)
	re := regexp.MustCompile(`^\d{8}-\d{6}-[0-9a-f]{4}$`)
	seen := map[string]bool{}
	for range 2000 {
		id := s.NewRunID()
		if !re.MatchString(id) {
			t.Fatalf("id %q has the wrong form", id)
		}
		if seen[id] {
			t.Fatalf("id %q returned twice", id)
		}
		seen[id] = true
	}
}

// Behaviour 6: a delete removes everything of the run and nothing else.
func TestDeleteRun(t *testing.T) {
	s := openTemp(t)
	fill := func(name string) RunMeta {
		m := RunMeta{ID: s.NewRunID(), Name: name, Tags: []string{"t"}}
		if err := s.CreateRun(m); err != nil {
			t.Fatal(err)
		}
		for step := range 300 {
			if err := s.AddMetric(m.ID, "loss", step, float64(step)); err != nil {
				t.Fatal(err)
			}
		}
		for _, step := range []int{1, 2} {
			if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: step}, []Tensor{testTensor("a", 2, 2), testTensor("b", 3)}); err != nil {
				t.Fatal(err)
			}
		}
		if err := s.PutCollectedTensor(m.ID, "grads", 1, testTensor("g", 4)); err != nil {
			t.Fatal(err)
		}
		if err := s.AddEvent(m.ID, Event{Kind: "info", Message: "hi"}); err != nil {
			t.Fatal(err)
		}
		return m
	}
	a, b := fill("a"), fill("b")
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	bBefore := rawDump(t, s, runPrefix(b.ID))
	if err := s.AddMetric(a.ID, "late", 1, 1); err != nil { // buffered, never flushed
		t.Fatal(err)
	}

	if err := s.DeleteRun(a.ID); err != nil {
		t.Fatal(err)
	}
	if err := s.Flush(); err != nil {
		t.Fatal(err)
	}
	if left := rawDump(t, s, runPrefix(a.ID)); len(left) != 0 {
		t.Errorf("keys of the deleted run remain: %v", left)
	}
	for _, p := range [][]byte{idxNameKey("a", a.ID), idxTagKey("t", a.ID)} {
		if left := rawDump(t, s, p); len(left) != 0 {
			t.Errorf("index entry remains: %v", left)
		}
	}
	bAfter := rawDump(t, s, runPrefix(b.ID))
	if len(bAfter) != len(bBefore) {
		t.Errorf("other run had %d keys, now %d", len(bBefore), len(bAfter))
	}
	if runs, _ := s.RunsByTag("t"); len(runs) != 1 || runs[0].ID != b.ID {
		t.Errorf("RunsByTag after delete: %v", runs)
	}
	if _, err := s.GetRun(a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("GetRun of deleted run: %v", err)
	}
	if err := s.DeleteRun(a.ID); !errors.Is(err, ErrNotFound) {
		t.Errorf("second delete: %v", err)
	}
	if err := s.AddMetric(a.ID, "loss", 1, 1); !errors.Is(err, ErrNotFound) {
		t.Errorf("AddMetric to a deleted run: %v", err)
	}
	if p, err := s.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck after delete: %v %v", p, err)
	}
}

// A delete cut short (record gone, other keys left) is finished by DeleteRun.
func TestDeleteRunFinishesPartialDelete(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "x")
	s.AddMetric(m.ID, "loss", 1, 1)
	s.Flush()
	rawDelete(t, s, runMetaKey(m.ID))
	rawDelete(t, s, idxNameKey("x", m.ID))
	if err := s.DeleteRun(m.ID); err != nil {
		t.Fatal(err)
	}
	if left := rawDump(t, s, runPrefix(m.ID)); len(left) != 0 {
		t.Errorf("keys remain: %v", left)
	}
}
