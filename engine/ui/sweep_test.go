package ui

import (
	"encoding/json"
	"fmt"
	"net/http/httptest"
	"testing"

	"github.com/stretchr/testify/assert"
	"github.com/stretchr/testify/require"

	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/sweep"
	"lens/kv"
)

// makeSweep lays out a successive-halving sweep "grid" in the store's
// sweeps/ directory with engine/sweep itself (sweep.Create, then states as
// its driver records them): the two finished runs as a done and a stopped
// trial, and a third trial running.
func makeSweep(t *testing.T, dir string, ids []string) {
	t.Helper()
	st, err := kv.Open(dir, kv.Options{ReadOnly: true})
	require.NoError(t, err)
	var planned []sweep.Planned
	var specs []runs.Spec
	for _, id := range ids {
		m, err := st.GetRun(id)
		require.NoError(t, err)
		spec, err := runs.SpecOf(m)
		require.NoError(t, err)
		specs = append(specs, spec)
	}
	require.NoError(t, st.Close())
	specs = append(specs, specs[0])
	specs[2].Train.LR = 2e-2
	for i, s := range specs {
		pt, _ := json.Marshal(map[string]any{"r": s.LoRA.Rank, "lr": s.Train.LR})
		s.Name = fmt.Sprintf("grid/r=%d,lr=%g", s.LoRA.Rank, s.Train.LR)
		planned = append(planned, sweep.Planned{Name: s.Name, Point: pt, Spec: s})
		specs[i] = s
	}
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	require.NoError(t, err)
	h, err := sweep.NewHalving(30, 2, 2, "final_loss")
	require.NoError(t, err)
	sw, tids, err := sweep.Create(sweep.DefaultDir(dir, "grid"), "grid", sweep.BackendLocal, dir, planned,
		map[string]*model.Model{specs[0].Base.Blob: base}, h)
	require.NoError(t, err)
	best := []float64{2.5, 2.9}
	for i, tid := range tids {
		tr := sw.Trial(tid)
		tr.Attempts = 1
		switch i {
		case 0:
			tr.State, tr.RunID, tr.Steps, tr.Best, tr.Rungs = sweep.StateDone, ids[0], 30, &best[0], []float64{2.7, 2.5}
		case 1:
			tr.State, tr.RunID, tr.Steps, tr.Best, tr.Rungs = sweep.StateStopped, ids[1], 15, &best[1], []float64{2.9}
		default:
			tr.State, tr.Steps = sweep.StateRunning, 5
		}
	}
	require.NoError(t, sw.Save())
}

func TestSweepsAPI(t *testing.T) {
	dir, ids := finishedRuns(t)
	makeSweep(t, dir, ids)
	srv := New(Options{Store: dir})
	ts := httptest.NewServer(srv)
	defer func() { ts.Close(); srv.Close() }()
	var got []SweepView
	getJSON(t, ts.URL+"/api/sweeps", &got)
	require.Len(t, got, 1)
	s := got[0]
	assert.Equal(t, "grid", s.Name)
	assert.Equal(t, map[string]int{"done": 1, "stopped": 1, "running": 1}, s.Counts)
	require.NotNil(t, s.Best)
	assert.Equal(t, ids[0], s.Best.RunID)
	require.NotNil(t, s.Halving)
	assert.Equal(t, []int{15}, s.Halving.Milestones)
	require.Len(t, s.Trials, 3)
	assert.Equal(t, []float64{2.7, 2.5}, s.Trials[0].Rungs)
}
