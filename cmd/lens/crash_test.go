package main

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/runs"
	"lens/kv"
)

var killPoints = flag.Int("kill-points", 3, "random SIGKILL points in TestKillAndResume (the full check uses 20)")

// TestKillAndResume kills a training process with SIGKILL at random
// moments, reopens the store (the run must say interrupted and every
// checksum must verify), resumes it, and compares it with an
// uninterrupted run of the same seed: identical final adapter tensors and
// identical metrics at every step, none missing or duplicated.
//
//	go test ./cmd/lens -run KillAndResume -kill-points 20
func TestKillAndResume(t *testing.T) {
	script := tinyScript + "train(name = lens.args['name'], steps = 300, checkpoint_every = 7, eval_every = 50)\n"
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	refStart := time.Now()
	_, stderr, code := lens(t, dir, "run", "a.star", "--", "name=reference")
	require.Equal(t, 0, code, stderr)
	// Kills land within 2/3 of the reference run's time after its first
	// step, so that most are mid-training however fast training is.
	window := max(50, int(time.Since(refStart).Milliseconds()*2/3))
	rng := rand.New(rand.NewPCG(uint64(time.Now().UnixNano()), 1))
	resumed := 0
	for k := range *killPoints {
		name := "killed" + string(rune('a'+k%26)) + strings.Repeat("x", k/26)
		cmd := exec.Command(lensBin, "run", "a.star", "--", "name="+name)
		cmd.Dir = dir
		var errb bytes.Buffer
		cmd.Stderr = &errb
		require.NoError(t, cmd.Start())
		// Kill somewhere between the first steps and the end of training.
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(errb.String(), "step 1/") {
			time.Sleep(20 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(window)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()

		out, fsckErr, code := lens(t, dir, "fsck")
		require.Equal(t, 0, code, "fsck after kill %d: %s%s", k, out, fsckErr)
		out, stderr, code := lens(t, dir, "show", name)
		require.Equal(t, 0, code, stderr)
		if strings.Contains(out, "status   done") {
			continue // the kill came after the end: nothing to resume
		}
		require.Contains(t, out, "status   interrupted", "a killed run must not stay running")
		_, stderr, code = lens(t, dir, "run", "--resume", name)
		require.Equal(t, 0, code, stderr)
		compareRuns(t, filepath.Join(dir, ".lens"), "reference", name)
		resumed++
	}
	t.Logf("%d of %d kills landed mid-training and resumed bit-identically", resumed, *killPoints)
	require.Positive(t, resumed)
}

func compareRuns(t *testing.T, store, a, b string) {
	t.Helper()
	st, err := kv.Open(store, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	ma, err := st.FindRun(a)
	require.NoError(t, err)
	mb, err := st.FindRun(b)
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, mb.Status)
	require.Equal(t, ma.Steps, mb.Steps)
	names, err := st.MetricNames(ma.ID)
	require.NoError(t, err)
	for _, n := range names {
		if n == "tokens_per_s" || n == "step_time_s" || n == "memory_bytes" {
			continue // wall-clock measurements
		}
		pa, err := st.ReadMetric(ma.ID, n)
		require.NoError(t, err)
		pb, err := st.ReadMetric(mb.ID, n)
		require.NoError(t, err)
		require.Equal(t, pa, pb, "metric %s of %s", n, b)
	}
	_, adA, _, err := runs.Weights(st, ma.ID, -1)
	require.NoError(t, err)
	_, adB, _, err := runs.Weights(st, mb.ID, -1)
	require.NoError(t, err)
	for _, m := range adA.Modules {
		require.Equal(t, adA.A[m].Data, adB.A[m].Data, m)
		require.Equal(t, adA.B[m].Data, adB.B[m].Data, m)
	}
}
