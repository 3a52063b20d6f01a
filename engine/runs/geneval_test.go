package runs

import (
	"context"
	"encoding/json"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/generate"
	"lens/engine/sft"
	"lens/engine/tokenize"
	"lens/engine/train"
	"lens/kv"
)

// A run that memorises four prompt/completion examples answers them
// exactly after training and not before; the score is recorded as the
// metric gen/<set>/exact at the run's last step with every prediction,
// and each prediction is the greedy continuation cut at the end marker.
func TestGenerateEval(t *testing.T) {
	st := openStore(t)
	spec, base := exampleSpec(t, st)
	spec.LoRA = nil
	spec.Train = train.Config{Steps: 80, BatchSize: 4, SeqLen: 48, LR: 3e-3, Schedule: "constant"}
	exs := []sft.Example{
		{Prompt: "// Abs returns |x|.\nname:", Completion: " Abs"},
		{Prompt: "// Max returns the larger.\nname:", Completion: " Max"},
		{Prompt: "// Sqrt returns the root.\nname:", Completion: " Sqrt"},
		{Prompt: "// Join joins paths.\nname:", Completion: " Join"},
	}
	es := &sft.Spec{Shape: sft.ShapeCompletion, Inline: exs, EvalShape: sft.ShapeCompletion, EvalInline: exs}
	spec.Data = DataRef{Source: "names", Examples: es}
	_, held, err := es.Load()
	require.NoError(t, err)
	o := GenEval{Set: "names", MaxNewTokens: 16, Scorer: GenScorers["exact"], ScorerName: "exact"}

	before, err := GenerateEval(context.Background(), base, nil, spec.Base, held, o)
	require.NoError(t, err)
	require.Equal(t, 4, before.N)
	require.Zero(t, before.Score)

	job, err := Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	after, err := GenerateEvalRun(context.Background(), st, meta.ID, held, o)
	require.NoError(t, err)
	require.Equal(t, 1.0, after.Score, "%+v", after.Predictions)

	// The prediction is the model's own greedy continuation up to the end marker.
	m, _, _, err := Weights(st, meta.ID, -1)
	require.NoError(t, err)
	g, err := generate.New(m, nil)
	require.NoError(t, err)
	tok := tokenize.NewByte()
	ids, err := g.Generate(context.Background(), tok.Encode(exs[2].Prompt), generate.Options{MaxNewTokens: 16}, nil)
	require.NoError(t, err)
	require.Equal(t, " Sqrt"+sft.EndMarker, tok.Decode(ids)[:len(" Sqrt"+sft.EndMarker)])
	require.Equal(t, " Sqrt", after.Predictions[2].Prediction)

	pts, err := st.ReadMetric(meta.ID, "gen/names/exact")
	require.NoError(t, err)
	require.Equal(t, []kv.Point{{Step: 80, Value: 1}}, pts)
	recs, err := st.ReadCollected(meta.ID, "generate")
	require.NoError(t, err)
	require.Len(t, recs, 1)
	var preds []GenPrediction
	require.NoError(t, json.Unmarshal(recs[0].Data, &preds))
	require.Equal(t, after.Predictions, preds)

	// "contains" gives credit where "exact" does not.
	c, err := GenScorers["contains"](" Sqrt is it", exs[2])
	require.NoError(t, err)
	require.Equal(t, 1.0, c)
	e, err := GenScorers["exact"](" Sqrt is it", exs[2])
	require.NoError(t, err)
	require.Zero(t, e)

	// Text examples have nothing to answer.
	_, err = GenerateEval(context.Background(), base, nil, spec.Base, sft.Dataset{Name: "t", Shape: sft.ShapeText, Examples: []sft.Example{{Text: "x", Where: "t.jsonl:1"}}}, o)
	require.ErrorContains(t, err, "t.jsonl:1")
}
