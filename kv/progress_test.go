package kv

import (
	"bufio"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

const envProgressStore = "LENS_TEST_PROGRESS_STORE"

// TestProgressChild trains a pretend run: a step every 10 ms, reported the
// way engine/runs reports it (AddMetrics, then SetProgress), until stdin
// closes.
func TestProgressChild(t *testing.T) {
	dir := os.Getenv(envProgressStore)
	if dir == "" {
		t.Skip("run by TestProgressAcrossProcesses only")
	}
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	m := RunMeta{ID: s.NewRunID(), Name: "live"}
	require.NoError(t, s.CreateRun(m))
	done := make(chan struct{})
	go func() {
		bufio.NewReader(os.Stdin).ReadString('\n')
		close(done)
	}()
	os.Stdout.WriteString("ready " + m.ID + "\n")
	for step := 1; ; step++ {
		select {
		case <-done:
			require.NoError(t, s.UpdateRun(m.ID, func(r *RunMeta) error { r.Status, r.Steps = StatusDone, step-1; return nil }))
			require.NoError(t, s.Close())
			return
		case <-time.After(10 * time.Millisecond):
		}
		require.NoError(t, s.AddMetrics(m.ID, step, map[string]float64{"loss": 1 / float64(step)}))
		require.NoError(t, s.SetProgress(m.ID, Progress{Step: step, Steps: 1_000_000, Loss: 1 / float64(step), TokensPerSec: 100}))
	}
}

// A reader in another process sees a training run's step advance, within
// a second, while the record itself is written only at the start and end.
func TestProgressAcrossProcesses(t *testing.T) {
	dir := filepath.Join(t.TempDir(), ".lens")
	cmd := exec.Command(os.Args[0], "-test.run=^TestProgressChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envProgressStore+"="+dir)
	stdin, err := cmd.StdinPipe()
	require.NoError(t, err)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	defer cmd.Process.Kill()
	line, err := bufio.NewReader(out).ReadString('\n')
	require.NoError(t, err)
	id := strings.TrimSpace(strings.TrimPrefix(line, "ready "))

	read := func() RunMeta {
		s, err := Open(dir, Options{ReadOnly: true})
		require.NoError(t, err)
		defer s.Close()
		require.True(t, s.Snapshot(), "the reader should get the writer's snapshot")
		m, err := s.GetRun(id)
		require.NoError(t, err)
		runs, err := s.ListRuns()
		require.NoError(t, err)
		require.Len(t, runs, 1)
		require.Equal(t, m.Steps, runs[0].Steps, "ListRuns and GetRun agree")
		return m
	}
	time.Sleep(300 * time.Millisecond)
	first := read()
	require.Equal(t, StatusRunning, first.Status)
	require.NotNil(t, first.Progress)
	require.Positive(t, first.Steps)
	require.Equal(t, first.Steps, first.Progress.Step)
	time.Sleep(time.Second)
	second := read()
	require.Greater(t, second.Steps, first.Steps, "the step did not advance")
	require.Less(t, second.Progress.Loss, first.Progress.Loss)
	require.Equal(t, first.Updated, second.Updated, "the record itself was rewritten")

	stdin.Close()
	require.NoError(t, cmd.Wait())
	s, err := Open(dir, Options{ReadOnly: true})
	require.NoError(t, err)
	defer s.Close()
	m, err := s.GetRun(id)
	require.NoError(t, err)
	require.Equal(t, StatusDone, m.Status)
	require.Nil(t, m.Progress, "a finished run has no progress")
	pts, err := s.ReadMetric(id, "loss")
	require.NoError(t, err)
	require.Len(t, pts, m.Steps)
	problems, err := s.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)
}

// The background flusher writes buffered metrics and progress within
// flushEvery and a tick, without any call that flushes.
func TestBackgroundFlush(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "r")
	require.NoError(t, s.AddMetrics(m.ID, 1, map[string]float64{"loss": 2}))
	require.NoError(t, s.SetProgress(m.ID, Progress{Step: 1, Loss: 2}))
	require.Empty(t, rawDump(t, s, []byte(prefixProg)), "written at once")
	time.Sleep(flushEvery + flushEvery/2)
	require.Len(t, rawDump(t, s, []byte(prefixProg)), 1)
	require.Len(t, rawDump(t, s, metricPrefix(m.ID)), 1)
	require.NoError(t, s.UpdateRun(m.ID, func(r *RunMeta) error { r.Status = StatusDone; return nil }))
	require.Empty(t, rawDump(t, s, []byte(prefixProg)), "a finished run keeps its progress key")
	require.NoError(t, s.SetProgress(m.ID, Progress{Step: 2}))
	require.NoError(t, s.Flush())
	require.Empty(t, rawDump(t, s, []byte(prefixProg)), "a late report brings back the key of a finished run")
}
