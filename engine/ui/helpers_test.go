package ui

import (
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

// The child process of the live test: TestMain trains a slow run into the
// store named by this variable and exits.
const childEnv = "LENS_UI_TEST_TRAIN_INTO"

func TestMain(m *testing.M) {
	if dir := os.Getenv(childEnv); dir != "" {
		if err := trainChild(dir); err != nil {
			fmt.Fprintln(os.Stderr, "child:", err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func tinySpec(st *kv.Store, name string, r int, seed uint64, steps int) (runs.Spec, *model.Model, error) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	if err != nil {
		return runs.Spec{}, nil, err
	}
	ref, err := runs.StoreBase(st, base)
	if err != nil {
		return runs.Spec{}, nil, err
	}
	every := 5
	return runs.Spec{Name: name, Tags: []string{"ui-test", fmt.Sprintf("r%d", r)}, Base: ref,
		LoRA:  &lora.Config{Rank: r, Alpha: float64(2 * r), Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: steps, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 10, EvalBatches: 2, Seed: seed},
		Data:  runs.DataRef{Source: "opticks"}, CheckpointEvery: 10,
		Collect: []collect.Spec{{Name: "adapter_weights", Every: every}, {Name: "adapter_grads", Every: every},
			{Name: "lora_activations", Every: every}, {Name: "activations", Every: every}},
	}, base, nil
}

// finishedRuns writes two finished LoRA runs (r=4 seed 1, r=8 seed 2) into a
// new store and returns its directory and the run ids.
func finishedRuns(t *testing.T) (string, []string) {
	t.Helper()
	dir := filepath.Join(t.TempDir(), "store")
	st, err := kv.Open(dir, kv.Options{})
	require.NoError(t, err)
	defer st.Close()
	var ids []string
	for _, c := range []struct {
		name string
		r    int
		seed uint64
	}{{"ui-r4", 4, 1}, {"ui-r8", 8, 2}} {
		spec, base, err := tinySpec(st, c.name, c.r, c.seed, 30)
		require.NoError(t, err)
		job, err := runs.Prepare(spec, base)
		require.NoError(t, err)
		meta, err := job.Run(context.Background(), st, runs.Options{})
		require.NoError(t, err)
		require.Equal(t, kv.StatusDone, meta.Status)
		ids = append(ids, meta.ID)
	}
	return dir, ids
}

// trainChild trains a long run slowly (one step per 50 ms), printing its id
// once the record exists, so the parent can watch it live.
func trainChild(dir string) error {
	st, err := kv.Open(dir, kv.Options{Command: "ui test trainer"})
	if err != nil {
		return err
	}
	defer st.Close()
	spec, base, err := tinySpec(st, "ui-live", 4, 3, 2000)
	if err != nil {
		return err
	}
	job, err := runs.Prepare(spec, base)
	if err != nil {
		return err
	}
	_, err = job.Run(context.Background(), st, runs.Options{
		OnStart: func(id string, _ *train.Trainer) error {
			fmt.Printf("started %s\n", id)
			return nil
		},
		Progress: func(runs.Progress) { time.Sleep(50 * time.Millisecond) },
	})
	return err
}

// startTrainer starts trainChild in another process on dir and returns the
// run's id once it trains; the process is killed when the test ends.
func startTrainer(t *testing.T, dir string) string {
	t.Helper()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), childEnv+"="+dir)
	out, err := cmd.StdoutPipe()
	require.NoError(t, err)
	cmd.Stderr = os.Stderr
	require.NoError(t, cmd.Start())
	t.Cleanup(func() {
		_ = cmd.Process.Kill()
		_ = cmd.Wait()
	})
	line := make(chan string, 1)
	go func() {
		buf := make([]byte, 256)
		n, _ := out.Read(buf)
		line <- string(buf[:n])
	}()
	select {
	case l := <-line:
		id, ok := strings.CutPrefix(strings.TrimSpace(l), "started ")
		require.True(t, ok, "child said %q", l)
		return id
	case <-time.After(60 * time.Second):
		t.Fatal("the training child did not start within 60 s")
	}
	return ""
}
