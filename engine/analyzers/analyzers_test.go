package analyzers

import (
	"context"
	"encoding/json"
	"math"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

func store(t *testing.T) *kv.Store {
	st, err := kv.Open(filepath.Join(t.TempDir(), "s"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	return st
}

// plantedRun writes a run record and metric series directly.
func plantedRun(t *testing.T, st *kv.Store, series map[string]func(step int) float64, steps int) string {
	id := st.NewRunID()
	cfg, _ := json.Marshal(runs.Spec{Data: runs.DataRef{Source: "gocode"}, Train: train.Config{Steps: steps}})
	require.NoError(t, st.CreateRun(kv.RunMeta{ID: id, Name: "planted", Config: cfg, Status: kv.StatusDone}))
	for name, f := range series {
		for s := 1; s <= steps; s++ {
			if v := f(s); !math.IsNaN(v) {
				require.NoError(t, st.AddMetric(id, name, s, v))
			}
		}
	}
	require.NoError(t, st.Flush())
	return id
}

func TestGradientFindsPlantedSpike(t *testing.T) {
	st := store(t)
	rng := rand.New(rand.NewPCG(1, 2))
	id := plantedRun(t, st, map[string]func(int) float64{
		"grad_norm": func(s int) float64 {
			if s == 120 {
				return 25
			}
			return 1 + 0.05*rng.NormFloat64()
		},
	}, 200)
	r, err := Default.Run("gradient", st, id)
	require.NoError(t, err)
	require.Equal(t, []any{120.0}, r.Values["spike_steps"])
	require.Zero(t, r.Values["vanishing_fraction"])
}

func TestConvergenceFindsPlateau(t *testing.T) {
	st := store(t)
	rng := rand.New(rand.NewPCG(3, 4))
	// Falls until step 300, flat (with noise) after.
	id := plantedRun(t, st, map[string]func(int) float64{
		"loss": func(s int) float64 {
			v := 2.0
			if s < 300 {
				v += 1.5 * float64(300-s) / 300
			}
			return v + 0.01*rng.NormFloat64()
		},
	}, 600)
	r, err := Default.Run("convergence", st, id)
	require.NoError(t, err)
	p, ok := r.Values["plateau_step"].(float64)
	require.True(t, ok, "a plateau must be found: %v", r.Findings)
	require.InDelta(t, 300, p, 60)

	// A loss still falling in a straight line has no plateau.
	id2 := plantedRun(t, st, map[string]func(int) float64{"loss": func(s int) float64 { return 5 - 0.005*float64(s) + 0.001*rng.NormFloat64() }}, 600)
	r, err = Default.Run("convergence", st, id2)
	require.NoError(t, err)
	require.Nil(t, r.Values["plateau_step"])
	require.Equal(t, false, r.Values["converged"])
}

func TestCheckpointAndSimilarityOnRealRuns(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 1)
	require.NoError(t, err)
	st := store(t)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 12, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 3, EvalBatches: 2},
		Data:  runs.DataRef{Source: "opticks"}, CheckpointEvery: 3,
		Collect: []collect.Spec{{Name: "adapter_weights", Every: 3}, {Name: "adapter_grads", Every: 1},
			{Name: "activations", Every: 6, Options: map[string]any{"tensors": true}}, {Name: "lora_activations", Every: 6}}}
	var ids []string
	for seed := range 2 {
		spec.LoRASeed = uint64(seed)
		job, err := runs.Prepare(spec, base)
		require.NoError(t, err)
		m, err := job.Run(context.Background(), st, runs.Options{})
		require.NoError(t, err)
		ids = append(ids, m.ID)
	}
	r, err := Default.Run("checkpoint", st, ids[0])
	require.NoError(t, err)
	best := r.Values["best_checkpoint"].(float64)
	// The best checkpoint is the one with the lowest stored eval loss.
	cps, err := st.Checkpoints(ids[0])
	require.NoError(t, err)
	lowest := math.Inf(1)
	for _, c := range cps {
		lowest = math.Min(lowest, c.EvalLoss["opticks"])
	}
	require.Equal(t, lowest, r.Values["best_eval_loss"])
	require.Positive(t, best)

	for _, name := range []string{"lora", "activation", "gradient"} {
		r, err := Default.Run(name, st, ids[0])
		require.NoError(t, err, name)
		require.NotEmpty(t, r.Findings, name)
	}
	// A run compared with itself: φ = 1 and ΔW cosine = 1.
	r, err = Default.Run("similarity", st, ids[0], ids[0])
	require.NoError(t, err)
	require.InDelta(t, 1, r.Values["mean_phi_1_1"], 1e-6)
	for _, m := range r.Values["modules"].(map[string]any) {
		require.InDelta(t, 1, m.(map[string]any)["delta_cosine"], 1e-6)
	}
	// CKA of a run's activations with themselves is 1.
	cka := r.Values["activation_cka"].(map[string]any)
	require.Len(t, cka, 2)
	for _, v := range cka {
		require.InDelta(t, 1, v, 1e-6)
	}
	// Two seeds: different A, so φ is below 1 (but defined).
	r, err = Default.Run("similarity", st, ids[0], ids[1])
	require.NoError(t, err)
	require.Less(t, r.Values["mean_phi_1_1"], 1.0)
	_, err = Default.Run("similarity", st, ids[0])
	require.ErrorContains(t, err, "takes 2 run(s)")
	_, err = Default.Run("nope", st, ids[0])
	require.ErrorContains(t, err, "not registered")
}

// TestGradientSkipsUndefined: B starts at zero, so ∇A = 0 at step 1. The
// B/A ratio at step 1 and the cosines of ∇A with a zero gradient (step 1
// has no previous one, step 2's previous is step 1's zero) are undefined:
// stored as absent (they were stored as 0), and the gradient analyzer's
// consistency is the mean of the defined cosines only.
func TestGradientSkipsUndefined(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 1)
	require.NoError(t, err)
	st := store(t)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 5, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalBatches: 1},
		Data:  runs.DataRef{Source: "opticks"}, Collect: []collect.Spec{{Name: "adapter_grads", Every: 1}}}
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	m, err := job.Run(context.Background(), st, runs.Options{})
	require.NoError(t, err)
	grads, err := collect.Read[collect.AdapterGrads](st, m.ID, "adapter_grads")
	require.NoError(t, err)
	var cosA, cosB []float64
	for _, g := range grads {
		if g.Name == "_step" {
			continue
		}
		v := g.Value
		if g.Step == 1 {
			require.Zero(t, v.NormGradA)
			require.Nil(t, v.RatioBA, "‖∇B‖/‖∇A‖ with ∇A = 0 is undefined")
		} else {
			require.NotNil(t, v.RatioBA)
			require.InEpsilon(t, v.NormGradB/v.NormGradA, *v.RatioBA, 1e-12)
		}
		if g.Step <= 2 {
			require.Nil(t, v.CosPrevA, "step %d: a cosine with a zero ∇A is undefined", g.Step)
		} else {
			require.NotNil(t, v.CosPrevA, "step %d", g.Step)
			cosA = append(cosA, *v.CosPrevA)
		}
		if g.Step == 1 {
			require.Nil(t, v.CosPrevB)
		} else {
			require.NotNil(t, v.CosPrevB, "step %d", g.Step)
			cosB = append(cosB, *v.CosPrevB)
		}
	}
	require.Len(t, cosA, 2*2*3) // steps 3..5 × 4 modules
	r, err := Default.Run("gradient", st, m.ID)
	require.NoError(t, err)
	require.InDelta(t, meanOf(cosA), r.Values["consistency_a"], 1e-12)
	require.InDelta(t, meanOf(cosB), r.Values["consistency_b"], 1e-12)
}

// TestConvergenceOneVerdict: a loss that is flat (noise only) from the
// start plateaus, and the power-law fit cannot determine L∞ on it; the
// findings must not then say "not converged" beside "plateaus" (they did,
// taking the verdict from the fit).
func TestConvergenceOneVerdict(t *testing.T) {
	st := store(t)
	rng := rand.New(rand.NewPCG(5, 6))
	id := plantedRun(t, st, map[string]func(int) float64{"loss": func(int) float64 { return 2 + 0.01*rng.NormFloat64() }}, 300)
	r, err := Default.Run("convergence", st, id)
	require.NoError(t, err)
	require.NotNil(t, r.Values["plateau_step"], "%v", r.Findings)
	require.Equal(t, true, r.Values["converged"])
	for _, f := range r.Findings {
		require.NotContains(t, f, "not converged")
	}
	require.Contains(t, r.Findings[0], "converged: the smoothed loss plateaus")
}
