package runs

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
	"lens/engine/train"
	"lens/kv"
)

// exampleSpec is a LoRA run on a small random tiny-layout base.
func exampleSpec(t *testing.T, st *kv.Store) (Spec, *model.Model) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 3)
	require.NoError(t, err)
	ref, err := StoreBase(st, base)
	require.NoError(t, err)
	return Spec{Name: "sft", Base: ref, LoRA: &lora.Config{Rank: 8, Alpha: 16, Targets: []string{"all-linear"}},
		Train: train.Config{Steps: 12, BatchSize: 2, SeqLen: 16, LR: 1e-2}}, base
}

// qaFile writes n prompt/completion examples whose completion follows from
// the prompt: the prompt's word, reversed.
func qaFile(t *testing.T, n int) string {
	rng := rand.New(rand.NewPCG(1, 2))
	var b strings.Builder
	for range n {
		w := make([]byte, 3+rng.IntN(4))
		for i := range w {
			w[i] = byte('a' + rng.IntN(6))
		}
		r := []byte(string(w))
		for i, j := 0, len(r)-1; i < j; i, j = i+1, j-1 {
			r[i], r[j] = r[j], r[i]
		}
		fmt.Fprintf(&b, `{"question": "reverse %s:", "answer": " %s."}`+"\n", w, r)
	}
	p := filepath.Join(t.TempDir(), "rev.jsonl")
	require.NoError(t, os.WriteFile(p, []byte(b.String()), 0o644))
	return p
}

// TestExampleRun fine-tunes the tiny model on a JSONL file of examples:
// the held-out completion loss falls, the spec records the dataset, a run
// that crashes resumes to the same metrics, and the probe collectors read
// held-out examples.
func TestExampleRun(t *testing.T) {
	st := openStore(t)
	spec, base := exampleSpec(t, st)
	path := qaFile(t, 80)
	spec.Data = DataRef{Source: path, Examples: &sft.Spec{Path: path, Fields: sft.Fields{Prompt: "question", Completion: "answer"}, EvalFrac: 0.1, Epochs: 3}}
	spec.Train = train.Config{BatchSize: 4, SeqLen: 32, LR: 1e-2, EvalEvery: 10, Seed: 3}
	spec.CheckpointEvery = 10
	spec.LoRA = nil // a random base: full training learns the pattern in a few steps
	spec.Collect = []collect.Spec{{Name: "activations", Every: 20}}
	job, err := Prepare(spec, base)
	require.NoError(t, err)
	require.Equal(t, 54, job.Spec.Train.Steps, "3 epochs of 72 examples at 4 a step")
	require.Equal(t, sft.Stats{Examples: 72, Tokens: job.Examples.TrainStats.Tokens, Trained: job.Examples.TrainStats.Trained, Longest: job.Examples.TrainStats.Longest}, job.Examples.TrainStats)
	require.Equal(t, 8, job.Examples.EvalStats.Examples)
	whole, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, whole.Status)

	ev, err := st.ReadMetric(whole.ID, "eval/rev.jsonl")
	require.NoError(t, err)
	require.Equal(t, 0, ev[0].Step)
	first, last := ev[0].Value, ev[len(ev)-1].Value
	t.Logf("held-out completion loss %.3f -> %.3f", first, last)
	require.Less(t, last, 0.75*first, "the completion loss falls")
	require.Equal(t, last, *whole.FinalLoss)

	stored, err := SpecOf(whole)
	require.NoError(t, err)
	require.Equal(t, spec.Data, stored.Data, "the record describes the dataset")
	require.Equal(t, 54, stored.Train.Steps)

	recs, err := st.CollectedSteps(whole.ID, "activations")
	require.NoError(t, err)
	require.NotEmpty(t, recs, "the probe collectors ran on held-out examples")

	job, err = Prepare(spec, base)
	require.NoError(t, err)
	crashed, err := job.Run(context.Background(), st, Options{Hooks: []train.Hooks{{AfterStep: func(_ *train.Trainer, s *train.StepInfo) error {
		if s.Step == 25 {
			return errors.New("simulated crash")
		}
		return nil
	}}}})
	require.Error(t, err)
	resumed, err := Resume(context.Background(), st, crashed.ID, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, resumed.Status)
	sameMetric(t, st, whole.ID, resumed.ID, "loss")
	sameMetric(t, st, whole.ID, resumed.ID, "eval/rev.jsonl")

	// Data that changed under a stored run is refused, not trained on.
	require.NoError(t, os.WriteFile(path, []byte(`{"question": "q", "answer": "a"}`+"\n"+`{"question": "r", "answer": "b"}`+"\n"), 0o644))
	_, err = Resume(context.Background(), st, crashed.ID, Options{})
	require.Error(t, err)
}

// TestExampleRunErrors: bad example data fails at Prepare naming the file
// and line; an example dataset is not a corpus.
func TestExampleRunErrors(t *testing.T) {
	st := openStore(t)
	spec, base := exampleSpec(t, st)
	path := filepath.Join(t.TempDir(), "bad.jsonl")
	require.NoError(t, os.WriteFile(path, []byte(`{"prompt": "a", "completion": "b"}`+"\n"+`{"prompt": "a"`+"\n"), 0o644))
	spec.Data = DataRef{Source: path, Examples: &sft.Spec{Path: path}}
	_, err := Prepare(spec, base)
	require.ErrorContains(t, err, path+" line 2: invalid JSON")

	long := filepath.Join(t.TempDir(), "long.jsonl")
	require.NoError(t, os.WriteFile(long, []byte(`{"text": "`+strings.Repeat("x", 40)+`"}`+"\n"+`{"text": "short"}`+"\n"), 0o644))
	spec.Data = DataRef{Source: long, Examples: &sft.Spec{Path: long, EvalFrac: 0.5}}
	_, err = Prepare(spec, base)
	require.ErrorContains(t, err, "long.jsonl line 1: 47 tokens exceed max_len = 17")

	_, _, err = LoadData(spec.Data)
	require.ErrorContains(t, err, "not a corpus")
}
