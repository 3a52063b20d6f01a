package train

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/safetensors"
	"lens/engine/sft"
)

// TestEvalExampleBatches checks that held-out examples evaluated in
// right-padded batches give the mean loss over their trained tokens that
// each example gives alone in a graph of its own length, without padding:
// padding is never attended to and never scored, and batches are weighed
// by their counted targets.
func TestEvalExampleBatches(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}, 4)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	const B, T = 4, 16
	var rows []sft.Row
	for _, n := range []int{17, 5, 9, 2, 13, 11, 3} { // 7 rows: the second batch has a filler row
		r := sft.Row{Where: "row"}
		for i := range n {
			tk := int32(rng.IntN(cfg.VocabSize))
			r.Tokens = append(r.Tokens, tk)
			if i < n/3 {
				tk = sft.Ignore // a prompt
			}
			r.Labels = append(r.Labels, tk)
		}
		rows = append(rows, r)
	}
	bs, err := sft.EvalBatches(rows, B, T)
	require.NoError(t, err)
	tb, err := sft.NewBatcher(rows, B, T, 0)
	require.NoError(t, err)
	tr, err := New(m, ad, tb, []EvalSet{{Name: "ex", Batches: bs}}, Config{BatchSize: B, SeqLen: T})
	require.NoError(t, err)
	defer tr.Close()
	got, err := tr.Evaluate()
	require.NoError(t, err)

	var sum float64
	var count int
	for _, r := range rows {
		n := len(r.Tokens) - 1
		f, err := newForwardNet(m, ad, 1, n, 1, false, 0)
		require.NoError(t, err)
		f.feed.Inputs, f.feed.Targets = r.Tokens[:n], r.Labels[1:]
		l, err := f.mach.Run()
		require.NoError(t, err)
		f.mach.Close()
		sum += l * float64(r.Trained())
		count += r.Trained()
	}
	want := sum / float64(count)
	require.InDelta(t, want, got["ex"], 1e-5*want)

	// The device path (accel's plain-Go Host device) scores them alike.
	tb2, err := sft.NewBatcher(rows, B, T, 0)
	require.NoError(t, err)
	onDev, err := New(m, ad, tb2, []EvalSet{{Name: "ex", Batches: bs}}, Config{BatchSize: B, SeqLen: T})
	require.NoError(t, err)
	defer onDev.Close()
	require.NoError(t, onDev.UseDevice(accel.Host{}))
	gotDev, err := onDev.Evaluate()
	require.NoError(t, err)
	require.InDelta(t, want, gotDev["ex"], 1e-5*want)

	res, err := evalBatches(bs, B, T, 1, func(in, tg []int32) (float64, error) { return tr.evalNet.run(in, tg) })
	require.NoError(t, err)
	require.Equal(t, 4, res.Windows, "eval_batches caps the batches")
	_, err = evalBatches(bs, B, 8, 0, nil)
	require.ErrorContains(t, err, "want batch_size×seq_len = 4×8")
}

const python = "/usr/bin/python3"

func torchRef(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "torchref")
}

func relErr(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / math.Max(n, 1e-30))
}

// TestExampleStepMatchesPyTorch: the trainer's loss and every LoRA
// gradient on a right-padded batch of examples with masked prompts equal
// PyTorch's on the same examples unpadded, with HF's shifted labels and
// -100 ignore index (testdata/torchref/sft_ref.py), to 1e-4.
func TestExampleStepMatchesPyTorch(t *testing.T) {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v (install python3-torch python3-numpy)", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
	dir := t.TempDir()
	out, err := exec.Command(python, filepath.Join(torchRef(t), "make_case.py"), "--out", dir, "--seed", "11",
		"--untied", "--kv-heads", "2", "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj").CombinedOutput()
	require.NoError(t, err, "make_case: %s", out)
	m, err := model.Load(filepath.Join(dir, "model"))
	require.NoError(t, err)
	ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
	require.NoError(t, err)

	const B, T = 4, 16
	rng := rand.New(rand.NewPCG(7, 8))
	var rows []sft.Row
	ref := struct {
		InputIDs [][]int32 `json:"input_ids"`
		Labels   [][]int32 `json:"labels"`
	}{}
	for _, n := range []int{17, 6, 11, 9} { // the first fills its row, the others are padded
		var r sft.Row
		prompt := 1 + rng.IntN(n/2)
		for i := range n {
			tk := int32(rng.IntN(m.Config.VocabSize))
			r.Tokens = append(r.Tokens, tk)
			if i < prompt {
				tk = sft.Ignore
			}
			r.Labels = append(r.Labels, tk)
		}
		rows = append(rows, r)
		hf := make([]int32, n)
		for i, l := range r.Labels {
			hf[i] = l
			if l < 0 {
				hf[i] = -100
			}
		}
		ref.InputIDs, ref.Labels = append(ref.InputIDs, r.Tokens), append(ref.Labels, hf)
	}
	b, err := json.Marshal(ref)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "examples.json"), b, 0o644))
	refOut := filepath.Join(dir, "ref.safetensors")
	out, err = exec.Command(python, filepath.Join(torchRef(t), "sft_ref.py"), "--model", filepath.Join(dir, "model"),
		"--adapter", filepath.Join(dir, "adapter"), "--examples", filepath.Join(dir, "examples.json"), "--out", refOut).CombinedOutput()
	require.NoError(t, err, "sft_ref: %s", out)
	want, err := safetensors.ReadFile(refOut)
	require.NoError(t, err)

	batches, err := sft.NewBatcher(rows, B, T, 0)
	require.NoError(t, err)
	tr, err := New(m, ad, batches, nil, Config{BatchSize: B, SeqLen: T, LR: 1e-3})
	require.NoError(t, err)
	defer tr.Close()
	grads := map[string][]float32{}
	var loss float64
	tr.AddHooks(Hooks{AfterBackward: func(tr *Trainer, s *StepInfo) error {
		loss = s.Loss
		for _, p := range tr.Params {
			grads[p.Name] = append([]float32(nil), p.Grad...)
		}
		return nil
	}})
	_, err = tr.TrainStep()
	require.NoError(t, err)

	wl, _, err := want.Float32("loss")
	require.NoError(t, err)
	require.InEpsilon(t, float64(wl[0]), loss, 1e-4, "loss")
	require.Len(t, grads, 2*len(ad.Modules))
	for name, g := range grads {
		mod, which, _ := strings.Cut(name, ".lora_")
		wg, _, err := want.Float32("base_model.model." + mod + ".lora_" + which + ".weight")
		require.NoError(t, err, "reference gradient of %s", name)
		require.Greater(t, relErr(wg, make([]float32, len(wg))), 0.0, "reference gradient %s is zero", name)
		e := relErr(g, wg)
		require.Less(t, e, 1e-4, "gradient %s: relative error %.2g", name, e)
	}
	t.Logf("loss %.6f (torch %.6f), %d gradients match", loss, wl[0], len(grads))
}
