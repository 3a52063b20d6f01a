package runs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"
)

// TestCheckpointEvalIsItsOwn: with eval_every = 0 the run evaluates at
// step 0 and at the end only, so the checkpoints in between carry no eval
// loss (they used to carry step 0's as if it were theirs), the last one
// carries the final evaluation, and keep_last's "best" is never a
// checkpoint judged by another step's loss.
func TestCheckpointEvalIsItsOwn(t *testing.T) {
	for _, tc := range []struct {
		name      string
		evalEvery int
		carries   []int // checkpoint steps with an eval loss
	}{
		{"eval_every=0", 0, []int{6}},
		{"eval_every=4", 4, []int{4, 6}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			st := openStore(t)
			spec, base := tinySpec(t, st)
			spec.Train.Steps, spec.Train.EvalEvery = 6, tc.evalEvery
			job, err := Prepare(spec, base)
			require.NoError(t, err)
			meta, err := job.Run(context.Background(), st, Options{})
			require.NoError(t, err)
			evals, err := st.ReadMetric(meta.ID, "eval/opticks")
			require.NoError(t, err)
			byStep := map[int]float64{}
			for _, e := range evals {
				byStep[e.Step] = e.Value
			}
			cps, err := st.Checkpoints(meta.ID)
			require.NoError(t, err)
			var steps, carries []int
			for _, c := range cps {
				steps = append(steps, c.Step)
				if v, ok := c.EvalLoss["opticks"]; ok {
					carries = append(carries, c.Step)
					require.Equal(t, byStep[c.Step], v, "checkpoint %d carries the eval of its own step", c.Step)
				}
			}
			require.Equal(t, []int{2, 4, 6}, steps)
			require.Equal(t, tc.carries, carries)
		})
	}
}
