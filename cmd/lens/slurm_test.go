package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// slurmCluster makes sure the one-node test cluster of testdata/slurm is
// up and returns the environment its clients need. It starts the cluster
// with testdata/slurm/start.sh when it is down (and stops it after the
// test), and skips the test when that cannot work here.
func slurmCluster(t *testing.T) []string {
	t.Helper()
	conf, err := filepath.Abs("../../testdata/slurm/slurm.conf")
	require.NoError(t, err)
	env := []string{"SLURM_CONF=" + conf}
	up := func() bool {
		cmd := exec.Command("sinfo", "-h", "-o", "%T")
		cmd.Env = append(os.Environ(), env...)
		out, err := cmd.Output()
		s := string(out)
		return err == nil && (strings.Contains(s, "idle") || strings.Contains(s, "mixed") || strings.Contains(s, "allocated"))
	}
	if up() {
		return env
	}
	for _, b := range []string{"sbatch", "squeue", "scancel", "sinfo"} {
		if _, err := exec.LookPath(b); err != nil {
			t.Skipf("Slurm test skipped: %s is not installed (apt-get install slurmctld slurmd slurm-client munge; .ci/run does)", b)
		}
	}
	if os.Geteuid() != 0 {
		t.Skip("Slurm test skipped: the test cluster is down and starting it (testdata/slurm/start.sh) needs root")
	}
	out, err := exec.Command("bash", "../../testdata/slurm/start.sh").CombinedOutput()
	if err != nil {
		t.Skipf("Slurm test skipped: the test cluster did not start:\n%s", out)
	}
	t.Cleanup(func() { exec.Command("bash", "../../testdata/slurm/stop.sh").Run() })
	require.True(t, up(), "start.sh succeeded but sinfo shows no idle node")
	return env
}

// TestSweepSlurm runs a 4-trial sweep as a Slurm array job on a real
// one-node cluster. One task is cancelled with scancel mid-training; the
// sweep resubmits it, it resumes from its checkpoint, and its run ends
// with every step exactly once and the same weights and metrics as the
// same trial trained inline without interruption. Another task is
// requeued with scontrol; Slurm reruns it and it resumes the same way.
func TestSweepSlurm(t *testing.T) {
	if testing.Short() {
		t.Skip("Slurm sweep test skipped in -short mode (it takes about a minute)")
	}
	env := slurmCluster(t)
	script := sweepScript + `runs = run_sweep("sl", grid(r = [2, 4], lr = [1e-2, 2e-2]), train, backend = "slurm", workers = 2, retries = 2,
                 steps = 1000, slurm = {"partition": "debug", "cpus_per_task": 1, "mem": "500M", "time": "00:10:00"})
print("RESULT", sorted([(r.name, r.status, r.steps) for r in runs]))
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script,
		"ref.star": sweepScript + `for i in range(2):
    train(name = "ref%d" % i, r = int(lens.args["r%d" % i]), lr = float(lens.args["lr%d" % i]), steps = 1000)
`})
	cmd := exec.Command(lensBin, "run", "a.star")
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "LENS_STORE="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	require.NoError(t, cmd.Start())
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	t.Cleanup(func() {
		if cmd.ProcessState == nil {
			cmd.Process.Kill()
		}
	})

	// Once two tasks are past their first checkpoint (step 100), cancel
	// one with scancel (the sweep resubmits it) and requeue the other with
	// scontrol (Slurm reruns it; StartTime=now skips the requeue delay).
	sweepDir := filepath.Join(dir, ".lens", "sweeps", "sl")
	var victims []string // trial ids: scancelled, requeued
	jobs := map[string]string{}
	stepRe := regexp.MustCompile(`step (\d+)/1000`)
	deadline := time.Now().Add(3 * time.Minute)
	for len(victims) < 2 && time.Now().Before(deadline) {
		time.Sleep(200 * time.Millisecond)
		victims = victims[:0]
		sw := readSweep(t, sweepDir)
		if sw == nil {
			continue
		}
		for _, tr := range sw.Trials {
			if tr.Job == "" {
				continue
			}
			log, _ := os.ReadFile(filepath.Join(sweepDir, "logs", tr.Job+".out"))
			m := stepRe.FindAllSubmatch(log, -1)
			if len(m) == 0 {
				continue
			}
			if step, _ := strconv.Atoi(string(m[len(m)-1][1])); step >= 300 && step < 700 && len(victims) < 2 {
				victims = append(victims, tr.ID)
				jobs[tr.ID] = tr.Job
			}
		}
	}
	require.Len(t, victims, 2, "two tasks did not reach step 300 together; lens run says:\n%s%s", out.String(), errb.String())
	slurmCmd := func(args ...string) {
		c := exec.Command(args[0], args[1:]...)
		c.Env = append(os.Environ(), env...)
		b, err := c.CombinedOutput()
		require.NoError(t, err, "%v: %s", args, b)
	}
	slurmCmd("scancel", jobs[victims[0]])
	slurmCmd("scontrol", "requeue", jobs[victims[1]])
	// Slurm holds a requeued job back for a while (BeginTime); once it is
	// pending again, let it start now.
	for end := time.Now().Add(time.Minute); time.Now().Before(end); time.Sleep(300 * time.Millisecond) {
		c := exec.Command("squeue", "-h", "-j", jobs[victims[1]], "-o", "%T %r")
		c.Env = append(os.Environ(), env...)
		b, _ := c.Output()
		if strings.HasPrefix(string(b), "PENDING") && strings.Contains(string(b), "BeginTime") {
			slurmCmd("scontrol", "update", "JobId="+jobs[victims[1]], "StartTime=now")
		}
		if strings.HasPrefix(string(b), "RUNNING") || strings.HasPrefix(string(b), "COMPLETED") {
			break
		}
	}

	select {
	case err := <-done:
		require.NoError(t, err, "lens run:\n%s%s", out.String(), errb.String())
	case <-time.After(4 * time.Minute):
		t.Fatalf("the sweep did not finish:\n%s%s", out.String(), errb.String())
	}
	require.Contains(t, out.String(), `RESULT [("sl/lr=0.01,r=2", "done", 1000), ("sl/lr=0.01,r=4", "done", 1000), ("sl/lr=0.02,r=2", "done", 1000), ("sl/lr=0.02,r=4", "done", 1000)]`)
	require.Contains(t, out.String(), "resubmitted (attempt 2 of 3)")
	t.Logf("lens run:\n%s", out.String())

	sw := readSweep(t, sweepDir)
	require.NotNil(t, sw)
	points := map[string]map[string]any{}
	for _, tr := range sw.Trials {
		var p map[string]any
		require.NoError(t, json.Unmarshal(tr.Point, &p))
		points[tr.ID] = p
		switch tr.ID {
		case victims[0]:
			require.Equal(t, 2, tr.Attempts, "the scancelled task was submitted again")
			require.NotEqual(t, jobs[tr.ID], tr.Job, "as a new array job")
		case victims[1]:
			require.Equal(t, 1, tr.Attempts, "Slurm itself reran the requeued task")
			require.Equal(t, jobs[tr.ID], tr.Job)
		default:
			require.Equal(t, 1, tr.Attempts)
		}
	}
	first, _ := os.ReadFile(filepath.Join(sweepDir, "logs", jobs[victims[0]]+".out"))
	require.Contains(t, string(first), "cancelled after", "the first attempt checkpointed on SIGTERM")
	logs, _ := filepath.Glob(filepath.Join(sweepDir, "logs", "*.out"))
	for _, v := range victims {
		resumed := false
		for _, l := range logs {
			b, _ := os.ReadFile(l)
			if m := regexp.MustCompile(`resuming run \S+-` + v + ` from step (\d+)`).FindSubmatch(b); m != nil {
				step, _ := strconv.Atoi(string(m[1]))
				require.GreaterOrEqual(t, step, 100, "trial %s resumed from a checkpoint, not from scratch", v)
				resumed = true
			}
		}
		require.True(t, resumed, "no log says trial %s resumed", v)
	}
	_, stderr, code := lensEnv(t, dir, nil, "fsck")
	require.Equal(t, 0, code, stderr)

	// The same trials trained inline, without interruption.
	var refArgs []string
	for i, v := range victims {
		refArgs = append(refArgs, fmt.Sprintf("r%d=%d", i, int(points[v]["r"].(float64))), fmt.Sprintf("lr%d=%g", i, points[v]["lr"].(float64)))
	}
	_, stderr, code = lensEnv(t, dir, nil, append([]string{"run", "ref.star", "--"}, refArgs...)...)
	require.Equal(t, 0, code, stderr)
	st := openRO(t, dir)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Len(t, list, 6, "four trials, each once, and two references")
	for _, m := range list {
		requireEveryStepOnce(t, st, m)
		for i, v := range victims {
			if strings.HasSuffix(m.ID, v) {
				require.Equal(t, kv.StatusDone, m.Status)
				ref, err := st.FindRun(fmt.Sprintf("ref%d", i))
				require.NoError(t, err)
				sameRun(t, st, ref, st, m)
			}
		}
	}

	out2, stderr, code := lensEnv(t, dir, env, "sweep", "status", "sl")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out2, "4 trials: 4 done")
	require.Contains(t, out2, victims[0])
}

// TestSweepSlurmRejected: when sbatch refuses the array job, the sweep
// fails with sbatch's own message and nothing is trained or merged.
func TestSweepSlurmRejected(t *testing.T) {
	env := slurmCluster(t)
	script := sweepScript + `run_sweep("bad", grid(r = [2, 4]), train, backend = "slurm", slurm = {"partition": "nope"})` + "\n"
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	_, stderr, code := lensEnv(t, dir, env, "run", "a.star")
	require.Equal(t, 1, code, stderr)
	require.Contains(t, stderr, "sbatch rejected the sweep's array job")
	require.Contains(t, stderr, "invalid partition specified: nope", "sbatch's message, verbatim")
	st := openRO(t, dir)
	list, err := st.ListRuns()
	require.NoError(t, err)
	require.Empty(t, list)
	sw := readSweep(t, filepath.Join(dir, ".lens", "sweeps", "bad"))
	require.NotNil(t, sw)
	for _, tr := range sw.Trials {
		require.Equal(t, "pending", tr.State, "a rejected submission leaves the trials to submit again")
		require.Zero(t, tr.Attempts)
	}
}
