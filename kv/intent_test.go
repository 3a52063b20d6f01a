package kv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
)

// The intent tests kill a process (this test binary, run again as
// TestIntentChild) with SIGKILL at each fault point of a checkpoint too
// large for one transaction: 30,000 small tensors, saved at step 2 while
// dropping step 1. Right after the kill, Fsck must be clean; after the
// next writable open, each step must be whole or absent, with no tensor
// left behind.

const (
	envIntentStore = "LENS_TEST_INTENT_STORE"
	envIntentPoint = "LENS_TEST_INTENT_POINT"
	envIntentStep  = "LENS_TEST_INTENT_STEP"
)

func manySmall(n int, mark float32) []Tensor {
	ts := make([]Tensor, n)
	for i := range ts {
		ts[i] = testTensor(fmt.Sprintf("t%05d", i), 16)
		ts[i].Data[0] = mark
	}
	return ts
}

func TestIntentChild(t *testing.T) {
	dir := os.Getenv(envIntentStore)
	if dir == "" {
		t.Skip("run by TestKillInsideLargeCheckpoint only")
	}
	point, step := os.Getenv(envIntentPoint), 0
	_, err := fmt.Sscan(os.Getenv(envIntentStep), &step)
	require.NoError(t, err)
	s, err := Open(dir, Options{Fault: func(p string, st int) {
		if p == point && st == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}})
	require.NoError(t, err)
	m, err := s.FindRun("big")
	require.NoError(t, err)
	require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 2}, manySmall(30000, 2), 1))
	t.Fatalf("the save ended without reaching %s at step %d", point, step)
}

func TestKillInsideLargeCheckpoint(t *testing.T) {
	if testing.Short() {
		t.Skip("writes several large checkpoints")
	}
	for _, tc := range []struct {
		point     string
		step      int
		wantSteps []int // checkpoints after the repair
	}{
		{FaultCheckpointBegin, 2, []int{1}},
		{FaultCheckpointTensors, 2, []int{1}},
		{FaultCheckpointSaved, 2, []int{1, 2}},
		{FaultCheckpointDrop, 1, []int{2}},
	} {
		t.Run(fmt.Sprintf("%s/%d", tc.point, tc.step), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), ".lens")
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			m := newRun(t, s, "big")
			require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 1}, manySmall(30000, 1)))
			require.NoError(t, s.Close())

			cmd := exec.Command(os.Args[0], "-test.run=^TestIntentChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envIntentStore+"="+dir, envIntentPoint+"="+tc.point, fmt.Sprintf("%s=%d", envIntentStep, tc.step))
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled(), "child was not killed: %v\n%s", err, out)

			ro, err := Open(dir, Options{ReadOnly: true})
			require.NoError(t, err)
			problems, err := ro.Fsck()
			require.NoError(t, err)
			require.Empty(t, problems, "fsck right after the kill")
			require.NoError(t, ro.Close())

			s, err = Open(dir, Options{})
			require.NoError(t, err)
			defer s.Close()
			cps, err := s.Checkpoints(m.ID)
			require.NoError(t, err)
			var steps []int
			for _, c := range cps {
				steps = append(steps, c.Step)
				_, ts, err := s.LoadCheckpoint(m.ID, c.Step)
				require.NoError(t, err)
				require.Len(t, ts, 30000)
				require.Equal(t, float32(c.Step), ts[29999].Data[0])
			}
			require.Equal(t, tc.wantSteps, steps)
			// Nothing left behind: every key under ckpt/ belongs to a
			// listed checkpoint, and no intent remains.
			keys := 0
			require.NoError(t, s.db.View(func(txn *badger.Txn) error {
				if err := scanKeys(txn, ckptPrefix(m.ID), func([]byte) error { keys++; return nil }); err != nil {
					return err
				}
				return scanKeys(txn, []byte(prefixIntent), func(k []byte) error {
					return fmt.Errorf("intent %s left", displayKey(k))
				})
			}))
			require.Equal(t, len(tc.wantSteps)*30001, keys)
			problems, err = s.Fsck()
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}

// TestFsckReportsOrphans: tensors without a meta and without an intent
// are still a problem (an intent is what makes them expected).
func TestFsckReportsOrphans(t *testing.T) {
	s := openTemp(t)
	m := newRun(t, s, "r")
	require.NoError(t, s.writeBatch([][]byte{ckptTensorKey(m.ID, 5, "w")}, [][]byte{mustEncode(t, testTensor("w", 2))}))
	problems, err := s.Fsck()
	require.NoError(t, err)
	require.Len(t, problems, 1)
	require.Contains(t, problems[0].Message, "incomplete checkpoint")
	require.NoError(t, s.update(func(txn *badger.Txn) error { return txn.Set(intentCkptKey(m.ID, 5), nil) }))
	problems, err = s.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)
	require.Equal(t, "intent/ckpt/"+m.ID+"/5", displayKey(intentCkptKey(m.ID, 5)))
}

func mustEncode(t *testing.T, x Tensor) []byte {
	b, err := encodeTensor(x)
	require.NoError(t, err)
	return b
}
