package runs

import (
	"context"
	"math"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/train"
	"lens/kv"
)

// nanGrads poisons the gradient at the given steps (every time they run).
func nanGrads(steps ...int) train.Hooks {
	return train.Hooks{AfterBackward: func(tr *train.Trainer, s *train.StepInfo) error {
		for _, at := range steps {
			if s.Step == at {
				tr.Params[0].Grad[0] = float32(math.NaN())
				s.GradNorm = math.NaN()
			}
		}
		return nil
	}}
}

func TestNaNRollback(t *testing.T) {
	cases := []struct {
		name     string
		poison   func() train.Hooks
		status   string
		rollback int // rollback events expected
	}{
		// One bad step at 5: back to checkpoint 4, then on with half the rate.
		{"once", func() train.Hooks {
			done := false
			return train.Hooks{AfterBackward: func(tr *train.Trainer, s *train.StepInfo) error {
				if s.Step == 5 && !done {
					done = true
					tr.Params[0].Grad[0] = float32(math.NaN())
					s.GradNorm = math.NaN()
				}
				return nil
			}}
		}, kv.StatusDone, 1},
		// Step 5 fails every time: three consecutive failures end the run.
		{"always", func() train.Hooks { return nanGrads(5) }, kv.StatusFailed, 2},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			st := openStore(t)
			spec, base := tinySpec(t, st)
			spec.Train.NaNPolicy, spec.Train.MaxBadSteps = "rollback", 3
			job, err := Prepare(spec, base)
			require.NoError(t, err)
			job.Trainer.AddHooks(c.poison())
			meta, err := job.Run(context.Background(), st, Options{})
			require.Equal(t, c.status, meta.Status, "reason %q", meta.Reason)
			events, eerr := st.Events(meta.ID)
			require.NoError(t, eerr)
			var rolls []kv.Event
			for _, e := range events {
				if e.Kind == "nan_rollback" {
					rolls = append(rolls, e)
				}
			}
			require.Len(t, rolls, c.rollback)
			require.Contains(t, rolls[0].Message, "step 5: rolled back to checkpoint 4")
			if c.status == kv.StatusFailed {
				require.Error(t, err)
				require.Contains(t, meta.Reason, "step 5: 3 consecutive non-finite steps")
				return
			}
			require.NoError(t, err)
			// One point per step, none missing, and the rate after the
			// rollback is half the schedule's.
			lr, err := st.ReadMetric(meta.ID, "lr")
			require.NoError(t, err)
			require.Len(t, lr, spec.Train.Steps)
			cfg := job.Trainer.Config
			for i, p := range lr {
				require.Equal(t, i+1, p.Step)
				want := cfg.LRAt(p.Step - 1)
				if p.Step >= 5 {
					want *= 0.5
				}
				require.InDelta(t, want, p.Value, 1e-12, "lr at step %d", p.Step)
			}
			loss, err := st.ReadMetric(meta.ID, "loss")
			require.NoError(t, err)
			for _, p := range loss {
				require.False(t, math.IsNaN(p.Value), "step %d", p.Step)
			}
			// The reduced rate is part of the checkpoint, so a resume keeps it.
			cm, err := st.LatestCheckpoint(meta.ID)
			require.NoError(t, err)
			require.Contains(t, string(cm.State), `"lr_scale":0.5`)
		})
	}
}
