package kv

import (
	"errors"
	"math"
	"slices"
	"strings"
	"testing"
	"time"
)

// sameSummary compares summaries field by field: times as instants, final
// losses by their bits (NaN included), progress by step.
func sameSummary(a, b RunSummary) bool {
	if a.ID != b.ID || a.Name != b.Name || a.Status != b.Status || a.Reason != b.Reason || !slices.Equal(a.Tags, b.Tags) ||
		!a.Created.Equal(b.Created) || !a.Updated.Equal(b.Updated) || a.Steps != b.Steps || a.Owner != b.Owner {
		return false
	}
	if (a.FinalLoss == nil) != (b.FinalLoss == nil) || (a.FinalLoss != nil && math.Float64bits(*a.FinalLoss) != math.Float64bits(*b.FinalLoss)) {
		return false
	}
	return (a.Progress == nil) == (b.Progress == nil) && (a.Progress == nil || a.Progress.Step == b.Progress.Step)
}

func TestSummaryEncoding(t *testing.T) {
	loss, nan, inf := 0.125, math.NaN(), math.Inf(-1)
	when := time.Date(2026, 12, 5, 6, 7, 8, 123456789, time.UTC)
	tests := []struct {
		name string
		s    RunSummary
	}{
		{"minimal", RunSummary{ID: "r", Status: StatusRunning}},
		{"full", RunSummary{ID: "20261205-060708-3f9a", Name: "sweep/r16", Status: StatusFailed, Reason: strings.Repeat("out of memory ", 100),
			Tags: []string{"sweep", "r16", "ünï"}, Created: when, Updated: when.Add(time.Hour), Steps: 1 << 40, FinalLoss: &loss, Owner: 4_000_001}},
		{"NaN loss", RunSummary{ID: "n", Status: StatusDone, FinalLoss: &nan, Created: when.Add(-100 * 365 * 24 * time.Hour)}},
		{"-Inf loss", RunSummary{ID: "i", Status: StatusStopped, FinalLoss: &inf, Steps: -1, Owner: -5}},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			b := encodeSummary(tt.s)
			got, err := decodeSummary(summaryKey(tt.s.ID), b)
			if err != nil {
				t.Fatal(err)
			}
			if !sameSummary(got, tt.s) {
				t.Errorf("decoded %+v, want %+v", got, tt.s)
			}
			// Every truncation and a trailing byte are refused, naming
			// the key.
			for n := range len(b) {
				if _, err := decodeSummary(summaryKey(tt.s.ID), b[:n]); !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), "sum/"+tt.s.ID) {
					t.Fatalf("%d of %d bytes: error %v, want ErrCorrupt naming sum/%s", n, len(b), err, tt.s.ID)
				}
			}
			if _, err := decodeSummary(summaryKey(tt.s.ID), append(b, 0)); !errors.Is(err, ErrCorrupt) {
				t.Errorf("a trailing byte: error %v, want ErrCorrupt", err)
			}
		})
	}
	// The zero time survives as zero (a record may have no Updated).
	got, err := decodeSummary(summaryKey("z"), encodeSummary(RunSummary{ID: "z", Status: StatusDone}))
	if err != nil || !got.Created.IsZero() || !got.Updated.IsZero() {
		t.Errorf("zero times: %v %v, %v", got.Created, got.Updated, err)
	}
}

// Summaries follow every write of a record (create, update of status, name,
// tags and loss, delete), in the record's transaction; listing them gives
// what listing the records gives, progress included.
func TestSummariesFollowRecords(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	a := newRun(t, s, "a")
	b := newRun(t, s, "b")
	c := newRun(t, s, "c")
	loss := math.NaN()
	if err := s.UpdateRun(a.ID, func(m *RunMeta) error {
		m.Status, m.Steps, m.FinalLoss, m.Tags, m.Name = StatusDone, 10, &loss, []string{"x", "y"}, "a2"
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	if err := s.UpdateRun(b.ID, func(m *RunMeta) error { m.Tags = []string{"y"}; m.Reason = "because"; return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.SetProgress(b.ID, Progress{Step: 7, Loss: 2}); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRun(c.ID); err != nil {
		t.Fatal(err)
	}
	check := func(t *testing.T, s *Store) {
		t.Helper()
		runs, err := s.ListRuns()
		if err != nil {
			t.Fatal(err)
		}
		sums, err := s.ListSummaries()
		if err != nil {
			t.Fatal(err)
		}
		if len(sums) != 2 || len(runs) != 2 {
			t.Fatalf("%d summaries, %d runs; want 2", len(sums), len(runs))
		}
		for i := range runs {
			if !sameSummary(sums[i], runs[i].Summary()) {
				t.Errorf("summary %d: %+v, want %+v", i, sums[i], runs[i].Summary())
			}
		}
		if sums[1].Steps != 7 || sums[1].Progress == nil {
			t.Errorf("running run's summary: steps %d, progress %v; want its progress", sums[1].Steps, sums[1].Progress)
		}
		for _, c := range []struct {
			get  func(string) ([]RunSummary, error)
			key  string
			want []string
		}{
			{s.SummariesByTag, "y", []string{a.ID, b.ID}},
			{s.SummariesByTag, "x", []string{a.ID}},
			{s.SummariesByName, "a2", []string{a.ID}},
			{s.SummariesByName, "a", nil},
			{s.SummariesByName, "c", nil},
		} {
			got, err := c.get(c.key)
			var ids []string
			for _, r := range got {
				ids = append(ids, r.ID)
			}
			if err != nil || !slices.Equal(ids, c.want) {
				t.Errorf("by %q: %v, %v; want %v", c.key, ids, err, c.want)
			}
		}
		if p, err := s.Fsck(); err != nil || len(p) != 0 {
			t.Errorf("Fsck: %v %v", p, err)
		}
	}
	check(t, s)
	check(t, reopen(t, s, Options{ReadOnly: true}))
}

// Fsck checks the summary index against the records: missing, stale,
// orphaned and undecodable summaries are each reported, naming the key.
func TestFsckSummaries(t *testing.T) {
	tests := []struct {
		name   string
		break_ func(t *testing.T, s *Store, m RunMeta)
		key    string
		want   string
	}{
		{"missing", func(t *testing.T, s *Store, m RunMeta) { rawDelete(t, s, summaryKey(m.ID)) }, "rec/", "has no summary"},
		{"stale", func(t *testing.T, s *Store, m RunMeta) {
			m.Status = StatusFailed
			rawSet(t, s, summaryKey(m.ID), encodeSummary(m.Summary()))
		}, "sum/", "summary is stale"},
		{"orphan", func(t *testing.T, s *Store, m RunMeta) {
			rawSet(t, s, summaryKey("gone"), encodeSummary(RunSummary{ID: "gone", Status: StatusDone}))
		}, "sum/gone", "summary of a run that does not exist"},
		{"garbage", func(t *testing.T, s *Store, m RunMeta) { rawSet(t, s, summaryKey(m.ID), []byte{1, 200}) }, "sum/", "malformed summary"},
		{"not in creation order", func(t *testing.T, s *Store, m RunMeta) { rawDelete(t, s, idxCreatedKey(m.Created, m.ID)) }, "rec/", "missing from the creation-order index"},
		{"creation entry stale", func(t *testing.T, s *Store, m RunMeta) {
			rawDelete(t, s, idxCreatedKey(m.Created, m.ID))
			rawSet(t, s, idxCreatedKey(m.Created.Add(time.Second), m.ID), nil)
		}, "idx/created/", "index entry is stale"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			defer s.Close()
			m := newRun(t, s, "r")
			m, err := s.GetRun(m.ID)
			if err != nil {
				t.Fatal(err)
			}
			tt.break_(t, s, m)
			p, err := s.Fsck()
			if err != nil {
				t.Fatal(err)
			}
			if tt.name == "creation entry stale" && len(p) == 2 {
				p = p[:1] // the record is also reported missing from the index
			}
			if len(p) != 1 || !strings.HasPrefix(p[0].Key, tt.key) || !strings.Contains(p[0].Message, tt.want) {
				t.Errorf("Fsck = %v, want one problem at %s... saying %q", p, tt.key, tt.want)
			}
		})
	}
}

// A store in format 2, the layout the previous code wrote (format 3 less
// the sum/ and idx/created/ keys), opens, migrates once (writable or read-only) and passes
// Fsck, its summaries equal to its records'.
func TestMigrateFromV2(t *testing.T) {
	for _, ro := range []bool{false, true} {
		s := openTemp(t)
		dir := s.Dir()
		loss := math.Inf(1)
		var ids []string
		for i, name := range []string{"a", "b", "c"} {
			m := newRun(t, s, name)
			ids = append(ids, m.ID)
			if i < 2 {
				if err := s.UpdateRun(m.ID, func(m *RunMeta) error {
					m.Status, m.FinalLoss, m.Tags = StatusDone, &loss, []string{"t"}
					return nil
				}); err != nil {
					t.Fatal(err)
				}
			}
		}
		if err := s.SetProgress(ids[2], Progress{Step: 3}); err != nil {
			t.Fatal(err)
		}
		for _, prefix := range []string{prefixSum, prefixIdxCre} {
			for k := range rawDump(t, s, []byte(prefix)) {
				rawDelete(t, s, []byte(k))
			}
		}
		rawSet(t, s, []byte(keyVersion), []byte("2"))
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
		s, err := Open(dir, Options{ReadOnly: ro})
		if err != nil {
			t.Fatalf("read-only %v: %v", ro, err)
		}
		if v := rawGet(t, s, []byte(keyVersion)); string(v) != "3" {
			t.Errorf("read-only %v: store/version = %q, want 3", ro, v)
		}
		runs, err := s.ListRuns()
		if err != nil {
			t.Fatal(err)
		}
		sums, err := s.ListSummaries()
		if err != nil || len(sums) != 3 || len(runs) != 3 {
			t.Fatalf("read-only %v: %d summaries of %d runs, %v", ro, len(sums), len(runs), err)
		}
		for i := range runs {
			if !sameSummary(sums[i], runs[i].Summary()) {
				t.Errorf("read-only %v: summary %d: %+v, want %+v", ro, i, sums[i], runs[i].Summary())
			}
		}
		if p, err := s.Fsck(); err != nil || len(p) != 0 {
			t.Errorf("read-only %v: Fsck after migration: %v %v", ro, p, err)
		}
		if !ro {
			before := rawDump(t, s, nil)
			s = reopen(t, s, Options{})
			after := rawDump(t, s, nil)
			for k, v := range before {
				if w, ok := after[k]; !ok || string(w) != string(v) {
					t.Errorf("reopening changed %s: migrated twice?", k)
				}
			}
		}
		s.Close()
	}
}

// EachRun gives full records oldest first (ties by id, times before 1970
// and the zero time included), following creation-time changes and
// deletes, as ListRuns orders them.
func TestEachRunOrder(t *testing.T) {
	s := openTemp(t)
	defer s.Close()
	base := time.Date(2026, 12, 5, 6, 0, 0, 0, time.UTC)
	for _, r := range []struct {
		id      string
		created time.Time
	}{
		{"e", base.Add(time.Nanosecond)},
		{"d", base},
		{"c", base},
		{"old", time.Date(1960, 1, 1, 0, 0, 0, 5, time.UTC)},
		{"moved", base.Add(-time.Hour)},
		{"gone", base.Add(time.Hour)},
	} {
		if err := s.CreateRun(RunMeta{ID: r.id, Created: r.created, Config: []byte(`{"x":1}`)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateRun("moved", func(m *RunMeta) error { m.Created = base.Add(2 * time.Hour); return nil }); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteRun("gone"); err != nil {
		t.Fatal(err)
	}
	var got []string
	if err := s.EachRun(func(m RunMeta) error {
		if string(m.Config) != `{"x":1}` {
			t.Errorf("run %s: config %s, want the full record", m.ID, m.Config)
		}
		got = append(got, m.ID)
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var listed []string
	runs, err := s.ListRuns()
	if err != nil {
		t.Fatal(err)
	}
	for _, m := range runs {
		listed = append(listed, m.ID)
	}
	want := []string{"old", "c", "d", "e", "moved"}
	if !slices.Equal(got, want) || !slices.Equal(listed, want) {
		t.Errorf("EachRun %v, ListRuns %v; want %v", got, listed, want)
	}
	// An entry whose run is gone (a delete of a corrupt record leaves
	// one) is skipped, not an error.
	rawSet(t, s, idxCreatedKey(base, "ghost"), nil)
	n := 0
	if err := s.EachRun(func(RunMeta) error { n++; return nil }); err != nil || n != len(want) {
		t.Errorf("EachRun with an orphaned entry: %d runs, %v; want %d", n, err, len(want))
	}
	rawDelete(t, s, idxCreatedKey(base, "ghost"))
	stop := errors.New("stop")
	n = 0
	if err := s.EachRun(func(RunMeta) error { n++; return stop }); !errors.Is(err, stop) || n != 1 {
		t.Errorf("EachRun stopped by fn: %v after %d runs", err, n)
	}
	if p, err := s.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck: %v %v", p, err)
	}
	// The zero time sorts first and round-trips through the key.
	if k := idxCreatedKey(time.Time{}, "z"); !createdOf(k[len(prefixIdxCre):]).IsZero() {
		t.Errorf("zero time from its key: %v", createdOf(k[len(prefixIdxCre):]))
	}
}
