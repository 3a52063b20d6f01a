package kv

import (
	"bufio"
	"errors"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
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
	// A reader that only lists runs gets the records, summaries and
	// indexes, none of the run's data.
	s, err := Open(dir, Options{ReadOnly: true, RunsOnly: true})
	if err != nil {
		t.Fatal(err)
	}
	if sums, err := s.ListSummaries(); err != nil || len(sums) != 1 || sums[0].ID != h.runID {
		t.Fatalf("runs-only snapshot: summaries %+v, %v", sums, err)
	}
	if m, err := s.GetRun(h.runID); err != nil || m.Name != "crashy" {
		t.Fatalf("runs-only snapshot: GetRun %+v, %v", m, err)
	}
	if byName, err := s.SummariesByName("crashy"); err != nil || len(byName) != 1 {
		t.Fatalf("runs-only snapshot: by name %+v, %v", byName, err)
	}
	if pts, _ := s.ReadMetric(h.runID, "loss"); len(pts) != 0 {
		t.Fatalf("runs-only snapshot holds %d metric points, want none", len(pts))
	}
	if _, _, err := s.LoadCheckpoint(h.runID, 9); !errors.Is(err, ErrNotFound) {
		t.Fatalf("runs-only snapshot: checkpoint read %v, want ErrNotFound", err)
	}
	s.Close()
	// A reader that sends no request line (an older lens) still gets
	// everything, after the writer's wait.
	c, err := net.Dial("unix", filepath.Join(dir, socketFile))
	if err != nil {
		t.Fatal(err)
	}
	keys := map[keyKind]int{}
	r := bufio.NewReader(c)
	if hdr, err := r.ReadString('\n'); err != nil || hdr != snapshotHdr {
		t.Fatalf("header %q, %v", hdr, err)
	}
	db, err := badger.Open(badger.DefaultOptions("").WithInMemory(true).WithLogger(nil))
	if err != nil {
		t.Fatal(err)
	}
	if err := db.Load(r, 16); err != nil {
		t.Fatal(err)
	}
	c.Close()
	db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, nil, func(k []byte) error { keys[parseKey(k).kind]++; return nil })
	})
	db.Close()
	if keys[kindMetric] == 0 || keys[kindCkptTensor] == 0 || keys[kindRec] != 1 {
		t.Fatalf("a snapshot without a request: keys by kind %v, want metrics, a checkpoint and the record", keys)
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
	s, err = Open(dir, Options{ReadOnly: true})
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
