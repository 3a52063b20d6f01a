package chat

import (
	"encoding/json"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
)

// refCase and refFamily are what testdata/reference.mjs writes: each
// conversation of testdata/conversations.json rendered by
// @huggingface/jinja with a family's own template, and tokenized by
// @lenml/tokenizers (transformers.js's tokenizers).
type refCase struct {
	Name     string         `json:"name"`
	Messages []Message      `json:"messages"`
	AGP      bool           `json:"add_generation_prompt"`
	Extra    map[string]any `json:"extra"`
	Text     *string        `json:"text"`
	IDs      []int32        `json:"ids"`
	Error    string         `json:"error"`
}

type refEncode struct {
	Text       string  `json:"text"`
	IDs        []int32 `json:"ids"`
	IDsSpecial []int32 `json:"ids_special"`
}

type refFamily struct {
	Family string      `json:"family"`
	Dir    string      `json:"dir"`
	Cases  []refCase   `json:"cases"`
	Encode []refEncode `json:"encode"`
}

var (
	refOnce sync.Once
	refFams []refFamily
	refSkip string
	refErr  error
)

// reference runs the node script once per test binary; it skips the test
// when node or the npm packages are missing.
func reference(t *testing.T) []refFamily {
	t.Helper()
	refOnce.Do(func() {
		node, err := exec.LookPath("node")
		if err != nil {
			refSkip = "node is not installed; the chat-template comparison needs node 18+ and `npm ci --prefix engine/chat/testdata`"
			return
		}
		if _, err := os.Stat(filepath.Join("testdata", "node_modules", "@huggingface", "jinja")); err != nil {
			refSkip = "the reference packages are not installed: run `npm ci --prefix engine/chat/testdata`"
			return
		}
		cmd := exec.Command(node, "reference.mjs")
		cmd.Dir = "testdata"
		var stderr strings.Builder
		cmd.Stderr = &stderr
		out, err := cmd.Output()
		if err != nil {
			refErr = errors.New("node reference.mjs: " + err.Error() + ": " + stderr.String())
			return
		}
		refErr = json.Unmarshal(out, &refFams)
	})
	if refSkip != "" {
		t.Skip(refSkip)
	}
	if refErr != nil {
		t.Fatal(refErr)
	}
	return refFams
}

var (
	tokMu    sync.Mutex
	tokCache = map[string]*Tokenizer{}
)

func loadFamily(t *testing.T, f refFamily) *Tokenizer {
	t.Helper()
	tokMu.Lock()
	defer tokMu.Unlock()
	if tok, ok := tokCache[f.Dir]; ok {
		return tok
	}
	tok, err := LoadTokenizer(filepath.Join("testdata", f.Dir))
	if err != nil {
		t.Fatal(err)
	}
	tokCache[f.Dir] = tok
	return tok
}

// TestRenderMatchesHF renders every reference conversation with Go and
// requires the text byte for byte, the token ids of the text, and the
// template's own message where the template raises.
func TestRenderMatchesHF(t *testing.T) {
	fams := reference(t)
	if len(fams) < 4 {
		t.Fatalf("reference has %d families, want at least 4", len(fams))
	}
	for _, f := range fams {
		t.Run(f.Family, func(t *testing.T) {
			tok := loadFamily(t, f)
			for _, c := range f.Cases {
				got, err := tok.ApplyChatTemplate(c.Messages, Options{AddGenerationPrompt: c.AGP, Extra: c.Extra})
				if c.Text == nil {
					var re *RaiseError
					if !errors.As(err, &re) || re.Message != c.Error {
						t.Errorf("%s (add_generation_prompt=%v): got error %v, want the template's %q", c.Name, c.AGP, err, c.Error)
					}
					continue
				}
				if err != nil {
					t.Errorf("%s (add_generation_prompt=%v): %v", c.Name, c.AGP, err)
					continue
				}
				if got != *c.Text {
					t.Errorf("%s (add_generation_prompt=%v):\n got %q\nwant %q", c.Name, c.AGP, got, *c.Text)
					continue
				}
				if ids := tok.Encode(got, false); !slices.Equal(ids, c.IDs) {
					t.Errorf("%s (add_generation_prompt=%v): token ids\n got %v\nwant %v", c.Name, c.AGP, ids, c.IDs)
				}
			}
		})
	}
}

// TestEncodeMatchesHF compares Encode with and without special tokens.
// DeepSeek-V3's config says add_bos_token (class LlamaTokenizerFast, whose
// Python constructor rebuilds the post-processor with BOS) while its
// tokenizer.json post-processor adds nothing; transformers.js reads only
// the post-processor, so there the Python behaviour is checked instead:
// BOS, then the plain ids.
func TestEncodeMatchesHF(t *testing.T) {
	for _, f := range reference(t) {
		t.Run(f.Family, func(t *testing.T) {
			tok := loadFamily(t, f)
			for _, e := range f.Encode {
				if got := tok.Encode(e.Text, false); !slices.Equal(got, e.IDs) {
					t.Errorf("Encode(%q, false) = %v, want %v", e.Text, got, e.IDs)
				}
				want := e.IDsSpecial
				if f.Family == "deepseek_v3" {
					bos, _ := tok.BPE.TokenID(tok.Config.Special["bos_token"])
					want = append([]int32{bos}, e.IDs...)
				}
				if got := tok.Encode(e.Text, true); !slices.Equal(got, want) {
					t.Errorf("Encode(%q, true) = %v, want %v", e.Text, got, want)
				}
				if back := tok.Decode(tok.Encode(e.Text, false)); back != e.Text {
					t.Errorf("Decode(Encode(%q)) = %q", e.Text, back)
				}
			}
		})
	}
}

// TestRenderSpans checks the assistant spans on the reference texts: each
// span holds exactly the text listed (taken from the reference rendering:
// the assistant's content and the template's end of turn), and the token
// mask marks exactly the span's tokens.
func TestRenderSpans(t *testing.T) {
	fams := map[string]refFamily{}
	for _, f := range reference(t) {
		fams[f.Family] = f
	}
	tests := []struct {
		family, conv string
		spans        []string // the text of each assistant span
		err          string   // or an error containing this
	}{
		{"llama3_1", "system_user_assistant", []string{"4.<|eot_id|>"}, ""},
		{"llama3_1", "multi_turn", []string{"7<|eot_id|>", "11, then 13.\n\nDone.<|eot_id|>"}, ""},
		{"llama3_1", "multi_turn_open", []string{"Salut & au revoir — à bientôt! 你好 🙂<|eot_id|>"}, ""},
		{"gemma3", "system_user_assistant", []string{"4.<end_of_turn>\n"}, ""},
		{"gemma3", "multi_turn", []string{"7<end_of_turn>\n", "11, then 13.\n\nDone.<end_of_turn>\n"}, ""},
		{"gemma3", "bad_roles", nil, "Conversation roles must alternate"},
		{"deepseek_v3", "multi_turn", []string{"7<｜end▁of▁sentence｜>", "11, then 13.\n\nDone.<｜end▁of▁sentence｜>"}, ""},
		{"deepseek_v3", "think", []string{"<think>\nreasoning here\n</think>\n\nBecause.<｜end▁of▁sentence｜>"}, ""},
		// Qwen3 adds an empty think block to the last assistant turn after
		// the last user turn only, so a one-turn conversation is fine...
		{"qwen3", "system_user_assistant", []string{"<think>\n\n</think>\n\n4.<|im_end|>\n"}, ""},
		{"qwen3", "think", []string{"<think>\nreasoning here\n</think>\n\nBecause.<|im_end|>\n"}, ""},
		// ...but an earlier turn renders without it once a user turn
		// follows, which breaks the prefix property.
		{"qwen3", "multi_turn", nil, "not prefix-stable"},
	}
	for _, tc := range tests {
		t.Run(tc.family+"/"+tc.conv, func(t *testing.T) {
			f, ok := fams[tc.family]
			if !ok {
				t.Fatalf("no reference family %s", tc.family)
			}
			var c *refCase
			for i := range f.Cases {
				if f.Cases[i].Name == tc.conv && !f.Cases[i].AGP {
					c = &f.Cases[i]
				}
			}
			if c == nil {
				t.Fatalf("no reference conversation %s", tc.conv)
			}
			tok := loadFamily(t, f)
			e, err := tok.EncodeChat(c.Messages, Options{})
			if tc.err != "" {
				if err == nil || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("got error %v, want one containing %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if e.Text != *c.Text {
				t.Fatalf("text %q, want the reference %q", e.Text, *c.Text)
			}
			if !slices.Equal(e.IDs, c.IDs) {
				t.Fatalf("ids %v, want the reference %v", e.IDs, c.IDs)
			}
			var got []string
			for _, sp := range e.Assistant {
				got = append(got, e.Text[sp.Start:sp.End])
			}
			if !slices.Equal(got, tc.spans) {
				t.Fatalf("spans %q, want %q", got, tc.spans)
			}
			// The masked tokens decode to the spans, in order.
			var masked []int32
			var parts []string
			for j, id := range e.IDs {
				if e.AssistantMask[j] {
					masked = append(masked, id)
				} else if len(masked) > 0 {
					parts = append(parts, tok.Decode(masked))
					masked = nil
				}
			}
			if len(masked) > 0 {
				parts = append(parts, tok.Decode(masked))
			}
			if !slices.Equal(parts, tc.spans) {
				t.Fatalf("masked tokens decode to %q, want %q", parts, tc.spans)
			}
		})
	}
}
