package runs

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"
	"gonum.org/v1/gonum/mat"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// TestCollectorsEndToEnd trains with every collector on and checks the
// stored records against values recomputed independently.
func TestCollectorsEndToEnd(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 4)
	require.NoError(t, err)
	st := openStore(t)
	ref, err := StoreBase(st, base)
	require.NoError(t, err)
	spec := Spec{Name: "c", Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj", "down_proj"}},
		Train: train.Config{Steps: 6, BatchSize: 2, SeqLen: 16, LR: 1e-2, Seed: 2, EvalEvery: 3, EvalBatches: 2, Schedule: "constant"},
		Data:  DataRef{Source: "opticks"}, CheckpointEvery: 2, ProbeBatch: 4,
		Collect: []collect.Spec{{Name: "adapter_weights", Every: 2}, {Name: "adapter_grads", Every: 1},
			{Name: "lora_activations", Every: 3}, {Name: "activations", Every: 3, Options: map[string]any{"hooks": []any{"blocks.*.hook_resid_post", "blocks.0.attn.hook_z", "blocks.1.attn.hook_pattern"}}}}}
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, meta.Status)

	// adapter_weights at step 4: singular values of s·B·A recomputed with a
	// full SVD of the product formed from the step-4 checkpoint.
	ws, err := collect.Read[collect.AdapterWeights](st, meta.ID, "adapter_weights")
	require.NoError(t, err)
	require.Len(t, ws, 3*6) // steps 2, 4, 6 × 6 modules (2 layers × 3 targets)
	_, ts, err := st.LoadCheckpoint(meta.ID, 4)
	require.NoError(t, err)
	byName := map[string]kv.Tensor{}
	for _, x := range ts {
		byName[x.Name] = x
	}
	checked := 0
	for _, w := range ws {
		if w.Step != 4 {
			continue
		}
		A, B := byName[w.Name+".lora_A"], byName[w.Name+".lora_B"]
		out, in := B.Shape[0], A.Shape[1]
		dw := mat.NewDense(out, in, nil)
		dw.Mul(toDense(B), toDense(A))
		dw.Scale(spec.LoRA.Scale(), dw)
		var svd mat.SVD
		require.True(t, svd.Factorize(dw, mat.SVDNone))
		want := svd.Values(nil)
		require.Len(t, w.Value.SV, 4)
		for i := range 4 {
			require.InDelta(t, want[i], w.Value.SV[i], 1e-5*want[0]+1e-9, "%s σ%d", w.Name, i)
		}
		require.InDelta(t, mat.Norm(dw, 2), w.Value.DeltaFro, 1e-4*w.Value.DeltaFro)
		require.Greater(t, w.Value.DeltaFro, 0.0)
		checked++
	}
	require.Equal(t, 6, checked)

	// adapter_grads: ∇B is non-zero from the first step (B starts at zero, so
	// ∇A is zero then and non-zero after); the global norm is the L2 norm.
	gs, err := collect.Read[collect.AdapterGrads](st, meta.ID, "adapter_grads")
	require.NoError(t, err)
	steps, err := collect.Read[collect.StepGrads](st, meta.ID, "adapter_grads")
	require.NoError(t, err)
	gradNorm, err := st.ReadMetric(meta.ID, "grad_norm")
	require.NoError(t, err)
	sq := map[int]float64{}
	for _, g := range gs {
		if g.Name == "_step" {
			continue
		}
		require.Greater(t, g.Value.NormGradB, 0.0, "step %d %s", g.Step, g.Name)
		if g.Step == 1 {
			require.Zero(t, g.Value.NormGradA)
		} else {
			require.Greater(t, g.Value.NormGradA, 0.0)
			require.Greater(t, g.Value.UpdateRatioA, 0.0)
		}
		sq[g.Step] += g.Value.NormGradA*g.Value.NormGradA + g.Value.NormGradB*g.Value.NormGradB
	}
	for _, s := range steps {
		if s.Name != "_step" {
			continue
		}
		require.InEpsilon(t, math.Sqrt(sq[s.Step]), s.Value.GlobalNorm, 1e-5, "global norm is the L2 norm of the module norms")
		require.InEpsilon(t, gradNorm[s.Step-1].Value, s.Value.GlobalNorm, 1e-12)
	}

	// A separate backward pass: restore the step-2 checkpoint into a fresh
	// trainer, run step 3, and compare its gradients with the stored ones.
	again, err := Prepare(spec, base)
	require.NoError(t, err)
	require.NoError(t, again.restore(st, meta.ID, 2))
	var fresh map[string]float64
	again.Trainer.AddHooks(train.Hooks{AfterBackward: func(tr *train.Trainer, s *train.StepInfo) error {
		fresh = map[string]float64{}
		for _, p := range tr.Params {
			fresh[p.Name] = normOf(p.Grad)
		}
		return nil
	}})
	_, err = again.Trainer.TrainStep()
	require.NoError(t, err)
	for _, g := range gs {
		if g.Step == 3 && g.Name != "_step" {
			require.InEpsilon(t, fresh[g.Name+".lora_A"], g.Value.NormGradA, 1e-6)
			require.InEpsilon(t, fresh[g.Name+".lora_B"], g.Value.NormGradB, 1e-6)
		}
	}

	// LoRA activations: B has moved from zero, so the LoRA path contributes.
	la, err := collect.Read[collect.LoRAActivation](st, meta.ID, "lora_activations")
	require.NoError(t, err)
	require.Len(t, la, 2*6)
	for _, a := range la {
		require.Greater(t, a.Value.InNorm, 0.0)
		require.Greater(t, a.Value.MidNorm, 0.0)
		require.Greater(t, a.Value.Ratio, 0.0)
		require.Less(t, a.Value.Ratio, 10.0)
	}
	acts, err := collect.Read[collect.ActivationStats](st, meta.ID, "activations")
	require.NoError(t, err)
	require.Len(t, acts, 2*4) // 2 steps × (2 resid_post + 1 hook_z + 1 pattern)
	for _, a := range acts {
		require.Greater(t, a.Value.RowNorm, 0.0)
		require.Equal(t, 20, len(a.Value.Hist))
		total := 0
		for _, h := range a.Value.Hist {
			total += h
		}
		if a.Name == "blocks.1.attn.hook_pattern" {
			// Probabilities: 4 windows × 4 heads × 16×16, each row sums to 1, so
			// the mean is 1/16 and the upper triangle is exactly 0.
			require.Equal(t, 4*4*16*16, total)
			require.InDelta(t, 1.0/16, a.Value.Mean, 1e-6)
			require.Equal(t, 0.0, a.Value.Min)
			continue
		}
		require.Equal(t, 4*16*32, total, a.Name) // probe: 4 windows × 16 positions × hidden 32
	}
}

func toDense(t kv.Tensor) *mat.Dense {
	d := make([]float64, len(t.Data))
	for i, v := range t.Data {
		d[i] = float64(v)
	}
	return mat.NewDense(t.Shape[0], t.Shape[1], d)
}

func normOf(x []float32) float64 {
	var s float64
	for _, v := range x {
		s += float64(v) * float64(v)
	}
	return math.Sqrt(s)
}
