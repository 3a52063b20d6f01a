package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"

	"lens/engine/generate"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
	"lens/kv"
)

// GenScorer scores a model's prediction for one example: 1 is right, 0
// wrong, anything between partial credit.
type GenScorer func(prediction string, ex sft.Example) (float64, error)

// GenScorers are the built-in scorers, by name. Both compare with the
// expected answer (Expected) with surrounding white space trimmed.
var GenScorers = map[string]GenScorer{
	"exact": func(p string, ex sft.Example) (float64, error) {
		return bool01(strings.TrimSpace(p) == strings.TrimSpace(Expected(ex))), nil
	},
	"contains": func(p string, ex sft.Example) (float64, error) {
		return bool01(strings.Contains(p, strings.TrimSpace(Expected(ex)))), nil
	},
}

func bool01(b bool) float64 {
	if b {
		return 1
	}
	return 0
}

// Expected is what a model should answer to ex: its completion, or the
// content of its last assistant message.
func Expected(ex sft.Example) string {
	if len(ex.Messages) > 0 {
		return ex.Messages[len(ex.Messages)-1].Content
	}
	return ex.Completion
}

// GenEval configures a generation-based evaluation.
type GenEval struct {
	Set          string // the eval set's name (metric gen/<set>/<scorer>)
	MaxNewTokens int    // default 64
	Limit        int    // score the first Limit examples (0: all)
	Stop         []string
	Scorer       GenScorer
	ScorerName   string
}

// GenPrediction is one scored generation.
type GenPrediction struct {
	Where      string  `json:"where"`
	Prompt     string  `json:"prompt"`
	Expected   string  `json:"expected"`
	Prediction string  `json:"prediction"`
	Score      float64 `json:"score"`
}

// GenResult is the mean score over the scored examples and each prediction.
type GenResult struct {
	Score       float64         `json:"score"`
	N           int             `json:"n"`
	Predictions []GenPrediction `json:"predictions"`
}

// GenerateEval makes m (with ad, when not nil) answer every example of d
// greedily, as the run's training formatted them (the base model's chat
// template and special tokens, see exampleFormat), up to the end of
// sequence, a stop string or MaxNewTokens, and scores the answers.
func GenerateEval(ctx context.Context, m *model.Model, ad *lora.Adapter, base BaseRef, d sft.Dataset, o GenEval) (GenResult, error) {
	if o.Scorer == nil {
		return GenResult{}, fmt.Errorf("generation eval: no scorer")
	}
	if o.MaxNewTokens <= 0 {
		o.MaxNewTokens = 64
	}
	spec := Spec{Base: base}
	tok, err := spec.Tokenizer()
	if err != nil {
		return GenResult{}, err
	}
	r, bos, eos, err := exampleFormat(&spec, tok)
	if err != nil {
		return GenResult{}, err
	}
	stopIDs := []int32(nil)
	stops := append([]string(nil), o.Stop...)
	if len(eos) == 1 {
		stopIDs = eos
	} else if len(eos) > 1 {
		stops = append(stops, tok.Decode(eos))
	}
	if base.Dir != "" {
		ids, err := generate.EOSIDs(base.Dir)
		if err != nil {
			return GenResult{}, err
		}
		stopIDs = append(stopIDs, ids...)
	}
	g, err := generate.New(m, ad)
	if err != nil {
		return GenResult{}, err
	}
	exs := d.Examples
	if o.Limit > 0 && o.Limit < len(exs) {
		exs = exs[:o.Limit]
	}
	if len(exs) == 0 {
		return GenResult{}, fmt.Errorf("generation eval of %s: no examples", d.Name)
	}
	var res GenResult
	for _, ex := range exs {
		prompt, shown, err := promptOf(r, bos, tok, d.Shape, ex)
		if err != nil {
			return GenResult{}, fmt.Errorf("%s: %w", ex.Where, err)
		}
		// Answers stop at the model's last position rather than fail.
		budget := min(o.MaxNewTokens, m.Config.MaxPositionEmbeddings-len(prompt))
		if budget <= 0 {
			return GenResult{}, fmt.Errorf("%s: the prompt's %d tokens leave no room to answer within max_position_embeddings = %d", ex.Where, len(prompt), m.Config.MaxPositionEmbeddings)
		}
		var ids []int32
		text := ""
		_, err = g.Generate(ctx, prompt, generate.Options{MaxNewTokens: budget, StopIDs: stopIDs}, func(id int32) error {
			if containsInt(stopIDs, id) {
				return generate.ErrStop
			}
			ids = append(ids, id)
			text = tok.Decode(ids)
			if cut, ok := cutAtStop(text, stops); ok {
				text = cut
				return generate.ErrStop
			}
			return nil
		})
		if err != nil {
			return GenResult{}, fmt.Errorf("%s: %w", ex.Where, err)
		}
		if len(ids) == budget {
			// Out of tokens inside a stop string: its start is not answer.
			text = trimPartialStop(text, stops)
		}
		score, err := o.Scorer(text, ex)
		if err != nil {
			return GenResult{}, fmt.Errorf("%s: scorer: %w", ex.Where, err)
		}
		res.Predictions = append(res.Predictions, GenPrediction{Where: ex.Where, Prompt: shown, Expected: Expected(ex), Prediction: text, Score: score})
		res.Score += score
	}
	res.N = len(res.Predictions)
	res.Score /= float64(res.N)
	return res, nil
}

// promptOf is the tokens a model sees before its answer to ex, and their text.
func promptOf(r sft.Renderer, bos []int32, tok interface {
	Encode(string) []int32
	Decode([]int32) string
}, shape sft.Shape, ex sft.Example) ([]int32, string, error) {
	switch shape {
	case sft.ShapeCompletion:
		ids := append(append([]int32(nil), bos...), tok.Encode(ex.Prompt)...)
		return ids, ex.Prompt, nil
	case sft.ShapeMessages:
		k := len(ex.Messages) - 1
		if k < 1 || ex.Messages[k].Role != "assistant" {
			return nil, "", fmt.Errorf("a conversation to answer ends with the assistant's message (the expected answer)")
		}
		text, err := r.Render(ex.Messages[:k], true)
		if err != nil {
			return nil, "", err
		}
		enc := tok.Encode
		if ws, ok := tok.(withSpecial); ok {
			enc = ws.EncodeWithSpecial
		}
		return enc(text), text, nil
	}
	return nil, "", fmt.Errorf("examples of shape %q have no prompt to answer: give prompt/completion or messages", shape)
}

type withSpecial interface{ EncodeWithSpecial(string) []int32 }

func containsInt(xs []int32, x int32) bool {
	for _, y := range xs {
		if y == x {
			return true
		}
	}
	return false
}

func cutAtStop(text string, stops []string) (string, bool) {
	best := -1
	for _, s := range stops {
		if i := strings.Index(text, s); i >= 0 && (best < 0 || i < best) {
			best = i
		}
	}
	if best < 0 {
		return text, false
	}
	return text[:best], true
}

// trimPartialStop drops the longest end of text that begins a stop string.
func trimPartialStop(text string, stops []string) string {
	cut := len(text)
	for _, s := range stops {
		for n := min(len(s)-1, len(text)); n > 0; n-- {
			if strings.HasSuffix(text, s[:n]) {
				cut = min(cut, len(text)-n)
				break
			}
		}
	}
	return text[:cut]
}

// GenerateEvalRun evaluates run runID's latest weights on d, and records
// the mean score as the metric gen/<set>/<scorer> at the run's last step
// and every prediction under the run's "generate" records (name
// <set>/<scorer>), so lens show, reports and lens.runs(where=...) see them.
func GenerateEvalRun(ctx context.Context, st *kv.Store, runID string, d sft.Dataset, o GenEval) (GenResult, error) {
	meta, err := st.GetRun(runID)
	if err != nil {
		return GenResult{}, err
	}
	spec, err := SpecOf(meta)
	if err != nil {
		return GenResult{}, err
	}
	m, ad, cm, err := Weights(st, runID, -1)
	if err != nil {
		return GenResult{}, err
	}
	res, err := GenerateEval(ctx, m, ad, spec.Base, d, o)
	if err != nil {
		return GenResult{}, err
	}
	if o.Set == "" || o.ScorerName == "" {
		return res, errors.New("generation eval: a set and scorer name are needed to record the score")
	}
	name := "gen/" + o.Set + "/" + o.ScorerName
	if err := st.AddMetrics(runID, cm.Step, map[string]float64{name: res.Score}); err != nil {
		return res, err
	}
	b, err := json.Marshal(res.Predictions)
	if err != nil {
		return res, err
	}
	if err := st.PutCollected(runID, "generate", cm.Step, kv.Collected{Name: o.Set + "/" + o.ScorerName, Kind: kv.KindJSON, Data: b}); err != nil {
		return res, err
	}
	return res, st.Flush()
}
