package kv

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"io/fs"
	"log/slog"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

const (
	helperEnv     = "LENS_KV_HELPER"     // mode of the helper process
	helperDirEnv  = "LENS_KV_HELPER_DIR" // store it opens
	helperCommand = "lens run quickstart.star"
)

// TestHelperProcess is not a test: it is the child process of the
// cross-process tests, started by startHelper. It opens the store, prints
// "ready <run id>", and then
//   - mode "hold": waits for stdin to close, closes the store and exits;
//   - mode "read": the same with the store opened read-only;
//   - mode "crash": has written a running run with a checkpoint and
//     metrics, and waits to be killed.
func TestHelperProcess(t *testing.T) {
	mode := os.Getenv(helperEnv)
	if mode == "" {
		t.Skip("helper process for the cross-process tests")
	}
	fail := func(err error) {
		fmt.Fprintln(os.Stderr, "helper:", err)
		os.Exit(2)
	}
	s, err := Open(os.Getenv(helperDirEnv), Options{Command: helperCommand, ReadOnly: mode == "read"})
	if err != nil {
		fail(err)
	}
	runID := "-"
	if mode == "crash" {
		m := RunMeta{ID: s.NewRunID(), Name: "crashy"}
		if err := s.CreateRun(m); err != nil {
			fail(err)
		}
		for step := range 10 {
			if err := s.AddMetric(m.ID, "loss", step, 1/float64(step+1)); err != nil {
				fail(err)
			}
		}
		if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 9}, []Tensor{testTensor("w", 3, 4)}); err != nil {
			fail(err)
		}
		runID = m.ID
	}
	fmt.Printf("ready %s\n", runID)
	io.Copy(io.Discard, os.Stdin) // until the parent closes stdin (or kills us)
	if err := s.Close(); err != nil {
		fail(err)
	}
	os.Exit(0)
}

type helper struct {
	cmd   *exec.Cmd
	stdin io.WriteCloser
	runID string
}

// startHelper runs TestHelperProcess in a child process on dir and waits
// until it has the store open.
func startHelper(t *testing.T, mode, dir string) *helper {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^TestHelperProcess$", "-test.v=false")
	cmd.Env = append(os.Environ(), helperEnv+"="+mode, helperDirEnv+"="+dir)
	cmd.Stderr = os.Stderr
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	h := &helper{cmd: cmd, stdin: stdin}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
	})
	line, err := bufio.NewReader(stdout).ReadString('\n')
	if err != nil {
		t.Fatalf("helper did not get ready: %v", err)
	}
	f := strings.Fields(line)
	if len(f) != 2 || f[0] != "ready" {
		t.Fatalf("helper said %q", line)
	}
	h.runID = f[1]
	return h
}

func TestOpenLockedByAnotherProcess(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".lens")
	h := startHelper(t, "hold", dir)
	pid := h.cmd.Process.Pid

	// A second writer is refused (readers get a snapshot: TestReadersWhileWriterHolds).
	for _, ro := range []bool{false} {
		t.Run(fmt.Sprintf("readonly=%v", ro), func(t *testing.T) {
			s, err := Open(dir, Options{ReadOnly: ro})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded while another process holds the store")
			}
			var le *LockedError
			if !errors.As(err, &le) {
				t.Fatalf("error %v (%T) is not a *LockedError", err, err)
			}
			if le.PID != pid || le.Command != helperCommand || le.Dir != dir {
				t.Errorf("LockedError = %+v, want pid %d command %q dir %q", *le, pid, helperCommand, dir)
			}
			want := fmt.Sprintf("store %s is in use by pid %d (%s)", dir, pid, helperCommand)
			if err.Error() != want {
				t.Errorf("message %q, want %q", err.Error(), want)
			}
		})
	}

	h.stdin.Close()
	if err := h.cmd.Wait(); err != nil {
		t.Fatalf("helper: %v", err)
	}
	if _, err := os.Stat(filepath.Join(dir, holderFile)); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("holder.json still there after the holder closed: %v", err)
	}
	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after the holder exited: %v", err)
	}
	s.Close()
}

// A writer killed with SIGKILL leaves its run "running", its checkpoint
// intact, and a stale holder.json; the next Open copes with all three.
func TestOpenAfterWriterKilled(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".lens")
	h := startHelper(t, "crash", dir)
	pid := h.cmd.Process.Pid
	if err := h.cmd.Process.Signal(syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	h.cmd.Wait()

	s, err := Open(dir, Options{})
	if err != nil {
		t.Fatalf("Open after kill -9: %v", err)
	}
	defer s.Close()
	m, err := s.GetRun(h.runID)
	if err != nil {
		t.Fatal(err)
	}
	if m.Status != StatusInterrupted || !strings.Contains(m.Reason, strconv.Itoa(pid)) {
		t.Errorf("run status %q reason %q, want interrupted naming pid %d", m.Status, m.Reason, pid)
	}
	if got := s.Interrupted(); len(got) != 1 || got[0].ID != h.runID {
		t.Errorf("Interrupted() = %v", got)
	}
	_, tensors, err := s.LoadCheckpoint(h.runID, 9)
	if err != nil {
		t.Fatalf("checkpoint lost: %v", err)
	}
	if !sameTensors(tensors, []Tensor{testTensor("w", 3, 4)}) {
		t.Errorf("checkpoint tensors differ: %+v", tensors)
	}
	pts, err := s.ReadMetric(h.runID, "loss")
	if err != nil || len(pts) != 10 {
		t.Errorf("metrics flushed before the checkpoint: got %d points, %v", len(pts), err)
	}
}

func TestOpenInterruptsDeadRuns(t *testing.T) {
	s := openTemp(t)
	dead := deadPID(t)
	runs := []RunMeta{
		{ID: "a-dead-running", Status: StatusRunning, Owner: dead},
		{ID: "b-mine-running", Status: StatusRunning},
		{ID: "c-dead-done", Status: StatusDone, Owner: dead},
	}
	for _, m := range runs {
		if err := s.CreateRun(m); err != nil {
			t.Fatal(err)
		}
	}
	var logs bytes.Buffer
	s = reopen(t, s, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if !strings.Contains(logs.String(), "run marked interrupted") || !strings.Contains(logs.String(), "a-dead-running") {
		t.Errorf("log = %q", logs.String())
	}
	want := map[string]string{
		"a-dead-running": StatusInterrupted,
		"b-mine-running": StatusRunning,
		"c-dead-done":    StatusDone,
	}
	for id, status := range want {
		m, err := s.GetRun(id)
		if err != nil {
			t.Fatal(err)
		}
		if m.Status != status {
			t.Errorf("run %s: status %q, want %q", id, m.Status, status)
		}
		if status == StatusInterrupted && !strings.Contains(m.Reason, strconv.Itoa(dead)) {
			t.Errorf("run %s: reason %q does not name pid %d", id, m.Reason, dead)
		}
	}
	if got := s.Interrupted(); len(got) != 1 || got[0].ID != "a-dead-running" {
		t.Errorf("Interrupted() = %+v", got)
	}
	// A read-only open changes nothing.
	s = reopen(t, s, Options{ReadOnly: true})
	if len(s.Interrupted()) != 0 {
		t.Error("read-only open marked runs")
	}
}

func TestOpenBadDirectory(t *testing.T) {
	base := t.TempDir()
	file := filepath.Join(base, "file")
	if err := os.WriteFile(file, []byte("x"), 0o600); err != nil {
		t.Fatal(err)
	}
	readOnlyDir := filepath.Join(base, "ro")
	if err := os.Mkdir(readOnlyDir, 0o500); err != nil {
		t.Fatal(err)
	}
	tests := []struct {
		name     string
		dir      string
		readOnly bool
		want     string
		skip     string
	}{
		{name: "under a regular file", dir: filepath.Join(file, ".lens"), want: "cannot create the directory"},
		{name: "is a regular file", dir: file, want: "not a directory"},
		{name: "read-only open of nothing", dir: filepath.Join(base, "none"), readOnly: true, want: "no store there"},
		{name: "directory without write permission", dir: readOnlyDir, want: "not writable",
			skip: map[bool]string{true: "running as root, which ignores permission bits; the regular-file cases cover the error path"}[isRoot()]},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			if tt.skip != "" {
				t.Skip(tt.skip)
			}
			s, err := Open(tt.dir, Options{ReadOnly: tt.readOnly})
			if err == nil {
				s.Close()
				t.Fatal("Open succeeded")
			}
			if !strings.Contains(err.Error(), tt.dir) || !strings.Contains(err.Error(), tt.want) {
				t.Errorf("error %q should name %s and say %q", err, tt.dir, tt.want)
			}
		})
	}
}

func TestOpenVersion(t *testing.T) {
	tests := []struct {
		name    string
		version string // "" leaves store/version out
		want    string
	}{
		{name: "newer", version: "4", want: "format version 4 but this lens reads version 3: it was written by a newer lens"},
		{name: "no version", want: "no format version"},
		{name: "garbage", version: "x", want: "not a positive integer"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".lens")
			db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil))
			if err != nil {
				t.Fatal(err)
			}
			err = db.Update(func(txn *badger.Txn) error {
				if tt.version != "" {
					return txn.Set([]byte(keyVersion), []byte(tt.version))
				}
				return txn.Set([]byte("something/else"), []byte("x"))
			})
			db.Close()
			if err != nil {
				t.Fatal(err)
			}
			for _, ro := range []bool{false, true} {
				s, err := Open(dir, Options{ReadOnly: ro})
				if err == nil {
					s.Close()
					t.Fatalf("readonly=%v: Open succeeded", ro)
				}
				if !strings.Contains(err.Error(), tt.want) || !strings.Contains(err.Error(), dir) {
					t.Errorf("readonly=%v: error %q should name %s and say %q", ro, err, dir, tt.want)
				}
			}
		})
	}
	// The version a new store gets is the current one.
	s := openTemp(t)
	if v := rawGet(t, s, []byte(keyVersion)); string(v) != strconv.Itoa(FormatVersion) {
		t.Errorf("store/version = %q", v)
	}
}

func TestReadOnly(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "r")
	if err := s.AddMetric(m.ID, "loss", 1, 0.5); err != nil {
		t.Fatal(err)
	}
	s = reopen(t, s, Options{ReadOnly: true})
	if !s.ReadOnly() {
		t.Error("ReadOnly() = false")
	}
	if pts, err := s.ReadMetric(m.ID, "loss"); err != nil || len(pts) != 1 {
		t.Errorf("ReadMetric = %v, %v", pts, err)
	}
	writes := map[string]error{
		"CreateRun":      s.CreateRun(RunMeta{ID: "x"}),
		"UpdateRun":      s.UpdateRun(m.ID, func(*RunMeta) error { return nil }),
		"AddMetric":      s.AddMetric(m.ID, "loss", 2, 1),
		"SaveCheckpoint": s.SaveCheckpoint(m.ID, CheckpointMeta{}, nil),
		"AddEvent":       s.AddEvent(m.ID, Event{}),
		"DeleteRun":      s.DeleteRun(m.ID),
		"PutBlob":        s.PutBlob("ns", "k", nil, nil),
	}
	for name, err := range writes {
		if !errors.Is(err, ErrReadOnly) {
			t.Errorf("%s on a read-only store: %v, want ErrReadOnly", name, err)
		}
	}
	// Two readers at once are fine.
	s2, err := Open(s.Dir(), Options{ReadOnly: true})
	if err != nil {
		t.Fatalf("second reader: %v", err)
	}
	s2.Close()
}

func TestFilePermissions(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "p")
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 1}, []Tensor{testTensor("w", 200, 200)}); err != nil {
		t.Fatal(err)
	}
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	fi, err := os.Stat(s.Dir())
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o700 {
		t.Errorf("store dir mode %v, want 0700", fi.Mode().Perm())
	}
	entries, _ := os.ReadDir(s.Dir())
	for _, e := range entries {
		fi, _ := e.Info()
		if fi.Mode().IsRegular() && fi.Mode().Perm()&0o077 != 0 {
			t.Errorf("%s has mode %v", e.Name(), fi.Mode().Perm())
		}
	}
	if err := s.Close(); err != nil {
		t.Errorf("second Close: %v", err)
	}
}

func TestHolderFile(t *testing.T) {
	s := openTemp(t)
	b, err := os.ReadFile(filepath.Join(s.Dir(), holderFile))
	if err != nil {
		t.Fatal(err)
	}
	if !strings.Contains(string(b), fmt.Sprintf(`"pid": %d`, os.Getpid())) {
		t.Errorf("holder.json = %s", b)
	}
	// A stale holder.json (its pid is dead) does not name a holder.
	stale := fmt.Sprintf(`{"pid": %d, "command": "old", "started": "%s"}`, deadPID(t), time.Now().Format(time.RFC3339))
	dir := t.TempDir()
	os.WriteFile(filepath.Join(dir, holderFile), []byte(stale), 0o600)
	if le := lockedError(dir); le.PID != 0 || le.Command != "" {
		t.Errorf("lockedError with a stale holder.json = %+v", *le)
	}
}

func TestUseAfterClose(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "x")
	if err := s.Close(); err != nil {
		t.Fatal(err)
	}
	if err := s.AddMetric(m.ID, "loss", 1, 1); !errors.Is(err, ErrClosed) {
		t.Errorf("AddMetric after Close: %v", err)
	}
	if err := s.SaveCheckpoint(m.ID, CheckpointMeta{}, nil); !errors.Is(err, ErrClosed) {
		t.Errorf("SaveCheckpoint after Close: %v", err)
	}
	if _, err := s.GetRun(m.ID); err == nil {
		t.Error("GetRun after Close succeeded")
	}
}
