package main

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/safetensors"
)

const python = "/usr/bin/python3"

// torchRef is testdata/torchref at the repository root.
func torchRef() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "torchref")
}

// hfScript trains a run with LoRA on every linear module of a GQA model,
// exports its adapter with hf.export_adapter (latest and step 3), saves the
// base, and reads the adapter back with hf.load_adapter.
const hfScript = `
base = model.tiny(hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, num_attention_heads = 4, num_key_value_heads = 2, seed = 2)
r = lens.train(model = base, data = data.text("corpus.txt"), name = "interop",
               lora = lora.config(r = 4, alpha = 16, targets = ["q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"]),
               steps = 6, batch_size = 4, seq_len = 32, lr = 2e-2, checkpoint_every = 3)
print("DIR", hf.export_adapter(r, "adapter"))
hf.export_adapter(r, "adapter3", step = 3)
base.save("base")
a = hf.load_adapter("adapter", model = base)
print("CONFIG", a.config.r, a.config.alpha, sorted(a.config.targets) == sorted(r.config["target_modules"]), len(a.tensors))
print("SHAPES", a.tensors["base_model.model.model.layers.0.self_attn.k_proj.lora_A.weight"], a.tensors["base_model.model.model.layers.1.mlp.down_proj.lora_B.weight"])
print("BASE", a.base.startswith("lens:"))
`

func TestHFExportLoadAdapter(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": hfScript,
		"bad.star":  "hf.export_adapter(lens.run('interop'), 'x', step = 4)\n",
		"bad2.star": "hf.load_adapter('base')\n",
	})
	out, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "DIR adapter\n")
	require.Contains(t, out, "CONFIG 4 16.0 True 28\n") // 2 layers × 7 modules × A, B
	require.Contains(t, out, "SHAPES (4, 32) (32, 4)\n")
	require.Contains(t, out, "BASE True\n")

	// hf.export_adapter writes what lens export writes.
	_, stderr, code = lens(t, dir, "export", "interop", "--out", "exp")
	require.Equal(t, 0, code, stderr)
	for _, f := range []string{"adapter_config.json", "adapter_model.safetensors"} {
		a, _ := os.ReadFile(filepath.Join(dir, "adapter", f))
		b, _ := os.ReadFile(filepath.Join(dir, "exp", f))
		require.NotEmpty(t, a)
		require.Equal(t, b, a, f)
	}
	a, _ := os.ReadFile(filepath.Join(dir, "adapter", "adapter_model.safetensors"))
	a3, _ := os.ReadFile(filepath.Join(dir, "adapter3", "adapter_model.safetensors"))
	require.NotEqual(t, a, a3, "step 3 is an earlier checkpoint")

	_, stderr, code = lens(t, dir, "run", "bad.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "hf.export_adapter")
	require.Contains(t, stderr, "checkpoint")
	_, stderr, code = lens(t, dir, "run", "bad2.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "hf.load_adapter")
	require.Contains(t, stderr, "adapter_config.json")

	t.Run("pytorch", func(t *testing.T) { checkTorchLogits(t, dir) })
}

// checkTorchLogits runs the exported adapter on its base through the
// independent PyTorch reference (HF Llama + PEFT LoRA) and through lens,
// and compares the logits.
func checkTorchLogits(t *testing.T, dir string) {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v", err)
		}
		t.Skipf("PyTorch reference unavailable (%v)", err)
	}
	m, err := model.Load(filepath.Join(dir, "base"))
	require.NoError(t, err)
	ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
	require.NoError(t, err)

	const B, T = 2, 24
	rng := rand.New(rand.NewPCG(1, 2))
	var batch struct {
		Inputs  [][]int32 `json:"inputs"`
		Targets [][]int32 `json:"targets"`
	}
	feed := &nn.Feed{B: B, T: T}
	for range B {
		in, tg := make([]int32, T), make([]int32, T)
		for i := range in {
			in[i], tg[i] = int32(rng.IntN(m.Config.VocabSize)), int32(rng.IntN(m.Config.VocabSize))
		}
		batch.Inputs, batch.Targets = append(batch.Inputs, in), append(batch.Targets, tg)
		feed.Inputs, feed.Targets = append(feed.Inputs, in...), append(feed.Targets, tg...)
	}
	b, err := json.Marshal(batch)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "batch.json"), b, 0o644))

	torch := func(adapter bool) []float32 {
		out := filepath.Join(dir, "ref.safetensors")
		args := []string{filepath.Join(torchRef(), "llama_ref.py"), "--model", filepath.Join(dir, "base"),
			"--batch", filepath.Join(dir, "batch.json"), "--out", out}
		if adapter {
			args = append(args, "--adapter", filepath.Join(dir, "adapter"))
		}
		if o, err := exec.Command(python, args...).CombinedOutput(); err != nil {
			t.Fatalf("llama_ref: %v\n%s", err, o)
		}
		f, err := safetensors.ReadFile(out)
		require.NoError(t, err)
		l, shape, err := f.Float32("logits")
		require.NoError(t, err)
		require.Equal(t, []int{B, T, m.Config.VocabSize}, shape)
		return l
	}
	want, plain := torch(true), torch(false)

	g := nn.NewGraph[float32](feed)
	net, err := model.Build(g, m, ad.GraphAdapters(), false)
	require.NoError(t, err)
	mach, err := g.Compile(net.Loss)
	require.NoError(t, err)
	defer mach.Close()
	_, err = mach.Run()
	require.NoError(t, err)
	got, err := nn.Data[float32](net.Logits)
	require.NoError(t, err)
	require.Len(t, got, len(want))

	maxDiff, adapterEffect := 0.0, 0.0
	for i := range got {
		maxDiff = math.Max(maxDiff, math.Abs(float64(got[i])-float64(want[i])))
		adapterEffect = math.Max(adapterEffect, math.Abs(float64(want[i])-float64(plain[i])))
	}
	t.Logf("max |lens - torch| = %.2g over %d logits; the adapter moves logits by up to %.3g", maxDiff, len(got), adapterEffect)
	require.Less(t, maxDiff, 1e-4, "lens and PyTorch+PEFT logits for the exported adapter")
	require.Greater(t, adapterEffect, 1e-2, "the trained adapter changes the logits, so the comparison tests it")
}

// initScript continues training from a run and from an exported PEFT
// directory: each continuation evaluates at step 0 where its source ended.
const initScript = `
base = model.tiny(hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, seed = 2)
cfg = lora.config(r = 4, alpha = 8, targets = ["q_proj", "v_proj"])
first = lens.train(model = base, data = data.text("corpus.txt"), lora = cfg, steps = 6, batch_size = 4, seq_len = 32,
                   lr = 2e-2, eval_every = 3, checkpoint_every = 3, name = "first")
again = lens.train(model = base, data = data.text("corpus.txt"), lora = cfg, steps = 2, batch_size = 4, seq_len = 32,
                   lr = 2e-2, eval_every = 2, init = first, name = "again")
hf.export_adapter(first, "peft")
fromdir = lens.train(model = base, data = data.text("corpus.txt"), lora = cfg, steps = 2, batch_size = 4, seq_len = 32,
                     lr = 2e-2, eval_every = 2, init = "peft", name = "fromdir")
print("SAME", abs(first.eval_loss() - again.eval_loss(step = 0)) < 1e-9, abs(first.eval_loss() - fromdir.eval_loss(step = 0)) < 1e-6)
mid = lens.train(model = base, data = data.text("corpus.txt"), lora = cfg, steps = 1, batch_size = 4, seq_len = 32,
                 lr = 2e-2, eval_every = 1, init = first, init_step = 3, name = "mid")
print("MID", abs(first.eval_loss(step = 3) - mid.eval_loss(step = 0)) < 1e-9, mid.config["init"]["step"])
print("INIT", again.config["init"]["run"] == first.id, again.config["init"]["step"], len(fromdir.config["init"]["hash"]))
`

func TestTrainInit(t *testing.T) {
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": initScript,
		"bad.star": `base = model.tiny(hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, seed = 2)
lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = 8, targets = ["q_proj", "v_proj"]),
           steps = 1, batch_size = 4, seq_len = 32, init = lens.run("first"))
`,
		"bad2.star": "lens.train(model = model.tiny(), data = data.text('corpus.txt'), init = 3)\n",
		"bad3.star": "lens.train(model = model.tiny(), data = data.text('corpus.txt'), init_step = 3)\n",
		"bad4.star": `base = model.tiny(hidden_size = 32, intermediate_size = 48, num_hidden_layers = 2, seed = 2)
lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = 4, alpha = 8, targets = ["q_proj", "v_proj"]),
           steps = 1, batch_size = 4, seq_len = 32, init = lens.run("first"), init_step = 4)
`,
	})
	out, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "SAME True True\n")
	require.Contains(t, out, "INIT True 6 64\n")
	require.Contains(t, out, "MID True 3\n")
	_, stderr, code = lens(t, dir, "run", "bad.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "bad.star:2:11")
	require.Contains(t, stderr, "(rank 8 here)")
	_, stderr, code = lens(t, dir, "run", "bad2.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "for parameter \"init\": want a run or a PEFT adapter directory, got int")
	_, stderr, code = lens(t, dir, "run", "bad3.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "for parameter \"init_step\": picks a checkpoint of the run given as init=")
	_, stderr, code = lens(t, dir, "run", "bad4.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "bad4.star:2:11")
	require.Contains(t, stderr, "has no checkpoint at step 4 (it has [3 6])")
}
