package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/parquet-go/parquet-go"
	"github.com/stretchr/testify/require"

	"lens/engine/model"
)

// TestSFTBadInput: every way an example dataset or a chat template can be
// wrong stops lens run with exit 1 and a message naming the file, line
// and field (or the template's own words), and stores nothing.
func TestSFTBadInput(t *testing.T) {
	files := map[string]string{
		"corpus.txt":    corpus(),
		"ok.jsonl":      `{"q": "a", "a": "b"}` + "\n" + `{"q": "c", "a": "d"}` + "\n" + `{"q": "e", "a": "f"}` + "\n",
		"broken.jsonl":  `{"q": "a", "a": "b"}` + "\n" + `{"q": "c", "a": "d"}` + "\n" + `{"q": "e", "a": ` + "\n",
		"missing.jsonl": `{"q": "a", "a": "b"}` + "\n" + `{"q": "c", "answer": "d"}` + "\n",
		"empty.jsonl":   "",
		"long.jsonl":    `{"q": "` + strings.Repeat("x", 100) + `", "a": "b"}` + "\n" + `{"q": "c", "a": "d"}` + "\n",
		"chats.jsonl":   `{"messages": [{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]}` + "\n" + `{"messages": [{"role": "user", "content": "a"}, {"role": "assistant", "content": "b"}]}` + "\n",
	}
	dir := workspace(t, files)
	type other struct {
		Text string `parquet:"text"`
	}
	require.NoError(t, parquet.WriteFile(filepath.Join(dir, "other.parquet"), []other{{"x"}, {"y"}}))

	// A model directory with a real tokenizer and, as its chat template,
	// Gemma 3's (which refuses roles that do not alternate) or one that raises.
	src := filepath.Join("..", "..", "engine", "chat", "testdata", "node_modules", "@lenml")
	withTemplates := true
	if _, err := os.Stat(filepath.Join(src, "tokenizer-llama3_1", "models", "tokenizer.json")); err != nil {
		withTemplates = false
	} else {
		tok, err := os.ReadFile(filepath.Join(src, "tokenizer-llama3_1", "models", "tokenizer.json"))
		require.NoError(t, err)
		var gemma map[string]any
		b, err := os.ReadFile(filepath.Join(src, "tokenizer-gemma3", "models", "tokenizer_config.json"))
		require.NoError(t, err)
		require.NoError(t, json.Unmarshal(b, &gemma))
		cfg := model.Tiny()
		cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.NumAttentionHeads, cfg.NumKeyValueHeads = 16, 32, 1, 2, 2
		cfg.VocabSize = 128256
		m, err := model.New(cfg, 1)
		require.NoError(t, err)
		for name, template := range map[string]any{"gemma-tpl": gemma["chat_template"], "raising-tpl": "{{ raise_exception('this template takes no conversations') }}"} {
			d := filepath.Join(dir, name)
			require.NoError(t, m.Save(d))
			require.NoError(t, os.WriteFile(filepath.Join(d, "tokenizer.json"), tok, 0o644))
			b, err := json.Marshal(map[string]any{"chat_template": template, "bos_token": "<|begin_of_text|>", "eos_token": "<|eot_id|>"})
			require.NoError(t, err)
			require.NoError(t, os.WriteFile(filepath.Join(d, "tokenizer_config.json"), b, 0o644))
		}
	}

	train := func(modelExpr, dataExpr string) string {
		return "m = " + modelExpr + "\nd = " + dataExpr + "\nlens.train(name = 'bad', model = m, data = d, full = True, steps = 2, batch_size = 1, seq_len = 32)\n"
	}
	tiny := "model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2)"
	cases := []struct {
		name, script string
		want         []string
		templates    bool
	}{
		{"malformed JSONL line", train(tiny, `data.jsonl("broken.jsonl", prompt = "q", completion = "a")`), []string{"broken.jsonl line 3"}, false},
		{"row missing the named field", train(tiny, `data.jsonl("missing.jsonl", prompt = "q", completion = "a")`), []string{"missing.jsonl line 2", `"a"`}, false},
		{"empty dataset", train(tiny, `data.jsonl("empty.jsonl", prompt = "q", completion = "a")`), []string{"empty.jsonl", "no examples"}, false},
		{"example longer than max_len", train(tiny, `data.jsonl("long.jsonl", prompt = "q", completion = "a", eval = "ok.jsonl")`), []string{"long.jsonl line 1", "max_len = 33", `truncation = "error"`}, false},
		{"Parquet file of another schema", train(tiny, `data.parquet("other.parquet", prompt = "q", completion = "a")`), []string{"other.parquet", `"q"`, "text"}, false},
		{"a role the template rejects", train(`model.from_dir("gemma-tpl")`, `data.jsonl("chats.jsonl", eval = "chats.jsonl")`), []string{"chats.jsonl line 1", "Conversation roles must alternate"}, true},
		{"a template that raises", train(`model.from_dir("raising-tpl")`, `data.jsonl("chats.jsonl", eval = "chats.jsonl")`), []string{"chats.jsonl line 1", "this template takes no conversations"}, true},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if tc.templates && !withTemplates {
				t.Skip("the real tokenizers are not installed: run `npm ci --prefix engine/chat/testdata`")
			}
			require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.star"), []byte(tc.script), 0o644))
			_, stderr, code := lens(t, dir, "run", "bad.star")
			require.Equal(t, 1, code, stderr)
			require.Contains(t, stderr, "bad.star:", "the script's line")
			for _, w := range tc.want {
				require.Contains(t, stderr, w)
			}
			out, stderr, code := lens(t, dir, "runs")
			require.Equal(t, 0, code, stderr)
			require.NotContains(t, out, "bad", "nothing stored")
		})
	}
	out, stderr, code := lens(t, dir, "fsck")
	require.Equal(t, 0, code, out+stderr)
}
