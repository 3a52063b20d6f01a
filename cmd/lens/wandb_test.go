package main

import (
	"bytes"
	"io/fs"
	"os"
	"os/exec"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/wandb"
	"lens/engine/wandb/wandbtest"
	"lens/kv"
)

const wandbKey = "wandb-cli-test-key-0123456789abcdef"

// lensWith runs the binary in dir with extra environment variables.
func lensWith(t *testing.T, dir string, env []string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(lensBin, args...)
	cmd.Dir = dir
	cmd.Env = append(append(os.Environ(), "LENS_STORE=", "WANDB_API_KEY=", "WANDB_BASE_URL="), env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	err := cmd.Run()
	code := 0
	if ee, ok := err.(*exec.ExitError); ok {
		code = ee.ExitCode()
	} else if err != nil {
		t.Fatal(err)
	}
	return out.String(), errb.String(), code
}

// requireSameSteps checks that the server's lines of run name are the
// store's metrics, one line per step, in order.
func requireSameSteps(t *testing.T, srv *wandbtest.Server, storeDir, project, name string) {
	t.Helper()
	st, err := kv.Open(storeDir, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	meta, err := st.FindRun(name)
	require.NoError(t, err)
	r := srv.Run(srv.Entity, project, wandb.RunID(meta.ID))
	require.NotNil(t, r, "run %s is on the server", name)
	require.Zero(t, r.Overlaps+r.Gaps)
	require.True(t, r.Complete)
	require.Equal(t, name, r.DisplayName)
	names, err := st.MetricNames(meta.ID)
	require.NoError(t, err)
	byStep := map[int]map[string]float64{}
	for _, n := range names {
		pts, err := st.ReadMetric(meta.ID, n)
		require.NoError(t, err)
		for _, p := range pts {
			if byStep[p.Step] == nil {
				byStep[p.Step] = map[string]float64{}
			}
			byStep[p.Step][n] = p.Value
		}
	}
	require.Len(t, r.Lines, len(byStep))
	prev := -1
	for _, l := range r.Lines {
		m, err := wandb.ParseLine(l)
		require.NoError(t, err)
		step := int(m["_step"])
		require.Greater(t, step, prev, "steps in order")
		prev = step
		for k, v := range byStep[step] {
			require.Equal(t, v, m[k], "%s at step %d", k, step)
		}
	}
}

// Scripts log live (online and offline); `lens wandb sync` uploads the
// offline folder and leaves the synced one alone; `lens wandb upload`
// sends a stored run; none of it shows the key.
func TestWandbCommands(t *testing.T) {
	srv := wandbtest.New(wandbKey)
	defer srv.Close()
	env := []string{"WANDB_API_KEY=" + wandbKey, "WANDB_BASE_URL=" + srv.URL}
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star": tinyScript + `
w = wandb.run(project = "proj")
train(name = "online", log_to = [w])
o = wandb.run(project = "proj", mode = "offline")
train(name = "offline", log_to = [o])
print("WANDB", w.mode, o.mode)
`,
		"nokey.star": tinyScript + `
train(name = "nokey", log_to = [wandb.run(project = "proj")])
`,
	})
	storeDir := filepath.Join(dir, ".lens")
	out, stderr, code := lensWith(t, dir, env, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "WANDB online offline")
	requireSameSteps(t, srv, storeDir, "proj", "online")
	require.Equal(t, 1, srv.Runs(), "the offline run stays local")

	out, stderr, code = lensWith(t, dir, env, "wandb", "sync")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "0 lines sent", "the online run's folder is already synced")
	require.Contains(t, out, "finished")
	requireSameSteps(t, srv, storeDir, "proj", "offline")

	out, stderr, code = lensWith(t, dir, env, "wandb", "upload", "online", "--project", "other")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "/other/runs/")
	requireSameSteps(t, srv, storeDir, "other", "online")
	out, _, code = lensWith(t, dir, env, "wandb", "upload", "online", "--project", "other")
	require.Equal(t, 0, code)
	require.Contains(t, out, "0 lines sent")

	// Without a key: the script goes offline and says so; the commands refuse.
	_, stderr, code = lensWith(t, dir, nil, "run", "nokey.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, stderr, "WANDB_API_KEY is not set; logging run")
	_, stderr, code = lensWith(t, dir, nil, "wandb", "sync")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "WANDB_API_KEY is not set")
	out, stderr, code = lensWith(t, dir, env, "wandb", "sync")
	require.Equal(t, 0, code, stderr)
	requireSameSteps(t, srv, storeDir, "proj", "nokey")

	cases := []struct {
		args []string
		code int
		msg  string
	}{
		{[]string{"wandb"}, 2, "want a subcommand"},
		{[]string{"wandb", "nope"}, 2, "unknown subcommand"},
		{[]string{"wandb", "upload", "online"}, 2, "--project"},
		{[]string{"wandb", "upload", "missing", "--project", "p"}, 1, "not found"},
		{[]string{"wandb", "sync", "no-such-dir"}, 1, "no-such-dir"},
	}
	for _, c := range cases {
		_, stderr, code := lensWith(t, dir, env, c.args...)
		require.Equal(t, c.code, code, "%v: %s", c.args, stderr)
		require.Contains(t, stderr, c.msg, "%v", c.args)
	}
	out, _, code = lensWith(t, dir, nil, "help", "wandb")
	require.Equal(t, 0, code)
	require.Contains(t, out, "lens wandb upload RUN --project P")

	require.Zero(t, srv.BadAuth())
	require.NoError(t, filepath.WalkDir(filepath.Join(storeDir, "wandb"), func(p string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() {
			return err
		}
		b, err := os.ReadFile(p)
		require.NotContains(t, string(b), wandbKey, p)
		return err
	}))
}

// An offline folder whose sync is cut off (the server refuses after a few
// chunks) is finished by a second `lens wandb sync`, each line once.
func TestWandbSyncResumes(t *testing.T) {
	srv := wandbtest.New(wandbKey)
	defer srv.Close()
	env := []string{"WANDB_API_KEY=" + wandbKey, "WANDB_BASE_URL=" + srv.URL}
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star": tinyScript + `
train(name = "off", steps = 12, log_to = [wandb.run(project = "proj", mode = "offline", dir = "wb")])
`,
	})
	_, stderr, code := lensWith(t, dir, env, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	srv.SetFault(func(r *wandbtest.Run, _ int) wandbtest.Fault {
		if len(r.Lines) >= 4 {
			return wandbtest.Unauthorized // not retried: the command stops at once
		}
		return wandbtest.OK
	})
	_, stderr, code = lensWith(t, dir, env, "wandb", "sync", "wb", "--chunk-lines", "3")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "run `lens wandb sync` again")
	srv.SetFault(nil)
	out, stderr, code := lensWith(t, dir, env, "wandb", "sync", "wb", "--chunk-lines", "3")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "7 lines sent, 6 already there")
	requireSameSteps(t, srv, filepath.Join(dir, ".lens"), "proj", "off")
}
