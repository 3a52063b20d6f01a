package runs

import (
	"context"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/tokenize"
	"lens/engine/train"
	"lens/kv"
)

// A base model from an HF directory with a tokenizer.json trains on text
// tokenized by that tokenizer (not bytes), and resumes with it.
func TestTrainsWithTheModelsTokenizer(t *testing.T) {
	for _, fixture := range []string{"sp_bpe", "bytelevel_bpe"} {
		t.Run(fixture, func(t *testing.T) {
			src := filepath.Join("..", "tokenize", "testdata", fixture, "tokenizer.json")
			tok, err := tokenize.LoadJSON(src)
			require.NoError(t, err)
			cfg := model.Tiny()
			cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
			cfg.VocabSize = tok.VocabSize()
			m, err := model.New(cfg, 1)
			require.NoError(t, err)
			dir := filepath.Join(t.TempDir(), "hf")
			require.NoError(t, m.Save(dir))
			b, err := os.ReadFile(src)
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), b, 0o644))
			text, err := os.ReadFile(filepath.Join("..", "tokenize", "testdata", "corpus.txt"))
			require.NoError(t, err)
			corpus := filepath.Join(t.TempDir(), "c.txt")
			require.NoError(t, os.WriteFile(corpus, text, 0o644))

			st := openStore(t)
			spec := Spec{Name: "bpe", Base: BaseRef{Dir: dir, Hash: HashModel(m)},
				LoRA:  &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
				Train: train.Config{Steps: 4, BatchSize: 2, SeqLen: 16, LR: 1e-2, EvalEvery: 2},
				Data:  DataRef{Source: corpus}, CheckpointEvery: 2}
			job, err := Prepare(spec, m)
			require.NoError(t, err)
			want := len(tok.Encode(string(text)))
			require.Less(t, want, len(text), "BPE gives fewer tokens than bytes")
			require.Equal(t, want, len(job.Train.Tokens)+len(job.Eval[spec.MainEval()].Tokens))
			meta, err := job.Run(context.Background(), st, Options{})
			require.NoError(t, err)
			require.Equal(t, kv.StatusDone, meta.Status)

			// A model whose vocabulary is smaller than its tokenizer's is refused.
			small := cfg
			small.VocabSize = 256
			ms, err := model.New(small, 1)
			require.NoError(t, err)
			_, err = Prepare(spec, ms)
			require.ErrorContains(t, err, "smaller than its tokenizer's")
		})
	}
}
