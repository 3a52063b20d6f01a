package train

import (
	"math"
	"math/rand/v2"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
)

// deviceFamilies are the blocks the device tests train: Llama's and Gemma
// 3's (a local layer whose sliding window, 5, is shorter than seq_len, a
// global one with another RoPE base, (1 + w) norms, GeGLU, a tied head).
var deviceFamilies = []struct {
	name string
	edit func(*model.Config)
}{
	{"llama", func(*model.Config) {}},
	{"gemma3_text", func(c *model.Config) {
		c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 8, 12
		c.SlidingWindow, c.SlidingWindowPattern, c.RopeTheta, c.RopeLocalBaseFreq = 5, 2, 1e6, 1e4
	}},
}

// deviceRun trains the same small LoRA run (dropout, two micro-batches,
// clipping, weight decay, LoRA+), or with full the same run training every
// weight, for steps steps, on the CPU graph or on accel's Host device, and
// returns the trainer.
func deviceRun(t *testing.T, edit func(*model.Config), onHost, full bool, steps int) *Trainer {
	return deviceRunWith(t, edit, onHost, full, steps, func(*Config) {})
}

// deviceRunWith is deviceRun with edit applied to the trainer's Config.
func deviceRunWith(t *testing.T, editModel func(*model.Config), onHost, full bool, steps int, edit func(*Config)) *Trainer {
	m := deviceModel(t, editModel)
	c := m.Config
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Dropout: 0.1, Targets: []string{"q_proj", "v_proj", "down_proj"}}, 5)
	require.NoError(t, err)
	toks := make([]int32, 4096)
	rng := rand.New(rand.NewPCG(7, 7))
	for i := range toks {
		toks[i] = int32(rng.IntN(c.VocabSize))
	}
	b, err := data.NewBatcher(toks, 2, 16, 1)
	require.NoError(t, err)
	cfg := Config{Steps: 100, BatchSize: 2, SeqLen: 16, GradAccum: 2, LR: 5e-3,
		LoRAPlusRatio: 4, WeightDecay: 0.1, ClipNorm: 0.5, Seed: 9}
	if full {
		ad, cfg.Full, cfg.LoRAPlusRatio, cfg.LR = nil, true, 0, 1e-3
	}
	edit(&cfg)
	tr, err := New(m, ad, b, nil, cfg)
	require.NoError(t, err)
	t.Cleanup(func() { tr.Close() })
	if onHost {
		require.NoError(t, tr.UseDevice(accel.Host{}))
		require.Equal(t, "host", tr.DeviceName())
	}
	for range steps {
		_, err := tr.TrainStep()
		require.NoError(t, err)
	}
	return tr
}

// deviceModel is deviceRun's model before training.
func deviceModel(t *testing.T, edit func(*model.Config)) *model.Model {
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads = 32, 48, 2, 4, 2
	if edit != nil {
		edit(&c)
	}
	m, err := model.New(c, 3)
	require.NoError(t, err)
	return m
}

// sameParams requires two trainers' tensors and first moments to agree
// within 1e-4 of each tensor's largest entry.
func sameParams(t *testing.T, cpu, dev *Trainer) {
	t.Helper()
	require.Equal(t, len(cpu.Params), len(dev.Params))
	for i, p := range cpu.Params {
		q := dev.Params[i]
		require.Equal(t, p.Name, q.Name)
		scale := 0.0
		for _, v := range p.Data {
			scale = max(scale, math.Abs(float64(v)))
		}
		for j := range p.Data {
			require.InDelta(t, p.Data[j], q.Data[j], 1e-4*scale, "%s[%d]", p.Name, j)
			require.InDelta(t, p.M[j], q.M[j], 1e-4*scale+1e-7, "%s M[%d]", p.Name, j)
		}
	}
}

// TestDeviceTrainerMatchesCPU checks the accelerator path of the trainer
// (Step on the device, gradients accumulated on the host, AdamW on the
// device) against the CPU graph step for step, for each block of
// deviceFamilies, and that a Restore with rewritten tensors reaches the
// device.
func TestDeviceTrainerMatchesCPU(t *testing.T) {
	for _, fam := range deviceFamilies {
		t.Run(fam.name, func(t *testing.T) {
			const steps = 4
			cpu, dev := deviceRun(t, fam.edit, false, false, steps), deviceRun(t, fam.edit, true, false, steps)
			sameParams(t, cpu, dev)
			// Save the device trainer's position, take two steps, restore and
			// take them again: the same loss both times only if the restored
			// tensors were uploaded.
			st, err := dev.State()
			require.NoError(t, err)
			saved := map[string][3][]float32{}
			for _, p := range dev.Params {
				saved[p.Name] = [3][]float32{append([]float32(nil), p.Data...), append([]float32(nil), p.M...), append([]float32(nil), p.V...)}
			}
			var first []float64
			for range 2 {
				info, err := dev.TrainStep()
				require.NoError(t, err)
				first = append(first, info.Loss)
			}
			for _, p := range dev.Params {
				copy(p.Data, saved[p.Name][0])
				copy(p.M, saved[p.Name][1])
				copy(p.V, saved[p.Name][2])
			}
			require.NoError(t, dev.Restore(st))
			for i := range 2 {
				info, err := dev.TrainStep()
				require.NoError(t, err)
				require.Equal(t, first[i], info.Loss, "step %d after restore", info.Step)
			}
			for _, p := range cpu.Params {
				require.NotEqual(t, saved[p.Name][0], dev.Param(p.Name).Data, "%s did not move", p.Name)
			}
		})
	}
}

// TestDeviceFullTrainingMatchesCPU: full fine-tuning (every weight, weight
// decay on the matrices only, clipping, two micro-batches) on the Host
// device follows the CPU graph step for step, for each block of
// deviceFamilies (Gemma's (1 + w) norm weights train as w).
func TestDeviceFullTrainingMatchesCPU(t *testing.T) {
	for _, fam := range deviceFamilies {
		t.Run(fam.name, func(t *testing.T) {
			const steps = 3
			cpu, dev := deviceRun(t, fam.edit, false, true, steps), deviceRun(t, fam.edit, true, true, steps)
			require.Greater(t, len(cpu.Params), 10, "full training trains every weight")
			sameParams(t, cpu, dev)
			init := deviceModel(t, fam.edit)
			for _, p := range dev.Params {
				require.NotEqual(t, init.Weights[p.Name].Data, p.Data, "%s did not move", p.Name)
			}
		})
	}
}

// TestDeviceBaseQuantMatchesCPU: LoRA over an nf4, nf4-dq or bf16 base on
// accel.Host (the base uploaded packed, each weight widened by the device's
// kernels per product) follows the CPU graph over the same packed base
// step for step, with and without checkpointing, and the quantized base
// is what trains (its first loss differs from the float32 base's).
func TestDeviceBaseQuantMatchesCPU(t *testing.T) {
	const steps = 3
	f32 := deviceRun(t, nil, true, false, 1)
	for _, kind := range model.QuantKinds {
		for _, ckpt := range []bool{false, true} {
			edit := func(c *Config) { c.BaseQuant, c.Checkpointing = kind, ckpt }
			cpu, dev := deviceRunWith(t, nil, false, false, steps, edit), deviceRunWith(t, nil, true, false, steps, edit)
			require.Equal(t, "host", dev.DeviceName())
			require.Equal(t, kind, dev.Model.Quant)
			sameParams(t, cpu, dev)
			l0, l1 := lastLoss(t, cpu), lastLoss(t, dev)
			require.InDelta(t, l0, l1, 1e-4*l0, "%s checkpointing %v: loss after %d steps", kind, ckpt, steps)
			if kind != model.QuantBF16 {
				require.NotEqual(t, lastLoss(t, f32), lastLoss(t, deviceRunWith(t, nil, true, false, 1, edit)), "%s: the device trained the float32 base", kind)
			}
		}
	}
}

// lastLoss is the loss of one more training step.
func lastLoss(t *testing.T, tr *Trainer) float64 {
	t.Helper()
	info, err := tr.TrainStep()
	require.NoError(t, err)
	return info.Loss
}
