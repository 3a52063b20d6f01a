package runs

import (
	"context"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"syscall"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/engine/model"
	"lens/kv"
)

// The crash tests kill a training process with SIGKILL at an exact point
// inside a checkpoint's commit (kv.Options.Fault), resume the run, and
// require that the store passes fsck right after the kill and that the
// resumed run stores exactly what an uninterrupted run of the same spec
// does (Differences finds nothing). The killed process is this test binary
// run again as crashChild.

const (
	envCrashStore    = "LENS_TEST_CRASH_STORE"
	envCrashScenario = "LENS_TEST_CRASH_SCENARIO"
	envCrashPoint    = "LENS_TEST_CRASH_POINT"
	envCrashStep     = "LENS_TEST_CRASH_STEP"
)

// crashScenarios are the runs the crash tests kill.
var crashScenarios = map[string]func(st *kv.Store) (Spec, *model.Model, error){
	// A LoRA run with a collector and rotation: every checkpoint fits one
	// transaction.
	"lora": func(st *kv.Store) (Spec, *model.Model, error) {
		spec, base, err := crashSpec(st, model.Tiny(), 32, 2)
		spec.Collect = []collect.Spec{{Name: "adapter_weights", Every: 2}}
		spec.KeepLast = 2
		spec.Train.EvalEvery = 4
		return spec, base, err
	},
	// Full training of a narrow, deep model: its checkpoints hold ~4 MB
	// of values under Badger's value threshold, too many for one
	// transaction, so saves and rotation go in parts under an intent.
	"full": func(st *kv.Store) (Spec, *model.Model, error) {
		spec, base, err := crashSpec(st, model.Tiny(), 64, 8)
		spec.LoRA = nil
		spec.KeepLast = 1
		spec.CheckpointEvery = 1
		spec.Train.Steps = 8
		spec.Train.LR = 1e-3
		return spec, base, err
	},
}

func crashSpec(st *kv.Store, cfg model.Config, hidden, layers int) (Spec, *model.Model, error) {
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = hidden, 2*hidden, layers
	base, err := model.New(cfg, 3)
	if err != nil {
		return Spec{}, nil, err
	}
	ref, err := StoreBase(st, base)
	if err != nil {
		return Spec{}, nil, err
	}
	return tinySpecFrom(ref), base, nil
}

// TestCrashChild is the killed process; it does nothing in a normal test run.
func TestCrashChild(t *testing.T) {
	dir := os.Getenv(envCrashStore)
	if dir == "" {
		t.Skip("run by the crash tests only")
	}
	point := os.Getenv(envCrashPoint)
	step, err := strconv.Atoi(os.Getenv(envCrashStep))
	require.NoError(t, err)
	st, err := kv.Open(dir, kv.Options{Fault: func(p string, s int) {
		if p == point && s == step {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {} // the signal is on its way
		}
	}})
	require.NoError(t, err)
	spec, base, err := crashScenarios[os.Getenv(envCrashScenario)](st)
	require.NoError(t, err)
	spec.Name = "killed"
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	_, err = job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	st.Close()
	t.Fatalf("the run ended without reaching %s at step %d", point, step)
}

func TestCrashAtEveryCommitPoint(t *testing.T) {
	if testing.Short() {
		t.Skip("trains and kills several runs")
	}
	for _, tc := range []struct {
		scenario, point string
		step            int
	}{
		// A full checkpoint killed before it commits. Tensors over 2.3 KB
		// go to Badger's value log, so this one fits one transaction;
		// kv's TestKillInsideLargeCheckpoint kills between the parts of
		// one that does not (30,000 tensors).
		{"full", kv.FaultCheckpointBegin, 6},
		// A large checkpoint committed, the old one it retires not yet
		// removed (kv's TestKillInsideLargeCheckpoint kills inside a
		// removal too large for one transaction).
		{"full", kv.FaultCheckpointSaved, 3},
		// Killed right after checkpoint 4 committed: its collector records
		// must already be in (issue: they were written after it, and lost).
		{"lora", kv.FaultCheckpointSaved, 4},
		// Killed with step 6's records written and its checkpoint not:
		// the resumed run writes them again, identically.
		{"lora", kv.FaultCheckpointBegin, 6},
		// Resumed from checkpoint 8 (evaluated at 8): checkpoint 10 must
		// carry the step-8 eval loss, as in the uninterrupted run (issue:
		// it carried none until the next evaluation).
		{"lora", kv.FaultCheckpointSaved, 8},
	} {
		t.Run(tc.scenario+"/"+tc.point+"/"+strconv.Itoa(tc.step), func(t *testing.T) {
			crashAndCompare(t, tc.scenario, tc.point, tc.step)
		})
	}
}

// crashAndCompare trains scenario uninterrupted, then again killed at
// point/step, checks the store, resumes, and compares.
func crashAndCompare(t *testing.T, scenario, point string, step int) {
	dir := filepath.Join(t.TempDir(), "store")
	st, err := kv.Open(dir, kv.Options{})
	require.NoError(t, err)
	spec, base, err := crashScenarios[scenario](st)
	require.NoError(t, err)
	spec.Name = "reference"
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	ref, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.NoError(t, st.Close())

	cmd := exec.Command(os.Args[0], "-test.run=^TestCrashChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envCrashStore+"="+dir, envCrashScenario+"="+scenario,
		envCrashPoint+"="+point, envCrashStep+"="+strconv.Itoa(step))
	out, err := cmd.CombinedOutput()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled() && ws.Signal() == syscall.SIGKILL, "child was not killed: %v\n%s", err, out)

	// Read-only first: what fsck sees before anything repairs the store.
	ro, err := kv.Open(dir, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	problems, err := ro.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems, "fsck right after the kill")
	require.NoError(t, ro.Close())

	st, err = kv.Open(dir, kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	killed, err := st.FindRun("killed")
	require.NoError(t, err)
	require.Equal(t, kv.StatusInterrupted, killed.Status)
	_, err = Resume(context.Background(), st, killed.ID, Options{})
	require.NoError(t, err)
	problems, err = st.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems, "fsck after the resume")
	diffs, err := Differences(st, ref.ID, killed.ID)
	require.NoError(t, err)
	require.Empty(t, diffs)
}
