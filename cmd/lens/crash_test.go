package main

import (
	"bytes"
	"flag"
	"math/rand/v2"
	"os"
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

var killPoints = flag.Int("kill-points", 3, "SIGKILLs at random moments in TestKillAndResume (the full check uses 20)")

// TestKillAndResume trains a run with collectors and checkpoint rotation
// on, kills it with SIGKILL at a random moment, checks the store with
// lens fsck, resumes it (alternately with lens run --resume and with
// lens.train(resume=...)), kills the resumed process again, and so on;
// then lets it finish and requires that it stored exactly what an
// uninterrupted run of the same seed did: every metric but the wall-clock
// ones, every collector record, the checkpoints kept with their eval
// losses, and every tensor of the final checkpoint (runs.Differences).
// Checkpoints every 3 steps with keep_last = 1 put a rotation and a
// collector step in every checkpoint, so random kills land inside them.
//
//	go test ./cmd/lens -run KillAndResume -kill-points 20
func TestKillAndResume(t *testing.T) {
	script := tinyScript + `train(name = lens.args['name'], steps = 240, checkpoint_every = 3, eval_every = 40, keep_last = 1,
      collect = [collect.adapter_weights(every = 3)])
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script,
		"resume.star": "lens.train(resume = lens.run(lens.args['name']))\n"})
	killResumeCompare(t, dir, *killPoints)
}

// TestKillAndResumePacked is TestKillAndResume's check on a QLoRA run of a
// model.new base (drawn packed, never in float32, and recorded by its seed)
// with checkpointing and head_chunk: killed twice and resumed, it stores
// exactly what the uninterrupted run did.
func TestKillAndResumePacked(t *testing.T) {
	script := `base = model.new({"vocab_size": 256, "hidden_size": 64, "intermediate_size": 128, "num_hidden_layers": 2,
                   "num_attention_heads": 4, "num_key_value_heads": 2, "max_position_embeddings": 64}, seed = 1)
lens.train(name = lens.args['name'], model = base, data = data.text("corpus.txt"), lora = lora.config(r = 4, alpha = 8, targets = ["all-linear"]),
           steps = 120, batch_size = 4, seq_len = 32, lr = 1e-2, eval_every = 40, checkpoint_every = 3, keep_last = 1,
           base_quant = "nf4", checkpointing = True, head_chunk = 16, collect = [collect.adapter_weights(every = 3)])
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script,
		"resume.star": "lens.train(resume = lens.run(lens.args['name']))\n"})
	killResumeCompare(t, dir, 2)
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	meta, err := st.FindRun("killed")
	require.NoError(t, err)
	spec, err := runs.SpecOf(meta)
	require.NoError(t, err)
	require.True(t, spec.Base.Init, "the base is recorded by its seed")
	require.Equal(t, "nf4", spec.Train.BaseQuant)
	stored, err := st.HasBlob("model", spec.Base.Hash)
	require.NoError(t, err)
	require.False(t, stored, "a float32 copy of the base was stored")
}

// killResumeCompare runs a.star (which names its run lens.args['name']) in
// workspace dir as "reference", then as "killed", SIGKILLed up to points
// times at random moments and resumed each time (alternately with lens run
// --resume and with resume.star), checking the store with lens fsck after
// every kill; then requires that "killed" stored exactly what "reference"
// did (compareRuns).
func killResumeCompare(t *testing.T, dir string, points int) {
	t.Helper()
	refStart := time.Now()
	_, stderr, code := lens(t, dir, "run", "a.star", "--", "name=reference")
	require.Equal(t, 0, code, stderr)
	// Kills land within a twelfth of the reference run's time after the
	// first step, so that twenty kills still mostly find the run
	// mid-training, however fast training is.
	window := max(20, int(time.Since(refStart).Milliseconds()/12))
	seed := uint64(time.Now().UnixNano())
	rng := rand.New(rand.NewPCG(seed, 1))
	t.Logf("kill times drawn with seed %d", seed)
	args := []string{"run", "a.star", "--", "name=killed"}
	kills := 0
	for k := range points {
		cmd := exec.Command(lensBin, args...)
		cmd.Dir = dir
		cmd.Env = append(os.Environ(), "LENS_STORE=")
		var errb bytes.Buffer
		cmd.Stderr = &errb
		require.NoError(t, cmd.Start())
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) && !strings.Contains(errb.String(), "step ") {
			time.Sleep(5 * time.Millisecond)
		}
		time.Sleep(time.Duration(rng.IntN(window)) * time.Millisecond)
		require.NoError(t, cmd.Process.Signal(syscall.SIGKILL))
		cmd.Wait()

		out, fsckErr, code := lens(t, dir, "fsck")
		require.Equal(t, 0, code, "fsck after kill %d: %s%s", k, out, fsckErr)
		out, stderr, code := lens(t, dir, "show", "killed")
		require.Equal(t, 0, code, stderr)
		if strings.Contains(out, "status   done") {
			break // the kill came after the end: nothing to resume
		}
		require.Contains(t, out, "status   interrupted", "a killed run must not stay running")
		kills++
		// Resume alternately from the command line and from a script.
		if k%2 == 0 {
			args = []string{"run", "--resume", "killed"}
		} else {
			args = []string{"run", "resume.star", "--", "name=killed"}
		}
	}
	if kills > 0 {
		_, stderr, code = lens(t, dir, args...)
		require.Equal(t, 0, code, stderr)
	}
	t.Logf("%d of %d kills landed mid-training", kills, points)
	require.Positive(t, kills)
	out, stderr, code := lens(t, dir, "fsck")
	require.Equal(t, 0, code, out+stderr)
	compareRuns(t, filepath.Join(dir, ".lens"), "reference", "killed")
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
	diffs, err := runs.Differences(st, ma.ID, mb.ID)
	require.NoError(t, err)
	require.Empty(t, diffs)
	cps, err := st.Checkpoints(mb.ID)
	require.NoError(t, err)
	require.NotEmpty(t, cps)
	recs, err := st.ReadCollected(mb.ID, "adapter_weights")
	require.NoError(t, err)
	require.NotEmpty(t, recs)
}
