package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"syscall"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/kv"
)

// sweepScript defines train for the sweep tests: the tiny model of
// tinyScript, checkpoints every 100 steps.
const sweepScript = `load("@stdlib//sweep.star", "grid", "run_sweep", "successive_halving")
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
def train(steps = 12, lr = 1e-2, r = 4, **kw):
    return lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = r, alpha = 8, targets = ["q_proj", "v_proj"]),
                      steps = steps, batch_size = 4, seq_len = 32, lr = lr, eval_every = 100, checkpoint_every = 100, **kw)
`

// wallClock metrics differ between any two runs.
var wallClock = map[string]bool{"tokens_per_s": true, "step_time_s": true, "memory_bytes": true, "peak_rss": true}

// sameRun checks that run a in store sa and run b in store sb trained the
// same: every metric at every step and the final adapter, bit for bit.
func sameRun(t *testing.T, sa *kv.Store, a kv.RunMeta, sb *kv.Store, b kv.RunMeta) {
	t.Helper()
	require.Equal(t, a.Steps, b.Steps, "%s steps", b.Name)
	names, err := sa.MetricNames(a.ID)
	require.NoError(t, err)
	namesB, err := sb.MetricNames(b.ID)
	require.NoError(t, err)
	require.Equal(t, names, namesB, "%s metric names", b.Name)
	for _, n := range names {
		if wallClock[n] {
			continue
		}
		pa, err := sa.ReadMetric(a.ID, n)
		require.NoError(t, err)
		pb, err := sb.ReadMetric(b.ID, n)
		require.NoError(t, err)
		require.Equal(t, pa, pb, "metric %s of %s", n, b.Name)
	}
	_, adA, _, err := runs.Weights(sa, a.ID, -1)
	require.NoError(t, err)
	_, adB, _, err := runs.Weights(sb, b.ID, -1)
	require.NoError(t, err)
	for _, m := range adA.Modules {
		require.Equal(t, adA.A[m].Data, adB.A[m].Data, "%s %s", b.Name, m)
		require.Equal(t, adA.B[m].Data, adB.B[m].Data, "%s %s", b.Name, m)
	}
}

// requireEveryStepOnce checks that a run's loss series has steps 1..Steps,
// each exactly once.
func requireEveryStepOnce(t *testing.T, st *kv.Store, m kv.RunMeta) {
	t.Helper()
	pts, err := st.ReadMetric(m.ID, "loss")
	require.NoError(t, err)
	require.Len(t, pts, m.Steps, "%s: one loss per step", m.Name)
	for i, p := range pts {
		require.Equal(t, i+1, p.Step, "%s: loss steps", m.Name)
	}
}

func openRO(t *testing.T, dir string) *kv.Store {
	t.Helper()
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// TestSweepLocalMatchesInline runs a 6-trial sweep with backend="local",
// workers=2 and the same sweep inline (with the threads a local trial
// gets): each run is in the store exactly once, bit-identical to its
// inline twin; merging the shards again changes nothing.
func TestSweepLocalMatchesInline(t *testing.T) {
	script := sweepScript + `runs = run_sweep("sw", grid(r = [2, 4, 8], lr = [1e-2, 2e-2]), train, backend = lens.args["backend"], workers = 2, steps = 40)
print("RESULT", len(runs), sorted([r.status for r in runs]))
`
	files := map[string]string{"corpus.txt": corpus(), "a.star": script}
	local, inline := workspace(t, files), workspace(t, files)
	out, stderr, code := lensEnv(t, local, nil, "run", "a.star", "--", "backend=local")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `RESULT 6 ["done", "done", "done", "done", "done", "done"]`)
	threads := fmt.Sprint(max(1, runtime.NumCPU()/2))
	out, stderr, code = lensEnv(t, inline, []string{"GOMAXPROCS=" + threads}, "run", "a.star", "--", "backend=inline")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "RESULT 6")

	sl, si := openRO(t, local), openRO(t, inline)
	list, err := sl.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 6, "each trial once")
	seen := map[string]bool{}
	for _, m := range list {
		require.False(t, seen[m.Name], "run %s twice", m.Name)
		seen[m.Name] = true
		require.Equal(t, kv.StatusDone, m.Status)
		require.Equal(t, []string{"sw"}, m.Tags)
		requireEveryStepOnce(t, sl, m)
		twin, err := si.FindRun(m.Name)
		require.NoError(t, err)
		sameRun(t, si, twin, sl, m)
	}
	sl.Close()

	// Merging every shard again: unchanged, and the store reads the same.
	shards, err := filepath.Glob(filepath.Join(local, ".lens", "sweeps", "sw", "shards", "*"))
	require.NoError(t, err)
	require.Len(t, shards, 6)
	out, stderr, code = lensEnv(t, local, nil, append([]string{"merge", "--into", ".lens"}, shards...)...)
	require.Equal(t, 0, code, stderr)
	require.Equal(t, 6, strings.Count(out, ": unchanged\n"), out)
	sl = openRO(t, local)
	again, err := sl.ListRuns()
	require.NoError(t, err)
	require.Equal(t, list, again)
	sl.Close()
	out, _, code = lensEnv(t, local, nil, "fsck")
	require.Equal(t, 0, code, out)

	out, stderr, code = lensEnv(t, local, nil, "sweep", "status", "sw")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "6 trials: 6 done")
	require.Contains(t, out, "sw/lr=0.02,r=8")

	// Running the script again trains nothing: every run is found done.
	out, stderr, code = lensEnv(t, local, nil, "run", "a.star", "--", "backend=local")
	require.Equal(t, 0, code, stderr)
	require.NotContains(t, out, "trials, backend local")
	sl = openRO(t, local)
	list, err = sl.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 6)
}

// TestSweepHalvingLocalStopsLosers plants two trials whose learning rate
// is too small to learn anything: successive halving across processes
// must stop exactly those at the first rung (they end "stopped", not
// "failed", with their metrics up to where they were stopped) and let the
// others train to the end.
func TestSweepHalvingLocalStopsLosers(t *testing.T) {
	script := sweepScript + `pts = [{"lr": 1e-6, "r": 4}, {"lr": 2e-2, "r": 4}, {"lr": 1e-6, "r": 2}, {"lr": 2e-2, "r": 2}]
out = successive_halving("sh", pts, train, steps = 1000, rungs = 2, eta = 2, backend = "local", workers = 4)
print("RUNG0", sorted([r.config["lr"] for r in out["rungs"][0]]))
print("RUNG1", [r.config["lr"] for r in out["rungs"][1]])
print("BEST", out["best"].config["lr"], out["best"].status)
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	out, stderr, code := lensEnv(t, dir, nil, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "RUNG0 [1e-06, 1e-06, 0.02, 0.02]")
	require.Contains(t, out, "RUNG1 [0.02, 0.02]")
	require.Contains(t, out, "BEST 0.02 done")
	st := openRO(t, dir)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 4)
	for _, m := range list {
		spec, err := runs.SpecOf(m)
		require.NoError(t, err)
		if spec.Train.LR < 1e-3 {
			require.Equal(t, kv.StatusStopped, m.Status, m.Name)
			require.Contains(t, m.Reason, "successive halving at rung 0 (step 500)")
			require.GreaterOrEqual(t, m.Steps, 500, "stopped after the rung")
			require.Less(t, m.Steps, 1000, "stopped before the end")
		} else {
			require.Equal(t, kv.StatusDone, m.Status, m.Name)
			require.Equal(t, 1000, m.Steps)
		}
		requireEveryStepOnce(t, st, m)
	}
	out, _, _ = lensEnv(t, dir, nil, "sweep", "status", "sh")
	require.Contains(t, out, "4 trials: 2 done, 2 stopped")
}

func TestSweepBadScripts(t *testing.T) {
	cases := []struct{ name, code, want string }{
		{"workers=0 in run_sweep", `run_sweep("w", grid(r = [2]), train, backend = "local", workers = 0)`, "workers=0: want at least 1"},
		{"workers=0 in lens.sweep", `lens.sweep("w", grid(r = [2]), train, backend = "local", workers = 0)`, "workers=0: want at least 1"},
		{"unknown backend", `run_sweep("w", grid(r = [2]), train, backend = "cluster")`, `backend "cluster": want inline, local or slurm`},
		{"slurm options on local", `run_sweep("w", grid(r = [2]), train, backend = "local", slurm = {"partition": "x"})`, `slurm= is for backend "slurm"`},
		{"unknown slurm option", `run_sweep("w", grid(r = [2]), train, backend = "slurm", slurm = {"partitoin": "x"})`, `unknown key "partitoin"`},
		{"script collector", `run_sweep("w", grid(r = [2]), train, backend = "local", collect = [lens.collector("mine", lambda v: {})])`,
			`collector "mine" is written in the script`},
		{"train reads its run", `run_sweep("w", grid(r = [2]), lambda **kw: train(**kw).final_loss, backend = "local")`, "has not trained yet"},
		{"halving too short", `successive_halving("h", grid(r = [2, 4]), train, steps = 3, rungs = 3, eta = 2, backend = "local")`, "too small for 3 rungs"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": sweepScript + c.code + "\n"})
			_, stderr, code := lensEnv(t, dir, nil, "run", "a.star")
			require.Equal(t, 1, code, stderr)
			require.Contains(t, stderr, c.want)
			st := openRO(t, dir)
			list, err := st.ListRuns()
			require.NoError(t, err)
			require.Empty(t, list, "nothing trained")
		})
	}
	out, stderr, code := lensEnv(t, t.TempDir(), nil, "run", "--backend", "cloud", "x.star")
	require.Equal(t, 2, code, out+stderr)
	require.Contains(t, stderr, `--backend "cloud"`)
}

// rawShard opens a shard with Badger itself, to damage it behind lens's
// back.
func rawShard(t *testing.T, dir string, fn func(txn *badger.Txn) error) {
	t.Helper()
	db, err := badger.Open(badger.DefaultOptions(dir).WithLogger(nil).WithValueLogFileSize(kv.MaxValueBytes))
	require.NoError(t, err)
	require.NoError(t, db.Update(fn))
	require.NoError(t, db.Close())
}

// TestMergeBadShards: a shard of another store format version and a
// corrupt shard each fail with a clear error and merge nothing; a good
// shard given in the same command is still merged.
func TestMergeBadShards(t *testing.T) {
	script := sweepScript + `run_sweep("one", grid(r = [2]), train, workers = 1, steps = 20)` + "\n"
	src := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	out, stderr, code := lensEnv(t, src, nil, "run", "--backend", "local", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "1 trials, backend local", "--backend sets the default")
	shards, err := filepath.Glob(filepath.Join(src, ".lens", "sweeps", "one", "shards", "*"))
	require.NoError(t, err)
	require.Len(t, shards, 1)
	dir := t.TempDir()
	copyDir := func(name string) string {
		dst := filepath.Join(dir, name)
		require.NoError(t, os.CopyFS(dst, os.DirFS(shards[0])))
		return dst
	}
	good, newer, corrupt := copyDir("good"), copyDir("newer"), copyDir("corrupt")
	rawShard(t, newer, func(txn *badger.Txn) error { return txn.Set([]byte("store/version"), []byte("99")) })
	rawShard(t, corrupt, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("run/")})
		defer it.Close()
		tensor := regexp.MustCompile(`/ckpt/.*/t/`)
		for it.Rewind(); it.Valid(); it.Next() {
			if k := it.Item().KeyCopy(nil); tensor.Match(k) {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				v[len(v)-1] ^= 0x55
				return txn.Set(k, v)
			}
		}
		return fmt.Errorf("no checkpoint tensor found")
	})

	ws := workspace(t, nil)
	out, stderr, code = lensEnv(t, ws, nil, "merge", newer, corrupt)
	require.Equal(t, 1, code, out+stderr)
	require.Contains(t, stderr, fmt.Sprintf("format version 99 but this lens reads version %d", kv.FormatVersion))
	require.Contains(t, stderr, "nothing merged")
	require.Contains(t, stderr, "checksum")
	require.Contains(t, stderr, "2 of 2 shards not merged")
	st, err := kv.Open(filepath.Join(ws, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Empty(t, list)
	st.Close()
	out, _, code = lensEnv(t, ws, nil, "fsck")
	require.Equal(t, 0, code, "no half-merged keys: %s", out)

	out, stderr, code = lensEnv(t, ws, nil, "merge", corrupt, good)
	require.Equal(t, 1, code, out+stderr)
	require.Contains(t, out, ": added")
	st = openRO(t, ws)
	list, err = st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 1)
	require.Equal(t, "one/r=2", list[0].Name)
	requireEveryStepOnce(t, st, list[0])
	// The base model came along: the merged run's weights load.
	_, ad, _, err := runs.Weights(st, list[0].ID, -1)
	require.NoError(t, err)
	require.NotEmpty(t, ad.Modules)
}

// readSweep reads sweep.json without the sweep package's own checks.
func readSweep(t *testing.T, dir string) *sweep.Sweep {
	t.Helper()
	b, err := os.ReadFile(filepath.Join(dir, "sweep.json"))
	if err != nil {
		return nil
	}
	var s sweep.Sweep
	if json.Unmarshal(b, &s) != nil {
		return nil
	}
	return &s
}

// TestSweepInterruptedResumes interrupts `lens run` during a local sweep:
// every trial checkpoints and ends cancelled, what ended is merged, and
// running the script again resumes the trials from their checkpoints to
// runs that hold every step exactly once.
func TestSweepInterruptedResumes(t *testing.T) {
	script := sweepScript + `runs = run_sweep("int", grid(r = [2, 4]), train, backend = "local", workers = 2, steps = 1000)
print("RESULT", [(r.status, r.steps) for r in runs])
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	cmd := exec.Command(lensBin, "run", "a.star")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LENS_STORE=")
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	sweepDir := filepath.Join(dir, ".lens", "sweeps", "int")
	deadline := time.Now().Add(time.Minute)
	for time.Now().Before(deadline) {
		time.Sleep(100 * time.Millisecond)
		n := 0
		ps, _ := filepath.Glob(filepath.Join(sweepDir, "trials", "*", "progress.json"))
		for _, p := range ps {
			var pr sweep.Progress
			if b, err := os.ReadFile(p); err == nil && json.Unmarshal(b, &pr) == nil && pr.Step >= 150 {
				n++
			}
		}
		if n == 2 {
			break
		}
	}
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	require.Error(t, err, "an interrupted sweep exits non-zero:\n%s%s", out.String(), errb.String())
	require.Contains(t, out.String(), "interrupted; stopping 2 trials")
	require.Contains(t, errb.String(), "run it again to resume the rest")
	sw := readSweep(t, sweepDir)
	require.NotNil(t, sw)
	st := openRO(t, dir)
	for _, tr := range sw.Trials {
		require.Equal(t, sweep.StateCancelled, tr.State)
		m, err := st.FindRun(tr.Name)
		require.NoError(t, err, "a cancelled trial is merged too")
		require.Equal(t, kv.StatusCancelled, m.Status)
		require.Greater(t, m.Steps, 100)
		require.Less(t, m.Steps, 1000)
	}
	st.Close()

	o, stderr, code := lensEnv(t, dir, nil, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, o, `RESULT [("done", 1000), ("done", 1000)]`)
	logs, _ := filepath.Glob(filepath.Join(sweepDir, "logs", "*.log"))
	require.Len(t, logs, 2)
	for _, l := range logs {
		b, _ := os.ReadFile(l)
		require.Regexp(t, `resuming run \S+ from step [1-9]\d*`, string(b))
	}
	st = openRO(t, dir)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 2)
	for _, m := range list {
		requireEveryStepOnce(t, st, m)
	}
}

// A sweep trial trains in a store of its own, so it cannot start from a
// run of the workspace; the error says what to pass instead.
func TestSweepInitFromRun(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": sweepScript +
		"prev = train(steps = 2, name = \"prev\")\nrun_sweep(\"w\", grid(r = [4]), train, backend = \"local\", init = prev)\n"})
	_, stderr, code := lensEnv(t, dir, nil, "run", "a.star")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "for parameter \"init\": a sweep trial runs in a store of its own")
	require.Contains(t, stderr, "hf.export_adapter")
	st := openRO(t, dir)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 1, "only prev trained")
}
