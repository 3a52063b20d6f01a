package runs

import (
	"fmt"
	"maps"
	"os"
	"path/filepath"
	"slices"

	"lens/engine/chat"
	"lens/engine/collect"
	"lens/engine/data"
	"lens/engine/sft"
	"lens/engine/tokenize"
	"lens/engine/train"
)

// ExampleData is what a run's example datasets came to once tokenized:
// the counts a log or report shows (truncated and dropped examples).
type ExampleData struct {
	Name       string    `json:"name"`
	TrainStats sft.Stats `json:"train"`
	EvalStats  sft.Stats `json:"eval"`
	// Extra eval_data sets made of examples, by name.
	Evals map[string]sft.Stats `json:"evals,omitempty"`
}

// loaded is a run's data, ready for the trainer.
type loaded struct {
	batches  train.Batches
	corpus   *data.Batcher // the corpus batcher, nil for examples
	sets     []train.EvalSet
	evals    map[string]data.Corpus // token-stream eval sets
	trainSet data.Corpus
	examples *ExampleData
}

// exampleFormat is how examples become tokens for spec's base model: with
// its own chat template and special tokens when its directory has a
// tokenizer_config.json (as Hugging Face's apply_chat_template and TRL do),
// else with the Simple template, the tokenizer's BOS and the end marker.
func exampleFormat(spec *Spec, tok tokenize.Tokenizer) (r sft.Renderer, bos, eos []int32, err error) {
	if dir := spec.Base.Dir; dir != "" {
		if _, serr := os.Stat(filepath.Join(dir, "tokenizer_config.json")); serr == nil {
			ct, err := chat.LoadTokenizer(dir)
			if err != nil {
				return nil, nil, nil, err
			}
			bos, eos = ct.Specials()
			if ct.Template == nil {
				return noTemplate{ct.Config.Path}, bos, eos, nil
			}
			return chatRenderer{ct.Template}, bos, eos, nil
		}
	}
	bos, eos = sft.DefaultSpecials(tok)
	return sft.Simple{}, bos, eos, nil
}

// chatRenderer renders conversations with a model's chat template.
type chatRenderer struct{ t *chat.Template }

func (c chatRenderer) Render(msgs []sft.Message, addGenerationPrompt bool) (string, error) {
	cm := make([]chat.Message, len(msgs))
	for i, m := range msgs {
		cm[i] = chat.Message(m)
	}
	return c.t.Render(cm, chat.Options{AddGenerationPrompt: addGenerationPrompt})
}

// noTemplate refuses conversations for a model without a chat template,
// as transformers does, rather than guess a format the model never saw.
type noTemplate struct{ config string }

func (n noTemplate) Render([]sft.Message, bool) (string, error) {
	return "", fmt.Errorf("%s has no chat_template: conversations need the model's template (give prompt/completion or text examples instead)", n.config)
}

// prepareExamples tokenizes and batches an example dataset for spec's
// batch shape and seed.
func prepareExamples(spec *Spec, es *sft.Spec, tok tokenize.Tokenizer) (*sft.Prepared, error) {
	r, bos, eos, err := exampleFormat(spec, tok)
	if err != nil {
		return nil, err
	}
	t := spec.Train
	return es.Prepare(tok, r, bos, eos, t.BatchSize, t.SeqLen, t.GradAccum, t.Seed)
}

// loadData reads the run's training data (a corpus cut into random
// windows, or examples in padded batches; with epochs set, spec's steps
// become the steps that cover them) and its eval sets.
func loadData(spec *Spec, tok tokenize.Tokenizer) (*loaded, error) {
	ld := &loaded{evals: map[string]data.Corpus{}}
	exSets := map[string][]data.Batch{}
	if es := spec.Data.Examples; es != nil {
		p, err := prepareExamples(spec, es, tok)
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", spec.Data.Source, err)
		}
		if p.Steps > 0 {
			spec.Train.Steps = p.Steps
		}
		ld.batches = p.Train
		exSets[spec.MainEval()] = p.Eval
		ld.examples = &ExampleData{Name: p.Name, TrainStats: p.TrainStats, EvalStats: p.EvalStats}
	} else {
		trainSet, evalSet, err := LoadDataWith(tok, spec.Data)
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", spec.Data.Source, err)
		}
		ld.evals[evalName(spec.Data.Source)] = evalSet
		b, err := data.NewBatcher(trainSet.Tokens, spec.Train.BatchSize, spec.Train.SeqLen, spec.Train.Seed)
		if err != nil {
			return nil, fmt.Errorf("data %s: %w", spec.Data.Source, err)
		}
		ld.batches, ld.corpus, ld.trainSet = b, b, trainSet
	}
	for name, ref := range spec.Evals {
		if ref.Examples == nil {
			_, e, err := LoadDataWith(tok, ref)
			if err != nil {
				return nil, fmt.Errorf("eval set %s: %w", name, err)
			}
			ld.evals[name] = e
			continue
		}
		p, err := prepareExamples(spec, ref.Examples, tok)
		if err != nil {
			return nil, fmt.Errorf("eval set %s: %w", name, err)
		}
		exSets[name] = p.Eval
		if ld.examples == nil {
			ld.examples = &ExampleData{}
		}
		if ld.examples.Evals == nil {
			ld.examples.Evals = map[string]sft.Stats{}
		}
		ld.examples.Evals[name] = p.EvalStats
	}
	names := slices.Sorted(maps.Keys(ld.evals))
	for name := range exSets {
		if _, dup := ld.evals[name]; dup {
			return nil, fmt.Errorf("eval set %s: named twice", name)
		}
		names = append(names, name)
	}
	for _, name := range slices.Sorted(maps.Keys(setOf(names))) {
		if bs, ok := exSets[name]; ok {
			ld.sets = append(ld.sets, train.EvalSet{Name: name, Batches: bs})
		} else {
			ld.sets = append(ld.sets, train.EvalSet{Name: name, Tokens: ld.evals[name].Tokens})
		}
	}
	return ld, nil
}

func setOf(names []string) map[string]bool {
	m := map[string]bool{}
	for _, n := range names {
		m[n] = true
	}
	return m
}

// exampleProbe is the probe batch of a run whose own eval set is made of
// examples: the first n held-out rows, padding included (nil when the
// run's eval set is a token stream).
func (j *Job) exampleProbe(n int) *collect.Probe {
	for _, e := range j.Trainer.Evals {
		if e.Name != j.Spec.MainEval() || len(e.Batches) == 0 {
			continue
		}
		T := e.Batches[0].T
		p := &collect.Probe{}
		for _, b := range e.Batches {
			for r := 0; r < b.B && p.Batch < n; r++ {
				tg := b.Targets[r*T : (r+1)*T]
				if !anyCounted(tg) {
					continue
				}
				p.Inputs = append(p.Inputs, b.Inputs[r*T:(r+1)*T]...)
				p.Targets = append(p.Targets, tg...)
				p.Batch++
			}
		}
		return p
	}
	return nil
}

func anyCounted(tg []int32) bool {
	for _, t := range tg {
		if t >= 0 {
			return true
		}
	}
	return false
}
