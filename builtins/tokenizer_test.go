package builtins

import (
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"go.starlark.net/starlark"
	"go.starlark.net/syntax"

	"lens/engine/chat"
)

// tokenizerDir is a model directory with the byte-level BPE fixture of
// engine/tokenize and a small tokenizer_config.json with a chat template.
func tokenizerDir(t *testing.T) string {
	t.Helper()
	dir := t.TempDir()
	b, err := os.ReadFile("../engine/tokenize/testdata/bytelevel_bpe/tokenizer.json")
	if err != nil {
		t.Fatal(err)
	}
	cfg := `{"bos_token": "<|begin_of_text|>", "eos_token": {"content": "<|end_of_text|>"},
	  "chat_template": "{{ bos_token }}{% for m in messages %}{% if m.role == 'system' and not loop.first %}{{ raise_exception('system must come first') }}{% endif %}<{{ m.role }}>{{ m.content | trim }}{{ eos_token }}{% endfor %}{% if add_generation_prompt %}<assistant>{% endif %}{% if flag is defined %}[{{ flag }}]{% endif %}"}`
	for name, body := range map[string][]byte{"tokenizer.json": b, "tokenizer_config.json": []byte(cfg)} {
		if err := os.WriteFile(filepath.Join(dir, name), body, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	return dir
}

func runStar(t *testing.T, src string, globals starlark.StringDict) (starlark.StringDict, error) {
	t.Helper()
	pre := Modules(nil)
	for k, v := range globals {
		pre[k] = v
	}
	th := &starlark.Thread{Name: "test"}
	return starlark.ExecFileOptions(&syntax.FileOptions{}, th, "tokenizer_test.star", src, pre)
}

// The Starlark tokenizer gives what engine/chat gives for the same
// directory: the builtin only converts.
func TestTokenizerBuiltin(t *testing.T) {
	dir := tokenizerDir(t)
	ref, err := chat.LoadTokenizer(dir)
	if err != nil {
		t.Fatal(err)
	}
	msgs := []chat.Message{{Role: "system", Content: "Be brief. "}, {Role: "user", Content: "hi there"}}
	wantText, err := ref.ApplyChatTemplate(msgs, chat.Options{AddGenerationPrompt: true, Extra: map[string]any{"flag": int64(3)}})
	if err != nil {
		t.Fatal(err)
	}
	out, err := runStar(t, `
tok = model.tokenizer(dir)
msgs = [{"role": "system", "content": "Be brief. "}, {"role": "user", "content": "hi there"}]
text = tok.apply_chat_template(msgs, add_generation_prompt = True, flag = 3)
ids = tok.apply_chat_template(msgs, add_generation_prompt = True, tokenize = True, flag = 3)
plain = tok.encode("hello world", add_special = False)
special = tok.encode("hello world")
back = tok.decode(special)
attrs = [tok.vocab_size, tok.bos_token, tok.eos_token, tok.pad_token]

# A model loaded from the directory carries its tokenizer.
model.tiny(vocab_size = tok.vocab_size).save(dir)
from_model = model.tokenizer(model.from_dir(dir)).apply_chat_template(msgs, add_generation_prompt = True, flag = 3)
`, starlark.StringDict{"dir": starlark.String(dir)})
	if err != nil {
		t.Fatal(err)
	}
	if got := string(out["text"].(starlark.String)); got != wantText {
		t.Errorf("text %q, want %q", got, wantText)
	}
	ints := func(name string) []int32 {
		var ids []int32
		l := out[name].(*starlark.List)
		for i := range l.Len() {
			n, _ := starlark.AsInt32(l.Index(i))
			ids = append(ids, int32(n))
		}
		return ids
	}
	if got, want := ints("ids"), ref.Encode(wantText, false); !slices.Equal(got, want) {
		t.Errorf("tokenize=True: %v, want %v", got, want)
	}
	if got, want := ints("plain"), ref.Encode("hello world", false); !slices.Equal(got, want) {
		t.Errorf("encode(add_special=False): %v, want %v", got, want)
	}
	bos, _ := ref.BPE.BOS()
	if got, want := ints("special"), append([]int32{bos}, ref.Encode("hello world", false)...); !slices.Equal(got, want) {
		t.Errorf("encode(): %v, want %v", got, want)
	}
	if got := string(out["back"].(starlark.String)); got != "<|begin_of_text|>hello world" {
		t.Errorf("decode: %q", got)
	}
	if got := string(out["from_model"].(starlark.String)); got != wantText {
		t.Errorf("through model.from_dir: %q, want %q", got, wantText)
	}
	if got, want := out["attrs"].String(), fmt.Sprintf(`[%d, "<|begin_of_text|>", "<|end_of_text|>", None]`, ref.VocabSize()); got != want {
		t.Errorf("attributes %s", got)
	}
}

func TestTokenizerBuiltinErrors(t *testing.T) {
	dir := tokenizerDir(t)
	tests := []struct{ src, want string }{
		{`model.tokenizer(model.tiny())`, "model.tokenizer: this model has no directory"},
		{`model.tokenizer(3)`, "model.tokenizer: model: want a model or a directory path, got int"},
		{`model.tokenizer(dir + "/missing")`, "model.tokenizer: tokenizer:"},
		{`model.tokenizer(dir).apply_chat_template([{"role": "user"}])`, `tokenizer.apply_chat_template: messages[0]: missing "content"`},
		{`model.tokenizer(dir).apply_chat_template([{"role": "user", "content": 1}])`, `messages[0]["content"]: want a string, got int`},
		{`model.tokenizer(dir).apply_chat_template(["hi"])`, "messages[0]: want a dict with role and content, got string"},
		// The template's own message.
		{`model.tokenizer(dir).apply_chat_template([{"role": "user", "content": "a"}, {"role": "system", "content": "b"}])`, "template raised: system must come first"},
		{`model.tokenizer(dir).decode([1, "x"])`, "tokenizer.decode: ids[1]:"},
		{`model.tokenizer(dir).encode("a", add_specials = True)`, "unexpected keyword argument"},
	}
	for _, tc := range tests {
		_, err := runStar(t, tc.src, starlark.StringDict{"dir": starlark.String(dir)})
		if err == nil || !strings.Contains(err.Error(), tc.want) {
			t.Errorf("%s: got %v, want an error containing %q", tc.src, err, tc.want)
		}
	}
}
