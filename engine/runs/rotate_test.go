package runs

import (
	"context"
	"errors"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

func tinySpec(t *testing.T, st *kv.Store) (Spec, *model.Model) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	require.NoError(t, err)
	ref, err := StoreBase(st, base)
	require.NoError(t, err)
	return tinySpecFrom(ref), base
}

func tinySpecFrom(ref BaseRef) Spec {
	return Spec{Name: "t", Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 12, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 2, EvalBatches: 2},
		Data:  DataRef{Source: "opticks"}, CheckpointEvery: 2}
}

func TestKeepLastKeepsBest(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.KeepLast = 2
	// A learning rate that makes the run diverge after a few steps, so the
	// best checkpoint is an early one.
	spec.Train.LR = 0.5
	spec.Train.ClipNorm = 0
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	evals, err := st.ReadMetric(meta.ID, "eval/opticks")
	require.NoError(t, err)
	best, bestLoss := -1, math.Inf(1)
	for _, e := range evals {
		if e.Step > 0 && e.Value < bestLoss {
			best, bestLoss = e.Step, e.Value
		}
	}
	cps, err := st.Checkpoints(meta.ID)
	require.NoError(t, err)
	var steps []int
	for _, c := range cps {
		steps = append(steps, c.Step)
	}
	require.Contains(t, steps, 12)
	require.Contains(t, steps, 10)
	require.Contains(t, steps, best, "the best checkpoint survives rotation")
	require.LessOrEqual(t, len(steps), 3)
}

// TestNaNGuard injects a NaN into an adapter weight: the step is skipped
// (weights stay as they were), an event is recorded, and after
// MaxBadSteps consecutive bad steps the run fails with the reason.
func TestNaNGuard(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	job.Trainer.MaxBadSteps = 3
	var before []float32
	job.Trainer.AddHooks(train.Hooks{AfterStep: func(tr *train.Trainer, s *train.StepInfo) error {
		if s.Step == 4 {
			p := tr.Params[0]
			before = append([]float32(nil), tr.Param(tr.Params[1].Name).Data...)
			p.Data[0] = float32(math.NaN())
		}
		return nil
	}})
	meta, err := job.Run(context.Background(), st, Options{})
	require.Error(t, err)
	require.Equal(t, kv.StatusFailed, meta.Status)
	require.Contains(t, meta.Reason, "consecutive non-finite steps")
	events, err := st.Events(meta.ID)
	require.NoError(t, err)
	skips := 0
	for _, e := range events {
		if e.Kind == "nan_skip" {
			skips++
		}
	}
	require.Equal(t, 2, skips, "two skipped steps recorded before the third ends the run")
	require.Equal(t, before, job.Trainer.Params[1].Data, "skipped steps leave the other weights unchanged")
	// The last good checkpoint (step 2: the NaN arrived during step 4) is
	// intact and finite.
	_, ad, cm, err := Weights(st, meta.ID, -1)
	require.NoError(t, err)
	require.Equal(t, 2, cm.Step)
	for _, m := range ad.Modules {
		for _, v := range ad.A[m].Data {
			require.False(t, math.IsNaN(float64(v)))
		}
	}
}

// TestResumeWithoutCheckpoint: a run that died before its first checkpoint
// resumes from step 0 and ends identical to one that never died.
func TestResumeWithoutCheckpoint(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.CheckpointEvery = 0
	straight, err := Prepare(spec, base)
	require.NoError(t, err)
	m1, err := straight.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	dying, err := Prepare(spec, base)
	require.NoError(t, err)
	m2, err := dying.Run(context.Background(), st, Options{Hooks: []train.Hooks{{AfterStep: func(tr *train.Trainer, s *train.StepInfo) error {
		if s.Step == 3 {
			return errors.New("simulated crash")
		}
		return nil
	}}}})
	require.Error(t, err)
	_, err = st.LatestCheckpoint(m2.ID)
	require.ErrorIs(t, err, kv.ErrNotFound)
	m2, err = Resume(context.Background(), st, m2.ID, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m2.Status)
	_, a1, _, err := Weights(st, m1.ID, -1)
	require.NoError(t, err)
	_, a2, _, err := Weights(st, m2.ID, -1)
	require.NoError(t, err)
	for _, m := range a1.Modules {
		require.Equal(t, a1.A[m].Data, a2.A[m].Data)
		require.Equal(t, a1.B[m].Data, a2.B[m].Data)
	}
	l1, _ := st.ReadMetric(m1.ID, "loss")
	l2, _ := st.ReadMetric(m2.ID, "loss")
	require.Equal(t, l1, l2)
}
