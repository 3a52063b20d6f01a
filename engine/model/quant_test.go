package model_test

import (
	"encoding/json"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/quant"
	"lens/engine/safetensors"
)

// qcase is a made-up model, adapter and batch from make_case.py.
type qcase struct {
	dir   string
	m     *model.Model
	ad    *lora.Adapter
	feed  *nn.Feed
	names []string // reference gradient keys, sorted
}

func makeQCase(t *testing.T, seed string, extra ...string) qcase {
	t.Helper()
	dir := t.TempDir()
	// hidden 128 and intermediate 192: whole blocks of 64 in every row.
	args := append([]string{filepath.Join(torchDir(t), "make_case.py"), "--out", dir, "--seed", seed,
		"--untied", "--hidden", "128", "--inter", "192", "--heads", "4", "--kv-heads", "2",
		"--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"}, extra...)
	if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("make_case: %v\n%s", err, out)
	}
	m, err := model.Load(filepath.Join(dir, "model"))
	require.NoError(t, err)
	ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
	require.NoError(t, err)
	var batch struct{ Inputs, Targets [][]int32 }
	b, err := os.ReadFile(filepath.Join(dir, "batch.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &batch))
	feed := &nn.Feed{B: len(batch.Inputs), T: len(batch.Inputs[0])}
	for i := range batch.Inputs {
		feed.Inputs = append(feed.Inputs, batch.Inputs[i]...)
		feed.Targets = append(feed.Targets, batch.Targets[i]...)
	}
	c := qcase{dir: dir, m: m, ad: ad, feed: feed}
	for _, mod := range ad.Modules {
		c.names = append(c.names, mod+".lora_A", mod+".lora_B")
	}
	sort.Strings(c.names)
	return c
}

// step runs m with the case's adapter and batch: loss, logits and the
// LoRA gradients in c.names order.
func (c qcase) step(t *testing.T, m *model.Model) (float64, []float32, [][]float32) {
	t.Helper()
	g := nn.NewGraph[float32](c.feed)
	net, err := model.Build(g, m, c.ad.GraphAdapters(), false)
	require.NoError(t, err)
	var wrt []*G.Node
	for _, n := range c.names {
		wrt = append(wrt, net.Params[n])
	}
	mach, err := g.Compile(net.Loss, wrt...)
	require.NoError(t, err)
	defer mach.Close()
	loss, err := mach.Run()
	require.NoError(t, err)
	logits, err := nn.Data[float32](net.Logits)
	require.NoError(t, err)
	logits = append([]float32(nil), logits...)
	var grads [][]float32
	for i := range wrt {
		d, err := mach.Grad(i)
		require.NoError(t, err)
		grads = append(grads, append([]float32(nil), d...))
	}
	return loss, logits, grads
}

// TestQLoRAMatchesPyTorch trains LoRA on every linear module of a model
// whose base linear weights are NF4 (with and without double
// quantization), and compares loss, logits and every LoRA gradient with
// qlora_ref.py, which quantizes the same float32 weights in plain PyTorch
// (identical codes, checked here) and runs the reference on their
// dequantized values.
func TestQLoRAMatchesPyTorch(t *testing.T) {
	needTorch(t)
	for i, kind := range []string{model.QuantNF4, model.QuantNF4DQ} {
		t.Run(kind, func(t *testing.T) {
			c := makeQCase(t, []string{"11", "12"}[i])
			q, err := c.m.Quantized(kind)
			require.NoError(t, err)
			ref, codes := filepath.Join(c.dir, "ref.safetensors"), filepath.Join(c.dir, "codes.safetensors")
			args := []string{filepath.Join(torchDir(t), "qlora_ref.py"), "--model", filepath.Join(c.dir, "model"),
				"--adapter", filepath.Join(c.dir, "adapter"), "--batch", filepath.Join(c.dir, "batch.json"),
				"--out", ref, "--codes-out", codes}
			if kind == model.QuantNF4DQ {
				args = append(args, "--double")
			}
			if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
				t.Fatalf("qlora_ref: %v\n%s", err, out)
			}
			cf, err := safetensors.ReadFile(codes)
			require.NoError(t, err)
			require.Len(t, cf.Names(), len(c.m.Config.LinearModules()))
			for _, path := range c.m.Config.LinearModules() {
				nt, ok := q.Packed[path+".weight"].(*quant.NF4Tensor)
				require.True(t, ok, "%s is not NF4", path)
				rt, ok := cf.Tensor(path + ".weight.codes")
				require.True(t, ok)
				for j := range nt.Codes {
					require.Equal(t, nt.Codes[j], rt.Data[4*j], "%s code byte %d", path, j)
				}
			}

			loss, logits, grads := c.step(t, q)
			want, err := safetensors.ReadFile(ref)
			require.NoError(t, err)
			wl, _, err := want.Float32("loss")
			require.NoError(t, err)
			require.InEpsilon(t, float64(wl[0]), loss, 1e-4, "loss")
			wlog, _, err := want.Float32("logits")
			require.NoError(t, err)
			require.Less(t, relErr(logits, wlog), 1e-5, "logits")
			for j, n := range c.names {
				key := "base_model.model." + n + ".weight"
				wg, _, err := want.Float32(key)
				require.NoError(t, err, "reference has no gradient %s", key)
				require.Greater(t, relErr(wg, make([]float32, len(wg))), 0.0, "reference gradient %s is zero", key)
				e := relErr(grads[j], wg)
				require.Less(t, e, 1e-4, "gradient %s: relative error %.2g", n, e)
			}
			// The loss moved: NF4 is not a no-op on these weights.
			l0, _, _ := c.step(t, c.m)
			require.NotEqual(t, l0, loss)
			t.Logf("%s: loss %.6f (torch %.6f, float32 base %.6f), %d gradients match", kind, loss, wl[0], l0, len(c.names))
		})
	}
}

// TestPackedBaseIsDense: a base held packed (bf16, nf4) gives bit-identical
// loss, logits and LoRA gradients to a float32 base holding the widened
// values; bf16 of weights stored as BF16 is the float32 model itself.
func TestPackedBaseIsDense(t *testing.T) {
	needTorch(t)
	c := makeQCase(t, "13", "--dtype", "BF16")
	for _, kind := range []string{model.QuantBF16, model.QuantNF4} {
		q, err := c.m.Quantized(kind)
		require.NoError(t, err)
		// The vocabulary tables are held in bf16 too (the case is untied).
		for _, n := range []string{model.EmbedName, model.HeadName} {
			_, ok := q.Packed[n].(*quant.BF16Tensor)
			require.True(t, ok, "%s: %s is not held in bf16", kind, n)
			require.Nil(t, q.Weights[n].Data, "%s: %s keeps a float32 copy", kind, n)
		}
		dense := c.m
		if kind != model.QuantBF16 {
			dense = c.m.Clone()
			for n, p := range q.Packed {
				p.Widen(dense.Weights[n].Data)
			}
		}
		l0, lg0, g0 := c.step(t, dense)
		l1, lg1, g1 := c.step(t, q)
		require.Equal(t, l0, l1, "%s loss", kind)
		require.True(t, bitEqual(lg0, lg1), "%s logits", kind)
		for j := range g0 {
			require.True(t, bitEqual(g0[j], g1[j]), "%s gradient %s", kind, c.names[j])
		}
	}
	_, err := c.m.Quantized("int3")
	require.ErrorContains(t, err, "nf4, nf4-dq, bf16")
}

func bitEqual(a, b []float32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if math.Float32bits(a[i]) != math.Float32bits(b[i]) {
			return false
		}
	}
	return true
}
