package kv

import (
	"errors"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
)

// While another process writes the store, a read-only Open gets a snapshot
// of it (including metrics the writer has not flushed yet), writes to the
// snapshot are refused naming the writer, a second writer is refused, and
// the socket goes away with the writer.
func TestReadersWhileWriterHolds(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".lens")
	h := startHelper(t, "crash", dir) // creates a run, 10 metric points, a checkpoint
	pid := h.cmd.Process.Pid

	for i := range 2 { // twice: every reader gets its own snapshot
		s, err := Open(dir, Options{ReadOnly: true})
		if err != nil {
			t.Fatalf("read-only open %d while a writer holds the store: %v", i, err)
		}
		if !s.Snapshot() || !s.ReadOnly() {
			t.Fatalf("Snapshot() = %v, ReadOnly() = %v", s.Snapshot(), s.ReadOnly())
		}
		m, err := s.GetRun(h.runID)
		if err != nil || m.Name != "crashy" {
			t.Fatalf("GetRun in the snapshot: %+v, %v", m, err)
		}
		pts, err := s.ReadMetric(h.runID, "loss")
		if err != nil || len(pts) != 10 {
			t.Fatalf("metrics in the snapshot: %d points, %v (want 10: pending ones are flushed first)", len(pts), err)
		}
		cm, ts, err := s.LoadCheckpoint(h.runID, 9)
		if err != nil || cm.Step != 9 || !sameTensors(ts, []Tensor{testTensor("w", 3, 4)}) {
			t.Fatalf("checkpoint in the snapshot: %+v %v", cm, err)
		}
		err = s.AddEvent(h.runID, Event{Kind: "x"})
		if !errors.Is(err, ErrReadOnly) || !strings.Contains(err.Error(), "pid "+strconv.Itoa(pid)) {
			t.Fatalf("write to a snapshot: %v, want ErrReadOnly naming pid %d", err, pid)
		}
		if err := s.Close(); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := Open(dir, Options{}); !errors.As(err, new(*LockedError)) {
		t.Fatalf("second writer: %v, want a LockedError", err)
	}
	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, socketFile)); !os.IsNotExist(err) {
		t.Fatalf("reader socket left behind: %v", err)
	}
	// After the writer is gone, a read-only open reads the files themselves.
	s, err := Open(dir, Options{ReadOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close()
	if s.Snapshot() {
		t.Fatal("a store nobody holds was opened as a snapshot")
	}
	if pts, err := s.ReadMetric(h.runID, "loss"); err != nil || len(pts) != 10 {
		t.Fatalf("after the writer closed: %d points, %v", len(pts), err)
	}
}
