package train

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/safetensors"
)

// These tests compare the trainer with PyTorch (testdata/torchref) where
// the package's other tests only compared its paths with each other: the
// optimizer step with clipping and weight decay, and the eval windows.

// torchScript is a testdata/torchref script, or a skip (a failure in CI)
// when /usr/bin/python3 has no PyTorch.
func torchScript(t *testing.T, script string) string {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v (install python3-torch python3-numpy)", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
	return filepath.Join(torchRef(t), script)
}

func runPy(t *testing.T, args ...string) {
	t.Helper()
	if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("%s: %v\n%s", filepath.Base(args[0]), err, out)
	}
}

// torchStep runs one step of the trainer and the same step in PyTorch
// (adamw_ref.py: clip_grad_norm_ over all parameters, then AdamW with decay
// only on the parameters the reference is told are matrices) from the
// trainer's own gradients, and requires the same weights after it.
func torchStep(t *testing.T, tr *Trainer) *StepInfo {
	t.Helper()
	script := torchScript(t, "adamw_ref.py")
	type param struct {
		Name  string    `json:"name"`
		Shape []int     `json:"shape"`
		Data  []float32 `json:"data"`
		Grad  []float32 `json:"grad"`
		Decay bool      `json:"decay"`
	}
	c := tr.Config
	in := map[string]any{"beta1": c.Beta1, "beta2": c.Beta2, "eps": c.Eps, "weight_decay": c.WeightDecay, "max_norm": c.ClipNorm}
	var ps []param
	tr.AddHooks(Hooks{AfterBackward: func(tr *Trainer, s *StepInfo) error {
		in["lr"] = s.LR
		for _, p := range tr.Params {
			// Decay is the reference's rule, not the trainer's flag: every
			// matrix, never a 1-D (norm) weight.
			ps = append(ps, param{p.Name, p.Shape, append([]float32(nil), p.Data...), append([]float32(nil), p.Grad...), len(p.Shape) >= 2})
		}
		return nil
	}})
	info, err := tr.TrainStep()
	require.NoError(t, err)
	in["params"] = ps
	dir := t.TempDir()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "step.json"), b, 0o644))
	runPy(t, script, "--in", filepath.Join(dir, "step.json"), "--out", filepath.Join(dir, "out.json"))
	var out struct {
		TotalNorm float64              `json:"total_norm"`
		Clipped   bool                 `json:"clipped"`
		Params    map[string][]float64 `json:"params"`
	}
	b, err = os.ReadFile(filepath.Join(dir, "out.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &out))
	require.InEpsilon(t, out.TotalNorm, info.GradNorm, 1e-6, "the recorded norm is the global L2 norm before clipping")
	require.Equal(t, out.Clipped, info.Clipped)
	for _, p := range tr.Params {
		want := out.Params[p.Name]
		require.Len(t, want, len(p.Data), p.Name)
		// Within float32 rounding of the weight and of the update (at most
		// lr); a decayed norm weight or a per-tensor clip is off by ~1e-3.
		for i, v := range p.Data {
			tol := 1e-6*math.Abs(want[i]) + 1e-5*info.LR
			require.InDelta(t, want[i], float64(v), tol, "%s[%d] after the step", p.Name, i)
		}
	}
	return info
}

func tinyModel(t *testing.T) *model.Model {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 3)
	require.NoError(t, err)
	// Norm weights other than 1, so that a decay on them shows.
	for name, w := range m.Weights {
		if len(w.Shape) == 1 {
			for i := range w.Data {
				w.Data[i] = 1 + 0.1*float32(i%7)
			}
			m.Weights[name] = w
		}
	}
	return m
}

func randomTokens(n int, seed uint64) []int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(rng.IntN(256))
	}
	return out
}

// TestClipGlobalNorm: with clip_norm below the step's gradient norm the
// step is clipped (StepInfo.Clipped) and every gradient is scaled by
// clip_norm / global norm, as torch.nn.utils.clip_grad_norm_ does; a
// per-tensor clip gives other weights. eps is large enough that Adam's
// first step depends on the gradient's scale (with eps → 0 it is sign(g)
// and no clipping would show). Without clipping, Clipped stays false.
func TestClipGlobalNorm(t *testing.T) {
	for _, tc := range []struct {
		name string
		clip float64
		want bool
	}{{"clipped", 1e-3, true}, {"not clipped", 1e6, false}} {
		t.Run(tc.name, func(t *testing.T) {
			m := tinyModel(t)
			ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj", "down_proj"}}, 4)
			require.NoError(t, err)
			// B ≠ 0, so that ∇A ≠ 0 and the tensors' norms differ.
			rng := rand.New(rand.NewPCG(2, 3))
			for _, b := range ad.B {
				for i := range b.Data {
					b.Data[i] = float32(0.1 * rng.NormFloat64())
				}
			}
			batches, err := data.NewBatcher(randomTokens(4096, 5), 2, 16, 1)
			require.NoError(t, err)
			tr, err := New(m, ad, batches, nil, Config{Steps: 1, BatchSize: 2, SeqLen: 16, LR: 1e-2, Schedule: "constant",
				Beta1: 0.9, Beta2: 0.999, Eps: 1e-4, ClipNorm: tc.clip})
			require.NoError(t, err)
			defer tr.Close()
			info := torchStep(t, tr)
			require.Equal(t, tc.want, info.Clipped)
		})
	}
}

// TestWeightDecayFullModel: full training with weight_decay > 0 decays the
// weight matrices and leaves the 1-D norm weights to plain Adam, as
// PyTorch's AdamW does with HF's parameter groups.
func TestWeightDecayFullModel(t *testing.T) {
	m := tinyModel(t)
	batches, err := data.NewBatcher(randomTokens(4096, 6), 2, 16, 1)
	require.NoError(t, err)
	tr, err := New(m, nil, batches, nil, Config{Steps: 1, BatchSize: 2, SeqLen: 16, LR: 1e-2, Schedule: "constant", Full: true,
		Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0.5})
	require.NoError(t, err)
	defer tr.Close()
	norms := 0
	for _, p := range tr.Params {
		if len(p.Shape) == 1 {
			norms++
		}
	}
	require.Equal(t, 2*2+1, norms, "the full model's norm weights are trained")
	torchStep(t, tr)
}

// TestEvalMatchesPyTorch: the run's evaluation (train.Evaluate and a
// trainer's eval set, which share the window function) scores seq_len
// targets in each window of seq_len inputs, consecutive windows starting
// seq_len tokens apart, and gives the same mean loss and token count as
// PyTorch (llama_ref.py) on the same windows of a random HF model with an
// adapter.
func TestEvalMatchesPyTorch(t *testing.T) {
	makeCase, ref := torchScript(t, "make_case.py"), torchScript(t, "llama_ref.py")
	dir := t.TempDir()
	runPy(t, makeCase, "--out", dir, "--seed", "11", "--untied", "--heads", "4", "--kv-heads", "2", "--targets", "q_proj,v_proj")
	m, err := model.Load(filepath.Join(dir, "model"))
	require.NoError(t, err)
	ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
	require.NoError(t, err)

	const T = 16
	rng := rand.New(rand.NewPCG(12, 13))
	tokens := make([]int32, 5*T+7) // 5 windows and a partial one, dropped
	for i := range tokens {
		tokens[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	// The windows as the test states them: inputs tokens[w·T : w·T+T],
	// targets the next token of each.
	nw := (len(tokens) - 1) / T
	var batch struct {
		Inputs  [][]int32 `json:"inputs"`
		Targets [][]int32 `json:"targets"`
	}
	for w := range nw {
		batch.Inputs = append(batch.Inputs, tokens[w*T:w*T+T])
		batch.Targets = append(batch.Targets, tokens[w*T+1:w*T+T+1])
	}
	b, err := json.Marshal(batch)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "windows.json"), b, 0o644))
	out := filepath.Join(dir, "ref.safetensors")
	runPy(t, ref, "--model", filepath.Join(dir, "model"), "--batch", filepath.Join(dir, "windows.json"), "--adapter", filepath.Join(dir, "adapter"), "--out", out)
	want, err := safetensors.ReadFile(out)
	require.NoError(t, err)
	wl, _, err := want.Float32("loss")
	require.NoError(t, err)

	for _, batchSize := range []int{2, 5} { // a padded last batch, and one batch
		t.Run("batch "+strconv.Itoa(batchSize), func(t *testing.T) {
			r, err := Evaluate(m, ad, tokens, T, batchSize)
			require.NoError(t, err)
			require.Equal(t, nw*T, r.Tokens, "targets scored")
			require.Equal(t, nw, r.Windows)
			require.InEpsilon(t, float64(wl[0]), r.Loss, 1e-5, "loss vs PyTorch")

			tr, err := New(m, ad, nil, []EvalSet{{Name: "held", Tokens: tokens}}, Config{Steps: 1, BatchSize: batchSize, SeqLen: T})
			require.NoError(t, err)
			defer tr.Close()
			losses, err := tr.Evaluate()
			require.NoError(t, err)
			require.InEpsilon(t, float64(wl[0]), losses["held"], 1e-5, "the trainer's eval vs PyTorch")
		})
	}
}
