package kv

import (
	"bytes"
	"errors"
	"path/filepath"
	"strings"
	"testing"
)

func TestImportRun(t *testing.T) {
	shard := openTemp(t)
	m := RunMeta{ID: shard.NewRunID(), Name: "trial-3", Tags: []string{"sweep"}, Status: StatusDone}
	if err := shard.CreateRun(m); err != nil {
		t.Fatal(err)
	}
	for step := range 50 {
		shard.AddMetric(m.ID, "loss", step, float64(step))
	}
	if err := shard.SaveCheckpoint(m.ID, CheckpointMeta{Step: 49}, []Tensor{testTensor("w", 5, 5)}); err != nil {
		t.Fatal(err)
	}
	shard.AddEvent(m.ID, Event{Kind: "info", Message: "done"})
	shard = reopen(t, shard, Options{ReadOnly: true})

	ws, err := Open(filepath.Join(t.TempDir(), "ws"), Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if err := ws.ImportRun(shard, m.ID); err != nil {
		t.Fatal(err)
	}
	got, err := ws.FindRun("trial-3")
	if err != nil || got.ID != m.ID || got.Status != StatusDone {
		t.Errorf("FindRun after import = %+v, %v", got, err)
	}
	if pts, _ := ws.ReadMetric(m.ID, "loss"); len(pts) != 50 {
		t.Errorf("%d points imported", len(pts))
	}
	if _, ts, err := ws.LoadCheckpoint(m.ID, 49); err != nil || !sameTensors(ts, []Tensor{testTensor("w", 5, 5)}) {
		t.Errorf("checkpoint: %v", err)
	}
	if runs, _ := ws.RunsByTag("sweep"); len(runs) != 1 {
		t.Errorf("tag index: %v", runs)
	}
	if err := ws.ImportRun(shard, m.ID); !errors.Is(err, ErrExists) {
		t.Errorf("second import: %v", err)
	}
	if err := ws.ImportRun(shard, "nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("unknown run: %v", err)
	}
	if p, err := ws.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck: %v %v", p, err)
	}
}

// shardWithRun makes a store holding one finished run with metrics, two
// checkpoints and an event, the way a trial process leaves its shard.
func shardWithRun(t *testing.T, name string) (*Store, RunMeta) {
	t.Helper()
	shard := openTemp(t)
	m := RunMeta{ID: shard.NewRunID(), Name: name, Tags: []string{"sweep"}, Status: StatusRunning}
	if err := shard.CreateRun(m); err != nil {
		t.Fatal(err)
	}
	for step := 1; step <= 20; step++ {
		shard.AddMetric(m.ID, "loss", step, 5-float64(step)/10)
	}
	for _, step := range []int{10, 20} {
		if err := shard.SaveCheckpoint(m.ID, CheckpointMeta{Step: step}, []Tensor{testTensor("a", 4, 3), testTensor("b", 3, 4)}); err != nil {
			t.Fatal(err)
		}
	}
	shard.AddEvent(m.ID, Event{Kind: "info", Message: "hello"})
	if err := shard.UpdateRun(m.ID, func(r *RunMeta) error { r.Status, r.Steps = StatusDone, 20; return nil }); err != nil {
		t.Fatal(err)
	}
	got, err := shard.GetRun(m.ID)
	if err != nil {
		t.Fatal(err)
	}
	return shard, got
}

func TestMergeRunIsIdempotentAndReplacesOlderCopies(t *testing.T) {
	shard, m := shardWithRun(t, "sw/r=4")
	ws := openTemp(t)
	steps := []struct {
		name string
		edit func()
		want MergeOutcome
	}{
		{"first merge adds", nil, MergeAdded},
		{"same shard again changes nothing", nil, MergeUnchanged},
		{"a later copy replaces", func() {
			shard.AddMetric(m.ID, "loss", 21, 3)
			if err := shard.UpdateRun(m.ID, func(r *RunMeta) error { r.Steps = 21; return nil }); err != nil {
				t.Fatal(err)
			}
		}, MergeReplaced},
		{"and is then unchanged", nil, MergeUnchanged},
	}
	for _, s := range steps {
		if s.edit != nil {
			s.edit()
		}
		before := rawDump(t, ws, nil)
		got, err := ws.MergeRun(shard, m.ID)
		if err != nil || got != s.want {
			t.Fatalf("%s: MergeRun = %v, %v; want %v", s.name, got, err, s.want)
		}
		if s.want == MergeUnchanged && len(rawDump(t, ws, nil)) != len(before) {
			t.Errorf("%s: keys changed", s.name)
		}
	}
	if pts, _ := ws.ReadMetric(m.ID, "loss"); len(pts) != 21 {
		t.Errorf("%d loss points after the replacing merge, want 21", len(pts))
	}
	if runs, _ := ws.ListRuns(); len(runs) != 1 {
		t.Errorf("%d runs, want exactly one copy", len(runs))
	}
	if runs, _ := ws.RunsByTag("sweep"); len(runs) != 1 {
		t.Errorf("tag index lists %d runs", len(runs))
	}
	if p, err := ws.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck: %v %v", p, err)
	}

	// A copy older than the store's is not merged over it.
	old := openTemp(t)
	if err := old.ImportRun(ws, m.ID); err != nil {
		t.Fatal(err)
	}
	if err := ws.UpdateRun(m.ID, func(r *RunMeta) error { r.Status = StatusStopped; return nil }); err != nil {
		t.Fatal(err)
	}
	if got, err := ws.MergeRun(old, m.ID); err != nil || got != MergeKeptNewer {
		t.Errorf("older copy: %v, %v", got, err)
	}
	if r, _ := ws.GetRun(m.ID); r.Status != StatusStopped {
		t.Errorf("status %q after merging an older copy", r.Status)
	}
}

func TestMergeRunRefusesCorruptCopies(t *testing.T) {
	cases := []struct {
		name   string
		damage func(t *testing.T, s *Store, id string)
		want   string
	}{
		{"tensor checksum", func(t *testing.T, s *Store, id string) {
			b := rawGet(t, s, ckptTensorKey(id, 20, "a"))
			b[len(b)-1] ^= 0xff
			rawSet(t, s, ckptTensorKey(id, 20, "a"), b)
		}, "checksum"},
		{"metric value", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, metricKey(id, "loss", 3), []byte{1, 2, 3})
		}, "loss"},
		{"checkpoint lists a missing tensor", func(t *testing.T, s *Store, id string) {
			rawDelete(t, s, ckptTensorKey(id, 10, "b"))
		}, "listed in the meta but missing"},
		{"record", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, runMetaKey(id), []byte("{not json"))
		}, "rec/"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			shard, m := shardWithRun(t, "bad")
			ws := openTemp(t)
			// The store already has a good copy: a bad one must not touch it.
			if _, err := ws.MergeRun(shard, m.ID); err != nil {
				t.Fatal(err)
			}
			shard.AddMetric(m.ID, "loss", 30, 1)
			if err := shard.UpdateRun(m.ID, func(r *RunMeta) error { r.Steps = 30; return nil }); err != nil {
				t.Fatal(err)
			}
			before := rawDump(t, ws, nil)
			c.damage(t, shard, m.ID)
			_, err := ws.MergeRun(shard, m.ID)
			if !errors.Is(err, ErrCorrupt) || !strings.Contains(err.Error(), c.want) {
				t.Fatalf("MergeRun of a damaged copy: %v; want ErrCorrupt mentioning %q", err, c.want)
			}
			after := rawDump(t, ws, nil)
			if len(after) != len(before) {
				t.Errorf("store changed: %d keys before, %d after", len(before), len(after))
			}
			for k, v := range before {
				if !bytes.Equal(after[k], v) {
					t.Errorf("key %s changed", k)
				}
			}
			fresh := openTemp(t)
			if _, err := fresh.MergeRun(shard, m.ID); !errors.Is(err, ErrCorrupt) {
				t.Errorf("into an empty store: %v", err)
			}
			if runs, _ := fresh.ListRuns(); len(runs) != 0 || len(rawDump(t, fresh, runPrefix(m.ID))) != 0 {
				t.Errorf("a corrupt run was half merged into an empty store")
			}
		})
	}
}

func TestMergeRunLeavesOutIncompleteCheckpoints(t *testing.T) {
	shard, m := shardWithRun(t, "killed")
	// A kill in the middle of saving step 30: tensors written, meta not.
	rawSet(t, shard, ckptTensorKey(m.ID, 30, "a"), rawGet(t, shard, ckptTensorKey(m.ID, 20, "a")))
	ws := openTemp(t)
	if got, err := ws.MergeRun(shard, m.ID); err != nil || got != MergeAdded {
		t.Fatalf("MergeRun = %v, %v", got, err)
	}
	if p, err := ws.Fsck(); err != nil || len(p) != 0 {
		t.Errorf("Fsck after merging: %v %v", p, err)
	}
	if got, err := ws.MergeRun(shard, m.ID); err != nil || got != MergeUnchanged {
		t.Errorf("second merge = %v, %v", got, err)
	}
}
