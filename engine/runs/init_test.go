package runs

import (
	"context"
	"encoding/json"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// mustTrain prepares and runs spec to the end.
func mustTrain(t *testing.T, st *kv.Store, spec Spec, base *model.Model) kv.RunMeta {
	t.Helper()
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	m, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, m.Status)
	return m
}

// evalAt is a run's eval loss on its data at a step.
func evalAt(t *testing.T, st *kv.Store, id string, step int) float64 {
	t.Helper()
	pts, err := st.ReadMetric(id, "eval/opticks")
	require.NoError(t, err)
	for _, p := range pts {
		if p.Step == step {
			return p.Value
		}
	}
	t.Fatalf("run %s has no eval at step %d", id, step)
	return 0
}

// TestInitFromRun: a run started from another run's adapter evaluates at
// step 0 exactly where that run ended, records which checkpoint and which
// values it started from, and trains on from there.
func TestInitFromRun(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.Train.Steps = 6
	first := mustTrain(t, st, spec, base)

	fresh := spec
	fresh.Train.Steps = 2
	scratch := mustTrain(t, st, fresh, base)

	cont := fresh
	cont.Name, cont.LoRASeed = "continued", 99 // the seed no longer matters
	cont.Init = &InitRef{Run: first.ID}
	second := mustTrain(t, st, cont, base)

	end := evalAt(t, st, first.ID, 6)
	require.InDelta(t, end, evalAt(t, st, second.ID, 0), 1e-9, "step 0 of the continued run is where the first ended")
	require.Greater(t, evalAt(t, st, scratch.ID, 0)-end, 1e-3, "and not where a fresh adapter starts")
	stored, err := st.GetRun(second.ID)
	require.NoError(t, err)
	s, err := SpecOf(stored)
	require.NoError(t, err)
	require.Equal(t, first.ID, s.Init.Run)
	require.Equal(t, 6, s.Init.Step, "the latest checkpoint, pinned")
	require.Len(t, s.Init.Hash, 64)
}

// TestInitFromPEFTDir: an adapter saved in PEFT format starts a run; a run
// that dies before its first checkpoint resumes from the same adapter, and
// refuses to when the directory changed meanwhile.
func TestInitFromPEFTDir(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	ad, err := lora.New(base, *spec.LoRA, 5)
	require.NoError(t, err)
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = 0.01 * float32(i%7-3)
		}
	}
	dir := filepath.Join(t.TempDir(), "adapter")
	require.NoError(t, ad.Save(dir))

	spec.Train.Steps, spec.CheckpointEvery = 4, 10
	spec.Init = &InitRef{Dir: dir}
	whole := mustTrain(t, st, spec, base)

	job, err := Prepare(spec, base)
	require.NoError(t, err)
	crashed, err := job.Run(context.Background(), st, Options{Hooks: []train.Hooks{{AfterStep: func(_ *train.Trainer, s *train.StepInfo) error {
		if s.Step == 2 {
			return errors.New("simulated crash")
		}
		return nil
	}}}})
	require.Error(t, err)
	resumed, err := Resume(context.Background(), st, crashed.ID, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, resumed.Status)
	sameMetric(t, st, whole.ID, resumed.ID, "loss")

	// A run recorded without training (how a sweep trial starts) pins its
	// init when Resume first trains it.
	unpinned := spec
	unpinned.Init = &InitRef{Dir: dir}
	cfg, err := json.Marshal(unpinned)
	require.NoError(t, err)
	require.NoError(t, st.CreateRun(kv.RunMeta{ID: "trial-1", Name: "trial", Config: cfg, Status: kv.StatusInterrupted}))
	trial, err := Resume(context.Background(), st, "trial-1", Options{})
	require.NoError(t, err)
	sameMetric(t, st, whole.ID, trial.ID, "loss")
	stored, err := st.GetRun("trial-1")
	require.NoError(t, err)
	s, err := SpecOf(stored)
	require.NoError(t, err)
	require.Len(t, s.Init.Hash, 64)

	job, err = Prepare(spec, base)
	require.NoError(t, err)
	crashed, err = job.Run(context.Background(), st, Options{Hooks: []train.Hooks{{AfterStep: func(_ *train.Trainer, s *train.StepInfo) error {
		return errors.New("simulated crash")
	}}}})
	require.Error(t, err)
	ad.B[ad.Modules[0]].Data[0] += 1
	require.NoError(t, os.RemoveAll(dir))
	require.NoError(t, ad.Save(dir))
	_, err = Resume(context.Background(), st, crashed.ID, Options{})
	require.ErrorContains(t, err, "changed since this run started")
}

func TestInitErrors(t *testing.T) {
	st := openStore(t)
	spec, base := tinySpec(t, st)
	spec.Train.Steps = 2
	first := mustTrain(t, st, spec, base)

	other, err := model.New(base.Config, 77)
	require.NoError(t, err)
	otherRef, err := StoreBase(st, other)
	require.NoError(t, err)

	for _, c := range []struct {
		what string
		edit func(s *Spec)
		want string
	}{
		{"rank", func(s *Spec) { l := *s.LoRA; l.Rank = 8; s.LoRA = &l }, "has shape [4 32] there and [8 32] in this run (rank 8 here)"},
		{"targets", func(s *Spec) { l := *s.LoRA; l.Targets = []string{"q_proj"}; s.LoRA = &l }, "which this run's lora targets ([q_proj]) do not include"},
		{"more targets", func(s *Spec) { l := *s.LoRA; l.Targets = []string{"q_proj", "v_proj", "o_proj"}; s.LoRA = &l }, "it has no adapter for model.layers.0.self_attn.o_proj"},
		{"base", func(s *Spec) { s.Base = otherRef }, "was trained on another base model"},
		{"no run", func(s *Spec) { s.Init.Run = "nope" }, "init run nope"},
	} {
		s := spec
		s.Init = &InitRef{Run: first.ID}
		c.edit(&s)
		m := base
		if c.what == "base" {
			m = other
		}
		job, err := Prepare(s, m)
		require.NoError(t, err, c.what)
		before, err := st.ListRuns()
		require.NoError(t, err)
		_, err = job.Run(context.Background(), st, Options{})
		require.ErrorContains(t, err, c.want, c.what)
		after, err := st.ListRuns()
		require.NoError(t, err)
		require.Len(t, after, len(before), "%s: a refused init stores no run", c.what)
	}
	full := spec
	full.LoRA, full.Init = nil, &InitRef{Run: first.ID}
	_, err = Prepare(full, base)
	require.ErrorContains(t, err, "full training starts from the base weights")
	both := spec
	both.Init = &InitRef{Run: first.ID, Dir: "x"}
	_, err = Prepare(both, base)
	require.ErrorContains(t, err, "one of them")
}
