package kv

import (
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// dirState is every file under dir with its mode, size, modification time
// and content hash: what a read-only open must leave alone.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	out := map[string]string{}
	err := filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		fi, err := d.Info()
		if err != nil {
			return err
		}
		desc := fmt.Sprintf("%v %d %d", fi.Mode(), fi.Size(), fi.ModTime().UnixNano())
		if fi.Mode().IsRegular() {
			b, err := os.ReadFile(p)
			if err != nil {
				return err
			}
			sum := sha256.Sum256(b)
			desc += " " + hex.EncodeToString(sum[:])
		}
		out[p] = desc
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	return out
}

func diffState(a, b map[string]string) []string {
	var d []string
	for k, v := range a {
		if w, ok := b[k]; !ok {
			d = append(d, "removed "+k)
		} else if w != v {
			d = append(d, "changed "+k)
		}
	}
	for k := range b {
		if _, ok := a[k]; !ok {
			d = append(d, "created "+k)
		}
	}
	sort.Strings(d)
	return d
}

// onDemandStore returns a closed store holding two runs with metrics, one
// of them left "running" by a dead process.
func onDemandStore(t *testing.T) (dir string, done, dead RunMeta) {
	t.Helper()
	s := openTemp(t)
	done = newRun(t, s, "done")
	for step := range 300 {
		if err := s.AddMetrics(done.ID, step, map[string]float64{"loss": 1 / float64(step+1)}); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.UpdateRun(done.ID, func(m *RunMeta) error { m.Status = StatusDone; m.Steps = 300; return nil }); err != nil {
		t.Fatal(err)
	}
	dead = RunMeta{ID: s.NewRunID(), Name: "dead", Owner: deadPID(t)}
	if err := s.CreateRun(dead); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	return s.Dir(), done, dead
}

// countingLogger counts the store's "opened for writing" notes.
func countingLogger(n *atomic.Int32) *slog.Logger {
	return slog.New(countHandler{n})
}

type countHandler struct{ n *atomic.Int32 }

func (h countHandler) Enabled(context.Context, slog.Level) bool { return true }
func (h countHandler) Handle(_ context.Context, r slog.Record) error {
	if strings.Contains(r.Message, "opened for writing at its first write") {
		h.n.Add(1)
	}
	return nil
}
func (h countHandler) WithAttrs([]slog.Attr) slog.Handler { return h }
func (h countHandler) WithGroup(string) slog.Handler      { return h }

func TestWriteOnDemandReadsWriteNothing(t *testing.T) {
	dir, done, dead := onDemandStore(t)
	before := dirState(t, dir)
	s, err := Open(dir, Options{WriteOnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	if !s.ReadOnly() {
		t.Error("ReadOnly() = false before any write")
	}
	sums, err := s.ListSummaries()
	if err != nil || len(sums) != 2 {
		t.Fatalf("ListSummaries: %d runs, %v", len(sums), err)
	}
	m, err := s.FindRun("dead")
	if err != nil || m.ID != dead.ID || m.Status != StatusRunning {
		// A read-only open marks nothing interrupted: that is a write.
		t.Errorf("FindRun(dead) = %s %s, %v; want %s still running", m.ID, m.Status, err, dead.ID)
	}
	pts, err := s.ReadMetric(done.ID, "loss")
	if err != nil || len(pts) != 300 || pts[299].Value != 1.0/300 {
		t.Errorf("ReadMetric: %d points, %v", len(pts), err)
	}
	if err := s.EachRun(func(RunMeta) error { return nil }); err != nil {
		t.Error(err)
	}
	if err := s.Sync(); err != nil {
		t.Errorf("Sync of an unwritten store: %v", err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if d := diffState(before, dirState(t, dir)); len(d) > 0 {
		t.Errorf("reads through a WriteOnDemand store changed the store directory:\n%s", strings.Join(d, "\n"))
	}
}

func TestWriteOnDemandFirstWriteUpgrades(t *testing.T) {
	dir, done, dead := onDemandStore(t)
	var notes atomic.Int32
	s, err := Open(dir, Options{WriteOnDemand: true, Logger: countingLogger(&notes), Command: "lens run x.star"})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if _, err := s.ListSummaries(); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(filepath.Join(dir, holderFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Fatalf("holder.json before the first write: %v", err)
	}
	// The first write: an event on a finished run.
	if err := s.AddEvent(done.ID, Event{Kind: "note", Message: "looked at"}); err != nil {
		t.Fatalf("first write: %v", err)
	}
	if s.ReadOnly() || notes.Load() != 1 {
		t.Fatalf("after the first write: ReadOnly %v, %d upgrades", s.ReadOnly(), notes.Load())
	}
	// Everything a writable open does has run: holder, interrupted runs.
	if b, err := os.ReadFile(filepath.Join(dir, holderFile)); err != nil || !strings.Contains(string(b), "lens run x.star") {
		t.Errorf("holder.json: %q, %v", b, err)
	}
	if got := s.Interrupted(); len(got) != 1 || got[0].ID != dead.ID {
		t.Errorf("Interrupted() = %v, want the dead run", got)
	}
	if m, err := s.GetRun(dead.ID); err != nil || m.Status != StatusInterrupted {
		t.Errorf("dead run after the upgrade: %s, %v", m.Status, err)
	}
	r := newRun(t, s, "new")
	if err := s.AddMetric(r.ID, "loss", 0, 2.5); err != nil {
		t.Fatal(err)
	}
	if notes.Load() != 1 {
		t.Errorf("%d upgrades, want 1", notes.Load())
	}
	s = reopen(t, s, Options{ReadOnly: true})
	if pts, err := s.ReadMetric(r.ID, "loss"); err != nil || len(pts) != 1 || pts[0].Value != 2.5 {
		t.Errorf("after reopening: %v, %v", pts, err)
	}
	if ev, err := s.Events(done.ID); err != nil || len(ev) != 1 || ev[0].Message != "looked at" {
		t.Errorf("events after reopening: %v, %v", ev, err)
	}
}

func TestWriteOnDemandNewStore(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".lens")
	s, err := Open(dir, Options{WriteOnDemand: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.ReadOnly() {
		t.Error("a new store opened WriteOnDemand is read-only; only a write can follow")
	}
	newRun(t, s, "first")
}

// Another process holding the store makes the first write fail, naming
// it, and leaves the store readable; once it is gone the write succeeds.
func TestWriteOnDemandLocked(t *testing.T) {
	for _, mode := range []string{"hold", "read"} {
		t.Run(mode, func(t *testing.T) {
			dir, done, _ := onDemandStore(t)
			var s *Store
			var h *helper
			if mode == "hold" {
				// A writer first: we read its snapshot.
				h = startHelper(t, mode, dir)
				var err error
				if s, err = Open(dir, Options{WriteOnDemand: true}); err != nil {
					t.Fatal(err)
				}
				if !s.Snapshot() {
					t.Fatal("not a snapshot while a writer holds the store")
				}
			} else {
				// We read first; another reader holds a shared lock too.
				var err error
				if s, err = Open(dir, Options{WriteOnDemand: true}); err != nil {
					t.Fatal(err)
				}
				h = startHelper(t, mode, dir)
			}
			defer s.Close()
			start := time.Now()
			err := s.AddEvent(done.ID, Event{Kind: "note", Message: "x"})
			var le *LockedError
			if !errors.As(err, &le) {
				t.Fatalf("first write while another process holds the store: %v, want a *LockedError", err)
			}
			if mode == "hold" && le.PID != h.cmd.Process.Pid {
				t.Errorf("error names pid %d, want the writer %d: %v", le.PID, h.cmd.Process.Pid, err)
			}
			if !strings.Contains(err.Error(), "cannot open it for writing") {
				t.Errorf("error %q does not say what failed", err)
			}
			if d := time.Since(start); d < upgradeWait/2 {
				t.Errorf("gave up after %v without retrying", d)
			}
			if _, err := s.GetRun(done.ID); err != nil {
				t.Errorf("read after the failed upgrade: %v", err)
			}
			h.stdin.Close()
			if err := h.cmd.Wait(); err != nil {
				t.Fatalf("helper: %v", err)
			}
			if err := s.AddEvent(done.ID, Event{Kind: "note", Message: "y"}); err != nil {
				t.Fatalf("write once the other process has gone: %v", err)
			}
			if ev, err := s.Events(done.ID); err != nil || len(ev) != 1 {
				t.Errorf("events: %v, %v", ev, err)
			}
		})
	}
}

// Goroutines writing at once upgrade the store once, while others read.
func TestWriteOnDemandConcurrent(t *testing.T) {
	dir, done, _ := onDemandStore(t)
	var notes atomic.Int32
	s, err := Open(dir, Options{WriteOnDemand: true, Logger: countingLogger(&notes)})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	const writers = 8
	var wg sync.WaitGroup
	errs := make(chan error, 4*writers)
	stop := make(chan struct{})
	for range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-stop:
					return
				default:
				}
				if _, err := s.ListSummaries(); err != nil {
					errs <- err
					return
				}
				if _, err := s.ReadMetric(done.ID, "loss"); err != nil {
					errs <- err
					return
				}
			}
		}()
	}
	var ww sync.WaitGroup
	ids := make([]string, writers)
	for i := range writers {
		ww.Add(1)
		go func() {
			defer ww.Done()
			m := RunMeta{ID: s.NewRunID(), Name: fmt.Sprintf("w%d", i)}
			ids[i] = m.ID
			if err := s.CreateRun(m); err != nil {
				errs <- err
				return
			}
			if err := s.AddMetric(m.ID, "loss", 0, float64(i)); err != nil {
				errs <- err
			}
		}()
	}
	ww.Wait()
	close(stop)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if n := notes.Load(); n != 1 {
		t.Errorf("%d upgrades, want 1", n)
	}
	s = reopen(t, s, Options{ReadOnly: true})
	for i, id := range ids {
		if pts, err := s.ReadMetric(id, "loss"); err != nil || len(pts) != 1 || pts[0].Value != float64(i) {
			t.Errorf("run %d: %v, %v", i, pts, err)
		}
	}
}
