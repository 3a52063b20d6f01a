package model_test

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"sort"
	"strconv"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/safetensors"
)

const python = "/usr/bin/python3"

// torchDir is testdata/torchref at the repository root.
func torchDir(t *testing.T) string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "torchref")
}

func needTorch(t *testing.T) {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v (install python3-torch python3-numpy)", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
}

// relErr is ‖a−b‖/‖b‖.
func relErr(a, b []float32) float64 {
	var d, n float64
	for i := range a {
		x := float64(a[i]) - float64(b[i])
		d += x * x
		n += float64(b[i]) * float64(b[i])
	}
	return math.Sqrt(d / math.Max(n, 1e-30))
}

// TestMatchesPyTorch runs the same batch through lens and an independent
// PyTorch implementation of HF Llama + PEFT LoRA, and compares loss,
// logits and gradients.
func TestMatchesPyTorch(t *testing.T) {
	needTorch(t)
	cases := []struct {
		name string
		args []string
		full bool
	}{
		{"untied mha q,v", []string{"--untied", "--heads", "4", "--kv-heads", "4", "--targets", "q_proj,v_proj"}, false},
		{"tied gqa all-attn", []string{"--tied", "--heads", "4", "--kv-heads", "2", "--targets", "q_proj,k_proj,v_proj,o_proj"}, false},
		{"rslora mlp", []string{"--untied", "--kv-heads", "1", "--rslora", "--rank", "8", "--targets", "gate_proj,up_proj,down_proj"}, false},
		{"rslora every linear", []string{"--tied", "--kv-heads", "2", "--rslora", "--alpha", "16", "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}, false},
		{"bf16 base weights", []string{"--untied", "--dtype", "BF16", "--targets", "q_proj,o_proj"}, false},
		{"explicit head_dim", []string{"--untied", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--targets", "q_proj,k_proj,v_proj,o_proj"}, false},
		// Llama 3's rope_theta and an rms_norm_eps large enough to matter, so
		// that a value hard-coded to the defaults (10000, 1e-5) fails.
		{"rope_theta 500000 rms_norm_eps 0.05", []string{"--untied", "--heads", "4", "--kv-heads", "2", "--theta", "500000", "--eps", "0.05", "--seq", "16", "--targets", "q_proj,k_proj,v_proj,o_proj"}, false},
		{"full untied", []string{"--untied", "--kv-heads", "2", "--no-adapter"}, true},
		{"full tied", []string{"--tied", "--kv-heads", "2", "--no-adapter"}, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			dir := t.TempDir()
			args := append([]string{filepath.Join(torchDir(t), "make_case.py"), "--out", dir, "--seed", strconv.Itoa(i + 1)}, tc.args...)
			if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
				t.Fatalf("make_case: %v\n%s", err, out)
			}
			ref := filepath.Join(dir, "ref.safetensors")
			rargs := []string{filepath.Join(torchDir(t), "llama_ref.py"), "--model", filepath.Join(dir, "model"), "--batch", filepath.Join(dir, "batch.json"), "--out", ref}
			if tc.full {
				rargs = append(rargs, "--full")
			} else {
				rargs = append(rargs, "--adapter", filepath.Join(dir, "adapter"))
			}
			if out, err := exec.Command(python, rargs...).CombinedOutput(); err != nil {
				t.Fatalf("llama_ref: %v\n%s", err, out)
			}
			want, err := safetensors.ReadFile(ref)
			require.NoError(t, err)

			m, err := model.Load(filepath.Join(dir, "model"))
			require.NoError(t, err)
			var ad *lora.Adapter
			var ads map[string]model.Adapter
			if !tc.full {
				ad, err = lora.Load(filepath.Join(dir, "adapter"), m)
				require.NoError(t, err)
				ads = ad.GraphAdapters()
			}
			var batch struct{ Inputs, Targets [][]int32 }
			b, err := os.ReadFile(filepath.Join(dir, "batch.json"))
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &batch))
			feed := &nn.Feed{B: len(batch.Inputs), T: len(batch.Inputs[0])}
			for i := range batch.Inputs {
				feed.Inputs = append(feed.Inputs, batch.Inputs[i]...)
				feed.Targets = append(feed.Targets, batch.Targets[i]...)
			}
			g := nn.NewGraph[float32](feed)
			net, err := model.Build(g, m, ads, tc.full)
			require.NoError(t, err)
			// Gradients with respect to what the reference differentiated,
			// under the reference's key names.
			keys := map[string]string{} // reference key -> graph parameter
			if tc.full {
				for name := range net.Params {
					keys[name] = name
				}
			} else {
				for _, mod := range ad.Modules {
					keys["base_model.model."+mod+".lora_A.weight"] = mod + ".lora_A"
					keys["base_model.model."+mod+".lora_B.weight"] = mod + ".lora_B"
				}
			}
			var refKeys []string
			var wrt []*G.Node
			for k := range keys {
				refKeys = append(refKeys, k)
			}
			sort.Strings(refKeys)
			for _, k := range refKeys {
				wrt = append(wrt, net.Params[keys[k]])
			}
			mach, err := g.Compile(net.Loss, wrt...)
			require.NoError(t, err)
			defer mach.Close()
			loss, err := mach.Run()
			require.NoError(t, err)

			wl, _, err := want.Float32("loss")
			require.NoError(t, err)
			require.InEpsilon(t, float64(wl[0]), loss, 1e-4, "loss")
			logits, err := nn.Data[float32](net.Logits)
			require.NoError(t, err)
			wlog, _, err := want.Float32("logits")
			require.NoError(t, err)
			require.Less(t, relErr(logits, wlog), 1e-5, "logits")
			for i, k := range refKeys {
				wg, _, err := want.Float32(k)
				require.NoError(t, err, "reference has no gradient %s", k)
				gg, err := mach.Grad(i)
				require.NoError(t, err)
				require.Greater(t, relErr(wg, make([]float32, len(wg))), 0.0, "reference gradient %s is zero", k)
				e := relErr(gg, wg)
				require.Less(t, e, 1e-4, "gradient %s: relative error %.2g", k, e)
			}
			t.Logf("loss %.6f (torch %.6f), %d gradients match", loss, wl[0], len(refKeys))
		})
	}
}
