package sweep

import (
	"context"
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

func TestNewHalving(t *testing.T) {
	cases := []struct {
		steps, rungs, eta int
		want              []int
		err               string
	}{
		{steps: 16, rungs: 2, eta: 2, want: []int{8}},
		{steps: 1000, rungs: 3, eta: 2, want: []int{250, 500}},
		{steps: 90, rungs: 3, eta: 3, want: []int{10, 30}},
		{steps: 10, rungs: 1, eta: 2, want: nil},
		{steps: 3, rungs: 3, eta: 2, err: "too small"},
		{steps: 100, rungs: 2, eta: 1, err: "eta=1"},
		{steps: 100, rungs: 0, eta: 2, err: "rungs=0"},
	}
	for _, c := range cases {
		h, err := NewHalving(c.steps, c.rungs, c.eta, "")
		if c.err != "" {
			require.ErrorContains(t, err, c.err, "%+v", c)
			continue
		}
		require.NoError(t, err)
		require.Equal(t, c.want, h.Milestones, "%+v", c)
		require.Equal(t, "final_loss", h.Metric)
	}
}

func TestSlurmArraySpecAndScript(t *testing.T) {
	cases := []struct {
		idx  []int
		max  int
		want string
	}{
		{[]int{0, 1, 2, 3}, 0, "0-3"},
		{[]int{0, 1, 2, 3, 4, 5}, 2, "0-5%2"},
		{[]int{7, 0, 2, 1, 9, 8}, 3, "0-2,7-9%3"},
		{[]int{4}, 0, "4"},
	}
	for _, c := range cases {
		s := &Slurm{Opts: SlurmOptions{MaxRunning: c.max}}
		require.Equal(t, c.want, s.arraySpec(c.idx))
	}

	dir := t.TempDir()
	sw := &Sweep{Name: "rank/scan", dir: dir, Trials: []*Trial{{ID: "aaa"}, {ID: "bbb"}, {ID: "ccc"}}}
	s, err := NewSlurm(sw, SlurmOptions{Partition: "gpu", CPUsPerTask: 4, Mem: "8G", Time: "02:00:00", Device: "cuda", GPUs: 2,
		MaxRunning: 2, Extra: []string{"--account=lab"}, Lens: "/opt/lens bin/lens"})
	require.NoError(t, err)
	script, err := os.ReadFile(filepath.Join(dir, "sweep.sbatch"))
	require.NoError(t, err)
	for _, want := range []string{"#SBATCH --job-name=lens-rank_scan\n", "#SBATCH --array=0-2%2\n", "#SBATCH --cpus-per-task=4\n",
		"#SBATCH --mem=8G\n", "#SBATCH --time=02:00:00\n", "#SBATCH --partition=gpu\n", "#SBATCH --gres=gpu:2\n",
		"#SBATCH --account=lab\n", "#SBATCH --requeue\n", "#SBATCH --output=" + dir + "/logs/%A_%a.out\n",
		`exec '/opt/lens bin/lens' trial run ` + dir + ` "$trial" --threads "${SLURM_CPUS_PER_TASK:-4}"`} {
		require.Contains(t, string(script), want)
	}
	ids, err := os.ReadFile(filepath.Join(dir, "trials.txt"))
	require.NoError(t, err)
	require.Equal(t, "aaa\nbbb\nccc\n", string(ids))
	require.Equal(t, 2, s.index["ccc"])

	cpu, err := NewSlurm(sw, SlurmOptions{})
	require.NoError(t, err)
	plain := cpu.Script(3)
	require.NotContains(t, plain, "--gres")
	require.NotContains(t, plain, "--partition")
	require.Contains(t, plain, "#SBATCH --cpus-per-task=1\n")
	_, err = NewSlurm(sw, SlurmOptions{Device: "tpu"})
	require.ErrorContains(t, err, `device="tpu"`)
}

func TestParseSlurmStates(t *testing.T) {
	squeue := "12_0 RUNNING\n12_1 PENDING\n12_2 COMPLETED\n\n"
	require.Equal(t, map[string]string{"12_0": "RUNNING", "12_1": "PENDING", "12_2": "COMPLETED"}, parseStates(squeue, " "))
	sacct := "12_3|CANCELLED by 0\n12_4|FAILED\n12_5|NODE_FAIL+\n"
	require.Equal(t, map[string]string{"12_3": "CANCELLED", "12_4": "FAILED", "12_5": "NODE_FAIL"}, parseStates(sacct, "|"))
}

func TestTrialIDAndDefaultDir(t *testing.T) {
	spec := runs.Spec{Name: "s/r=4", Train: train.Config{Steps: 10}, Script: "/a/b.star", ScriptHash: "abc"}
	pt := json.RawMessage(`{"r":4}`)
	id := TrialID("s", pt, spec)
	require.Len(t, id, 12)
	moved := spec
	moved.Script, moved.ScriptHash, moved.Args = "/elsewhere.star", "def", map[string]string{"x": "1"}
	require.Equal(t, id, TrialID("s", pt, moved), "the script's path and content do not orphan trials")
	longer := spec
	longer.Train.Steps = 20
	require.NotEqual(t, id, TrialID("s", pt, longer))
	require.NotEqual(t, id, TrialID("s", json.RawMessage(`{"r":8}`), spec))
	require.NotEqual(t, id, TrialID("t", pt, spec))

	require.Equal(t, filepath.Join("st", "sweeps", "rank_scan"), DefaultDir("st", "rank/scan"))
	require.Equal(t, filepath.Join("st", "sweeps", "_"), DefaultDir("st", ".."))
}

// fixture is a workspace store with a tiny base model and a corpus file.
type fixture struct {
	dir  string
	ws   *kv.Store
	base *model.Model
	ref  runs.BaseRef
	data runs.DataRef
}

func newFixture(t *testing.T) *fixture {
	t.Helper()
	dir := t.TempDir()
	corpus := filepath.Join(dir, "corpus.txt")
	require.NoError(t, os.WriteFile(corpus, []byte(strings.Repeat("Light is refracted by the prism; the quick brown fox. ", 200)), 0o644))
	ws, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { ws.Close() })
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 32, 64, 2
	m, err := model.New(c, 1)
	require.NoError(t, err)
	ref, err := runs.StoreBase(ws, m)
	require.NoError(t, err)
	return &fixture{dir: dir, ws: ws, base: m, ref: ref, data: runs.DataRef{Source: corpus}}
}

func (f *fixture) spec(name string, steps int, lr float64) runs.Spec {
	return runs.Spec{Name: name, Tags: []string{"t"}, Base: f.ref, Data: f.data, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: steps, BatchSize: 4, SeqLen: 32, LR: lr, EvalEvery: 10}, CheckpointEvery: 10}
}

// create lays out a sweep of the given specs and returns its dir and ids.
func (f *fixture) create(t *testing.T, name string, h *Halving, specs ...runs.Spec) (string, []string) {
	t.Helper()
	var planned []Planned
	for i, s := range specs {
		planned = append(planned, Planned{Name: s.Name, Point: json.RawMessage(`{"i":` + string(rune('0'+i)) + `}`), Spec: s})
	}
	dir := DefaultDir(f.ws.Dir(), name)
	_, ids, err := Create(dir, name, BackendLocal, f.ws.Dir(), planned, map[string]*model.Model{f.ref.Blob: f.base}, h)
	require.NoError(t, err)
	return dir, ids
}

// cancelAt returns a context cancelled once training reports step.
func cancelAt(step int) (context.Context, func(runs.Progress)) {
	ctx, cancel := context.WithCancel(context.Background())
	return ctx, func(p runs.Progress) {
		if p.Step >= step {
			cancel()
		}
	}
}

func readShard(t *testing.T, dir, id string) (*kv.Store, kv.RunMeta) {
	t.Helper()
	st, err := kv.Open(ShardDir(dir, id), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 1)
	return st, list[0]
}

func losses(t *testing.T, st *kv.Store, id string) []kv.Point {
	t.Helper()
	pts, err := st.ReadMetric(id, "loss")
	require.NoError(t, err)
	return pts
}

// TestRunTrialResumesStopsAndMerges runs trials in this process: one is
// cancelled mid-way and run again (it resumes from its checkpoint and
// ends identical to an uninterrupted one), one is stopped by its sweep
// (and not trained again), and the shards merge once.
func TestRunTrialResumesStopsAndMerges(t *testing.T) {
	f := newFixture(t)
	dir, ids := f.create(t, "t", nil, f.spec("t/a", 40, 1e-2), f.spec("t/b", 40, 1e-2), f.spec("t/c", 40, 2e-2))
	ctx := context.Background()

	// a: uninterrupted.
	ma, err := RunTrial(ctx, dir, ids[0], TrialOptions{Threads: 1})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, ma.Status)
	require.True(t, strings.HasSuffix(ma.ID, "-"+ids[0]), ma.ID)

	// b: cancelled at step 25 (checkpoint there), then resumed.
	cctx, prog := cancelAt(25)
	mb, err := RunTrial(cctx, dir, ids[1], TrialOptions{Threads: 1, Progress: prog})
	require.NoError(t, err)
	require.Equal(t, kv.StatusCancelled, mb.Status)
	require.Equal(t, 25, mb.Steps)
	require.Equal(t, kv.StatusCancelled, ReadExit(dir, ids[1]).Status)
	p := ReadProgress(dir, ids[1])
	require.NotNil(t, p)
	require.Equal(t, 25, p.Step)
	mb, err = RunTrial(ctx, dir, ids[1], TrialOptions{Threads: 1})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, mb.Status)
	require.Equal(t, 40, mb.Steps)
	sa, _ := readShard(t, dir, ids[0])
	sb, rb := readShard(t, dir, ids[1])
	require.Equal(t, rb.ID, mb.ID, "the same run, resumed")
	la, lb := losses(t, sa, ma.ID), losses(t, sb, mb.ID)
	require.Len(t, lb, 40)
	for i := range la {
		require.Equal(t, i+1, lb[i].Step)
		require.Equal(t, la[i].Value, lb[i].Value, "step %d: resumed differs from uninterrupted", i+1)
	}
	sa.Close()
	sb.Close()

	// c: the sweep asks it to stop; it ends stopped, and stays so.
	require.NoError(t, os.WriteFile(stopFile(dir, ids[2]), []byte("stopped by successive halving at rung 0\n"), 0o644))
	cctx, prog = cancelAt(12)
	mc, err := RunTrial(cctx, dir, ids[2], TrialOptions{Threads: 1, Progress: prog})
	require.NoError(t, err)
	require.Equal(t, kv.StatusStopped, mc.Status)
	require.Equal(t, "stopped by successive halving at rung 0", mc.Reason)
	mc, err = RunTrial(ctx, dir, ids[2], TrialOptions{Threads: 1})
	require.NoError(t, err)
	require.Equal(t, kv.StatusStopped, mc.Status)
	require.Equal(t, 12, mc.Steps, "a stopped trial is not trained again")

	for _, id := range ids {
		merged, err := MergeShard(f.ws, ShardDir(dir, id), nil)
		require.NoError(t, err)
		require.Len(t, merged, 1)
		require.Equal(t, kv.MergeAdded, merged[0].Outcome)
		merged, err = MergeShard(f.ws, ShardDir(dir, id), nil)
		require.NoError(t, err)
		require.Equal(t, kv.MergeUnchanged, merged[0].Outcome)
	}
	list, err := f.ws.RunsByTag("t")
	require.NoError(t, err)
	require.Len(t, list, 3)
	probs, err := f.ws.Fsck()
	require.NoError(t, err)
	require.Empty(t, probs)
}

// TestRunTrialWritesRungSnapshots: a trial with halving milestones leaves a
// copy of its run at each milestone, with the steps and final loss as they
// were there, and the driver's Score reads it.
func TestRunTrialWritesRungSnapshots(t *testing.T) {
	f := newFixture(t)
	h, err := NewHalving(40, 3, 2, "final_loss")
	require.NoError(t, err)
	require.Equal(t, []int{10, 20}, h.Milestones)
	dir, ids := f.create(t, "h", h, f.spec("h/a", 40, 1e-2))
	m, err := RunTrial(context.Background(), dir, ids[0], TrialOptions{Threads: 1})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m.Status)
	full, _ := readShard(t, dir, ids[0])
	evals, err := full.ReadMetric(m.ID, "eval/corpus.txt")
	require.NoError(t, err)
	for k, step := range h.Milestones {
		require.FileExists(t, rungMarker(dir, ids[0], k))
		st, err := kv.Open(rungShard(dir, ids[0], k), kv.Options{ReadOnly: true})
		require.NoError(t, err)
		snap, err := st.GetRun(m.ID)
		require.NoError(t, err)
		require.Equal(t, step, snap.Steps)
		var want float64
		for _, p := range evals {
			if p.Step == step {
				want = p.Value
			}
		}
		score, err := Score(st, snap, "final_loss", snap.Steps)
		require.NoError(t, err)
		require.Equal(t, want, score, "rung %d scores the eval loss at step %d", k, step)
		loss, err := Score(st, snap, "loss", snap.Steps)
		require.NoError(t, err)
		require.NotZero(t, loss)
		st.Close()
	}
}

func TestCreateKeepsFinishedTrials(t *testing.T) {
	f := newFixture(t)
	dir, ids := f.create(t, "k", nil, f.spec("k/a", 10, 1e-2), f.spec("k/b", 10, 1e-2))
	sw, err := Load(dir)
	require.NoError(t, err)
	sw.Trial(ids[0]).State = StateDone
	sw.Trial(ids[1]).State, sw.Trial(ids[1]).Attempts, sw.Trial(ids[1]).Error = StateFailed, 3, "boom"
	require.NoError(t, sw.Save())
	_, ids2 := f.create(t, "k", nil, f.spec("k/a", 10, 1e-2), f.spec("k/b", 10, 1e-2))
	require.Equal(t, ids, ids2)
	sw, err = Load(dir)
	require.NoError(t, err)
	require.Equal(t, StateDone, sw.Trial(ids[0]).State, "finished trials stay finished")
	require.Equal(t, StatePending, sw.Trial(ids[1]).State, "failed trials are tried again")
	require.Zero(t, sw.Trial(ids[1]).Attempts)
	require.FileExists(t, filepath.Join(baseDir(dir, f.ref.Blob), "config.json"))

	_, _, err = Create(dir, "other", BackendLocal, f.ws.Dir(), nil, nil, nil)
	require.ErrorContains(t, err, `belongs to sweep "k"`)
}
