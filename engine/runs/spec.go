// Package runs ties the engine to the store: it trains a run while
// recording its configuration, metrics, events and checkpoints in kv;
// caches pretrained base models by a hash of what made them; reopens runs
// and their checkpoints; and exports adapters and base models. A Go program
// uses it as a library; the Starlark builtins are a thin layer over it.
package runs

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"

	"lens/engine/collect"
	"lens/engine/data"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
	"lens/engine/tokenize"
	"lens/engine/train"
)

// Version is the lens version recorded with every run.
var Version = "0.1.0"

// BaseRef says where a run's base model comes from, so that it can be
// rebuilt long after the run: a blob in the store (pretrained or created
// by a script) or an HF directory on disk.
type BaseRef struct {
	Blob string `json:"blob,omitempty"` // key in the store's "model" namespace
	Dir  string `json:"dir,omitempty"`  // HF model directory
	Init bool   `json:"init,omitempty"` // random initialisation from ModelConfig and Seed
	Seed uint64 `json:"seed,omitempty"`
	Hash string `json:"hash"` // content hash of config and weights
}

// DataRef names a corpus: "opticks", "gocode" or a path, and the fraction
// held out for evaluation (the tail); or, with Examples, a dataset of
// examples for supervised fine-tuning (Source is then its path or name).
type DataRef struct {
	Source   string    `json:"source"`
	EvalFrac float64   `json:"eval_frac"`
	Examples *sft.Spec `json:"examples,omitempty"`
}

// Spec is everything a training run needs; it is stored as the run's
// config, so a run can be inspected and resumed from its record alone.
type Spec struct {
	Name            string             `json:"name"`
	Tags            []string           `json:"tags,omitempty"`
	Script          string             `json:"script,omitempty"`
	ScriptHash      string             `json:"script_hash,omitempty"`
	Args            map[string]string  `json:"args,omitempty"`
	Base            BaseRef            `json:"base"`
	ModelConfig     model.Config       `json:"model_config"`
	LoRA            *lora.Config       `json:"lora,omitempty"` // nil for full training
	LoRASeed        uint64             `json:"lora_seed"`
	Init            *InitRef           `json:"init,omitempty"` // the adapter to start from (nil: lora.New's initialisation)
	Train           train.Config       `json:"train"`
	Data            DataRef            `json:"data"`
	Evals           map[string]DataRef `json:"evals,omitempty"` // extra held-out sets
	CheckpointEvery int                `json:"checkpoint_every"`
	Device          string             `json:"device,omitempty"`    // where it trains: "cpu" (also when empty); see engine/device
	KeepLast        int                `json:"keep_last,omitempty"` // keep the K latest checkpoints and the best (0: keep all)
	Collect         []collect.Spec     `json:"collect,omitempty"`
	ProbeBatch      int                `json:"probe_batch,omitempty"` // windows of the eval data the probe collectors use (default: 512 tokens' worth)
}

// defaultEvalFrac is the held-out tail of a corpus when none is given.
const defaultEvalFrac = 0.05

// Tokenizer is the tokenizer of every built-in source: bytes.
func Tokenizer() tokenize.Tokenizer { return tokenize.NewByte() }

// Tokenizer is the run's tokenizer: the tokenizer.json of its base model's
// HF directory when there is one, else bytes.
func (s Spec) Tokenizer() (tokenize.Tokenizer, error) {
	if s.Base.Dir != "" {
		return tokenize.Load(s.Base.Dir)
	}
	return Tokenizer(), nil
}

// LoadData reads a corpus as bytes and splits off its held-out tail.
func LoadData(ref DataRef) (trainSet, evalSet data.Corpus, err error) {
	return LoadDataWith(Tokenizer(), ref)
}

// LoadDataWith is LoadData with the given tokenizer.
func LoadDataWith(tok tokenize.Tokenizer, ref DataRef) (trainSet, evalSet data.Corpus, err error) {
	if ref.Examples != nil {
		return data.Corpus{}, data.Corpus{}, fmt.Errorf("data %s: a dataset of examples, not a corpus (pretraining takes a corpus)", ref.Source)
	}
	c, err := data.Source(tok, ref.Source)
	if err != nil {
		return data.Corpus{}, data.Corpus{}, err
	}
	frac := ref.EvalFrac
	if frac == 0 {
		frac = defaultEvalFrac
	}
	return data.Split(c, frac)
}

// HashModel is a content hash of a model's config and weights
// (model.Hash, which says what it covers).
func HashModel(m *model.Model) string { return model.Hash(m) }

// hashJSON hashes any JSON-able value, for cache keys.
func hashJSON(v any) string {
	b, _ := json.Marshal(v)
	s := sha256.Sum256(b)
	return hex.EncodeToString(s[:])[:24]
}

// QuickstartPretrain is the recipe scripts/quickstart.star uses for its
// base model, kept here so the long learning test checks the same thing.
func QuickstartPretrain() train.Config {
	return train.Config{Steps: 400, BatchSize: 16, SeqLen: 128, LR: 4e-3, Warmup: 40, Schedule: "cosine", EvalEvery: 100, EvalBatches: 16}
}
