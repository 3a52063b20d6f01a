package main

import (
	"bytes"
	"encoding/json"
	"math"
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

var lensBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lens-bin")
	if err != nil {
		panic(err)
	}
	lensBin = filepath.Join(dir, "lens")
	out, err := exec.Command("go", "build", "-o", lensBin, ".").CombinedOutput()
	if err != nil {
		panic(string(out))
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// workspace makes a temp dir holding the given files and returns it.
func workspace(t *testing.T, files map[string]string) string {
	t.Helper()
	dir := t.TempDir()
	for name, body := range files {
		p := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(filepath.Dir(p), 0o755))
		require.NoError(t, os.WriteFile(p, []byte(body), 0o644))
	}
	return dir
}

// lens runs the binary in dir and returns stdout, stderr and the exit code.
func lens(t *testing.T, dir string, args ...string) (string, string, int) {
	t.Helper()
	cmd := exec.Command(lensBin, args...)
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "LENS_STORE=")
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

// A tiny model and run settings that train in a second or two.
const tinyScript = `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
def train(steps = 6, **kw):
    return lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = 4, alpha = 8, targets = ["q_proj", "v_proj"]),
                      steps = steps, batch_size = 4, seq_len = 32, lr = 1e-2, eval_every = 3, checkpoint_every = 3, **kw)
`

func corpus() string {
	return strings.Repeat("The quick brown fox jumps over the lazy dog; light is refracted by the prism. ", 200)
}

func TestRunListShowAndReuse(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star":     tinyScript + "r = train(name = lens.args.get('name', 'x'))\nprint('RESULT', r.status, r.steps, len(r.metrics('loss')), r.final_loss < r.eval_loss(step = 0))\n",
	})
	out, stderr, code := lens(t, dir, "run", "a.star", "--", "name=first")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "RESULT done 6 6 True")
	out, _, code = lens(t, dir, "runs")
	require.Equal(t, 0, code)
	require.Contains(t, out, "first")
	require.Contains(t, out, "done")
	out, stderr, code = lens(t, dir, "show", "first")
	require.Equal(t, 0, code, stderr)
	for _, want := range []string{"status   done", "eval/corpus.txt", "loss", "grad_norm", "checkpoints"} {
		require.Contains(t, out, want)
	}
	out, _, code = lens(t, dir, "fsck")
	require.Equal(t, 0, code)
	require.Contains(t, out, "no problems")
	out, _, code = lens(t, dir, "rm", "first")
	require.Equal(t, 0, code)
	require.Contains(t, out, "deleted")
	out, _, _ = lens(t, dir, "runs")
	require.NotContains(t, out, "first")
}

func TestExportEvalRoundTrip(t *testing.T) {
	text := corpus()
	dir := workspace(t, map[string]string{
		"corpus.txt": text,
		"a.star":     tinyScript + "r = train(name = 'rt', eval_batches = 0)\nprint('EVAL', r.eval_loss())\n",
	})
	out, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	var runLoss float64
	for _, l := range strings.Split(out, "\n") {
		if s, ok := strings.CutPrefix(l, "EVAL "); ok {
			require.NoError(t, json.Unmarshal([]byte(s), &runLoss))
		}
	}
	require.NotZero(t, runLoss)
	_, stderr, code = lens(t, dir, "export", "rt", "--out", "exp", "--with-base")
	require.Equal(t, 0, code, stderr)
	require.FileExists(t, filepath.Join(dir, "exp/adapter/adapter_config.json"))
	require.FileExists(t, filepath.Join(dir, "exp/adapter/adapter_model.safetensors"))
	require.FileExists(t, filepath.Join(dir, "exp/base/model.safetensors"))
	// The run evaluates on the held-out tail (5%) of the corpus.
	n := int(math.Round(float64(len(text)) * 0.95))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tail.txt"), []byte(text[n:]), 0o644))
	out, stderr, code = lens(t, dir, "eval", "--model", "exp/base", "--adapter", "exp/adapter", "--text", "tail.txt", "--seq-len", "32", "--json")
	require.Equal(t, 0, code, stderr)
	var r struct{ Loss float64 }
	require.NoError(t, json.Unmarshal([]byte(out), &r))
	require.InEpsilon(t, runLoss, r.Loss, 1e-5)
	// Without the adapter the loss is the base model's, which is different.
	out, _, code = lens(t, dir, "eval", "--model", "exp/base", "--text", "tail.txt", "--seq-len", "32", "--json")
	require.Equal(t, 0, code)
	var b struct{ Loss float64 }
	require.NoError(t, json.Unmarshal([]byte(out), &b))
	require.Greater(t, b.Loss, r.Loss)
}

func TestSigintCancelsWithCheckpoint(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star":     tinyScript + "train(name = 'long', steps = 100000)\n",
	})
	cmd := exec.Command(lensBin, "run", "a.star")
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	require.NoError(t, cmd.Start())
	// Wait until the run has a checkpoint, then interrupt.
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) {
		time.Sleep(300 * time.Millisecond)
		if strings.Contains(errb.String(), "step 3") || strings.Contains(errb.String(), "step 4") {
			break
		}
	}
	time.Sleep(500 * time.Millisecond)
	require.NoError(t, cmd.Process.Signal(syscall.SIGINT))
	err := cmd.Wait()
	require.Error(t, err, "an interrupted run exits non-zero")
	require.Contains(t, errb.String(), "cancelled")
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	m, err := st.FindRun("long")
	require.NoError(t, err)
	require.Equal(t, kv.StatusCancelled, m.Status)
	require.Greater(t, m.Steps, 0)
	base, ad, cm, err := runs.Weights(st, m.ID, -1)
	require.NoError(t, err)
	require.Equal(t, m.Steps, cm.Step, "the last checkpoint is at the step reached")
	require.NotNil(t, base)
	require.NotEmpty(t, ad.Modules)
}

func TestREPL(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "lib.star": "def double(x):\n    return 2 * x\n"})
	run := func(input string) string {
		cmd := exec.Command(lensBin, "repl")
		cmd.Dir = dir
		cmd.Stdin = strings.NewReader(input)
		out, err := cmd.CombinedOutput()
		require.NoError(t, err, string(out))
		return string(out)
	}
	out := run("x = 21\nprint(x * 2)\nload('lib.star', 'double')\ndouble(x)\nlen(lens.runs())\nundefined_name\nexit()\n")
	require.Contains(t, out, "42\n")
	require.Contains(t, out, "0\n", "lens.runs() on an empty store")
	require.Contains(t, out, "undefined: undefined_name")
	hist, err := os.ReadFile(filepath.Join(dir, ".lens", "repl_history"))
	require.NoError(t, err)
	require.Contains(t, string(hist), "print(x * 2)")
	// A second session sees the first one's history.
	out = run("print('again')\n")
	require.Contains(t, out, "again")
	hist, _ = os.ReadFile(filepath.Join(dir, ".lens", "repl_history"))
	require.Contains(t, string(hist), "x = 21")
	require.Contains(t, string(hist), "print('again')")
}

func TestBadInput(t *testing.T) {
	good := tinyScript + "train(name = 'good')\n"
	cases := []struct {
		name   string
		script string
		args   []string
		code   int
		want   []string
	}{
		{"syntax error", "x = = 1\n", nil, 1, []string{"bad.star:1:5", "syntax error"}},
		{"unknown keyword", tinyScript + "train(bogus = 1)\n", nil, 1, []string{"unexpected keyword argument \"bogus\"", "bad.star:"}},
		{"wrong type", tinyScript + "train(lr = 'fast')\n", nil, 1, []string{"for parameter \"lr\"", "string", "float64"}},
		{"rank zero", tinyScript + "lora.config(r = 0)\n", nil, 1, []string{"r = 0", "must be positive", "bad.star:6"}},
		{"missing data file", "data.text('nope.txt')\n", nil, 1, []string{"nope.txt", "no such file"}},
		{"load outside", "load('../outside.star', 'x')\n", nil, 1, []string{"outside the workspace"}},
		{"load cycle", "load('c1.star', 'x')\n", nil, 1, []string{"load cycle"}},
		{"negative lr", tinyScript + "train(lr = -1.0)\n", nil, 1, []string{"lr = -1", "must be positive"}},
		{"seq len zero", tinyScript + "train(seq_len = 0)\n", nil, 1, []string{"seq_len"}},
		{"bad script arg", good, []string{"--", "novalue"}, 2, []string{"not KEY=VALUE"}},
	}
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(), "good.star": good,
		"c1.star": "load('c2.star', 'y')\nx = 1\n", "c2.star": "load('c1.star', 'x')\ny = 1\n",
	})
	_, stderr, code := lens(t, dir, "run", "good.star")
	require.Equal(t, 0, code, stderr)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.star"), []byte(tc.script), 0o644))
			out, stderr, code := lens(t, dir, append([]string{"run", "bad.star"}, tc.args...)...)
			require.Equal(t, tc.code, code, out+stderr)
			for _, w := range tc.want {
				require.Contains(t, stderr, w)
			}
			require.NotContains(t, stderr, "panic")
			// The store still opens and the good run is intact.
			out, _, code = lens(t, dir, "show", "good")
			require.Equal(t, 0, code)
			require.Contains(t, out, "status   done")
		})
	}
}

func TestStoreErrors(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": tinyScript + "train(name = 'x', steps = 100000)\n", "b.star": tinyScript + "train(name = 'y', steps = 3)\n", "reader.star": "print('runs', len(lens.runs()))\n", "afile": "not a dir"})
	// A store path that cannot be a directory.
	_, stderr, code := lens(t, dir, "run", "--store", "afile/store", "b.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "afile")
	require.NotContains(t, stderr, "goroutine")
	// A second writer while the first trains.
	cmd := exec.Command(lensBin, "run", "a.star")
	cmd.Dir = dir
	var errb bytes.Buffer
	cmd.Stderr = &errb
	require.NoError(t, cmd.Start())
	defer func() { cmd.Process.Signal(syscall.SIGINT); cmd.Wait() }()
	deadline := time.Now().Add(60 * time.Second)
	for time.Now().Before(deadline) && !strings.Contains(errb.String(), "step 1") {
		time.Sleep(200 * time.Millisecond)
	}
	_, stderr, code = lens(t, dir, "run", "b.star")
	require.Equal(t, 1, code, stderr+"\nwriter: "+errb.String())
	require.Contains(t, stderr, "in use by pid")
	require.Contains(t, stderr, "lens run a.star")
	require.NotContains(t, stderr, "Cannot acquire directory lock")
	// Readers work meanwhile: the CLI and a script that only reads.
	out, stderr, code := lens(t, dir, "runs")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "running")
	out, stderr, code = lens(t, dir, "show", "x")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "status   running")
	out, stderr, code = lens(t, dir, "run", "reader.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "runs 1")
	require.Contains(t, stderr, "reads a snapshot")
}

// device="auto" trains on the CPU in a build without a CUDA backend and
// says so once, however many runs the script starts.
func TestDeviceAutoFallsBack(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(),
		"d.star": tinyScript + "a = train(name = 'a', steps = 2, device = 'auto')\nb = train(name = 'b', steps = 2)\nprint(a.config['device'], b.config['device'])\n"})
	out, stderr, code := lens(t, dir, "run", "--device", "auto", "d.star")
	require.Equal(t, 0, code, stderr)
	require.Equal(t, 1, strings.Count(out+stderr, "device auto: training on the CPU"), out+stderr)
	require.Contains(t, out, "cpu cpu")
}
