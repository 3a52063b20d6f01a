package train

import (
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/accel/acceltest"
	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/safetensors"
	"lens/engine/sft"
)

// packRows are examples of random tokens with masked prompts, of lengths
// that leave room to pack several per row of T = 24.
func packRows(t *testing.T, vocab int) []sft.Row {
	rng := rand.New(rand.NewPCG(21, 4))
	var rows []sft.Row
	for _, n := range []int{9, 25, 4, 13, 7, 2, 11, 6, 17, 5} {
		var r sft.Row
		prompt := rng.IntN(n / 2)
		for i := range n {
			tk := int32(rng.IntN(vocab))
			r.Tokens = append(r.Tokens, tk)
			if i < prompt {
				tk = sft.Ignore
			}
			r.Labels = append(r.Labels, tk)
		}
		rows = append(rows, r)
	}
	return rows
}

// packedStep trains one step of the model and a copy of the adapter on
// the given batcher, on the CPU graph or on accel.Host, and returns the
// loss and every LoRA gradient.
func packedStep(t *testing.T, m *model.Model, base *lora.Adapter, b Batches, B, T int, onHost bool) (float64, map[string][]float32) {
	ad := base.Clone() // the step updates its adapter
	tr, err := New(m, ad, b, nil, Config{BatchSize: B, SeqLen: T, LR: 1e-3})
	require.NoError(t, err)
	defer tr.Close()
	if onHost {
		require.NoError(t, tr.UseDevice(accel.Host{}))
	}
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
	return loss, grads
}

// packedExamples are the examples a packed batcher's first batch took, in
// its order: State's position counts them.
func packedExamples(t *testing.T, b *sft.Batcher, rows []sft.Row, seed uint64) []sft.Row {
	raw, err := b.State()
	require.NoError(t, err)
	var s sft.BatcherState
	require.NoError(t, json.Unmarshal(raw, &s))
	require.Less(t, s.Next, len(rows), "the batch took a whole epoch: the test needs fewer per batch")
	var out []sft.Row
	for _, i := range sft.Perm(len(rows), seed, 0)[:s.Next] {
		out = append(out, rows[i])
	}
	return out
}

// TestPackedEqualsUnpacked: one batch of packed rows (several examples a
// row, positions and attention restarting at each) gives the loss and
// every LoRA gradient that the same examples give one per padded row, to
// 1e-5, on the CPU graph and on accel.Host; the loss is the same mean
// over trained tokens either way.
func TestPackedEqualsUnpacked(t *testing.T) {
	const Bp, T, seed = 2, 32, 5
	m, ad := acceltest.Model(t)
	rows := packRows(t, m.Config.VocabSize)
	for _, onHost := range []bool{false, true} {
		t.Run(fmt.Sprintf("host=%v", onHost), func(t *testing.T) {
			packed, err := sft.NewBatcher(rows, Bp, T, seed)
			require.NoError(t, err)
			packed.Pack()
			pl, pg := packedStep(t, m, ad, packed, Bp, T, onHost)
			ex := packedExamples(t, packed, rows, seed)
			require.Greater(t, len(ex), Bp, "no row holds two examples: nothing is packed")

			unpacked, err := sft.NewBatcher(ex, len(ex), T, seed)
			require.NoError(t, err)
			ul, ug := packedStep(t, m, ad, unpacked, len(ex), T, onHost)

			require.InEpsilon(t, ul, pl, 1e-5, "loss: %d examples packed in %d rows vs one a row", len(ex), Bp)
			require.Len(t, pg, len(ug))
			for name, want := range ug {
				scale := 0.0
				for _, v := range want {
					scale = math.Max(scale, math.Abs(float64(v)))
				}
				require.Greater(t, scale, 0.0, "gradient %s is zero", name)
				for j, v := range pg[name] {
					require.InDelta(t, want[j], v, 1e-5*scale, "gradient %s[%d]", name, j)
				}
			}
			t.Logf("%d examples in %d packed rows: loss %.6f packed, %.6f unpacked", len(ex), Bp, pl, ul)
		})
	}
}

// TestPackedMustDiffer guards the test above: packed rows read as plain
// rows (no positions, no segments) give another loss, so the equality
// is not one any batch would pass.
func TestPackedMustDiffer(t *testing.T) {
	const Bp, T, seed = 2, 32, 5
	m, ad := acceltest.Model(t)
	rows := packRows(t, m.Config.VocabSize)
	packed, err := sft.NewBatcher(rows, Bp, T, seed)
	require.NoError(t, err)
	packed.Pack()
	pl, _ := packedStep(t, m, ad, packed, Bp, T, false)
	again, err := sft.NewBatcher(rows, Bp, T, seed)
	require.NoError(t, err)
	again.Pack()
	plain, err := again.NextBatch()
	require.NoError(t, err)
	ml, _ := packedStep(t, m, ad, &fixedBatch{plain}, Bp, T, false)
	require.Greater(t, math.Abs(pl-ml), 1e-3, "packed rows without their mask give the same loss %.6f", pl)
}

// fixedBatch yields one batch's inputs and targets as plain rows.
type fixedBatch struct{ b data.Batch }

func (f *fixedBatch) Next(inputs, targets []int32) error {
	copy(inputs, f.b.Inputs)
	copy(targets, f.b.Targets)
	return nil
}
func (f *fixedBatch) State() (json.RawMessage, error) { return nil, nil }
func (f *fixedBatch) Restore(json.RawMessage) error   { return nil }

// TestPackedStepMatchesPyTorch: the trainer's loss and every LoRA gradient
// on one batch of packed rows equal PyTorch's on the examples it took, each
// run alone and unpadded (testdata/torchref/sft_ref.py), to 1e-4.
func TestPackedStepMatchesPyTorch(t *testing.T) {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v (install python3-torch python3-numpy)", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
	dir := t.TempDir()
	out, err := exec.Command(python, filepath.Join(torchRef(t), "make_case.py"), "--out", dir, "--seed", "12",
		"--untied", "--kv-heads", "2", "--targets", "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj").CombinedOutput()
	require.NoError(t, err, "make_case: %s", out)
	m, err := model.Load(filepath.Join(dir, "model"))
	require.NoError(t, err)
	ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
	require.NoError(t, err)

	const B, T, seed = 2, 32, 3
	rows := packRows(t, m.Config.VocabSize)
	b, err := sft.NewBatcher(rows, B, T, seed)
	require.NoError(t, err)
	b.Pack()
	loss, grads := packedStep(t, m, ad, b, B, T, false)
	ex := packedExamples(t, b, rows, seed)
	require.Greater(t, len(ex), B, "nothing packed")

	ref := struct {
		InputIDs [][]int32 `json:"input_ids"`
		Labels   [][]int32 `json:"labels"`
	}{}
	for _, r := range ex {
		hf := make([]int32, len(r.Labels))
		for i, l := range r.Labels {
			hf[i] = l
			if l < 0 {
				hf[i] = -100
			}
		}
		ref.InputIDs, ref.Labels = append(ref.InputIDs, r.Tokens), append(ref.Labels, hf)
	}
	js, err := json.Marshal(ref)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "examples.json"), js, 0o644))
	refOut := filepath.Join(dir, "ref.safetensors")
	out, err = exec.Command(python, filepath.Join(torchRef(t), "sft_ref.py"), "--model", filepath.Join(dir, "model"),
		"--adapter", filepath.Join(dir, "adapter"), "--examples", filepath.Join(dir, "examples.json"), "--out", refOut).CombinedOutput()
	require.NoError(t, err, "sft_ref: %s", out)
	want, err := safetensors.ReadFile(refOut)
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
	t.Logf("%d examples in %d packed rows: loss %.6f (torch %.6f), %d gradients match", len(ex), B, loss, wl[0], len(grads))
}
