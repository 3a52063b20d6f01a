package tokenize

import (
	"bytes"
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// The fixtures under testdata come from make_fixtures.py: a SentencePiece
// BPE model converted as transformers' LlamaConverter does, and a byte-level
// BPE model, each with reference ids from code that shares nothing with
// this package (sentencepiece itself; a GPT-2 style Python encoder).

type fixtureCase struct {
	Text            string  `json:"text"`
	SP              []int32 `json:"sp"`
	ByteLevelLlama3 []int32 `json:"bytelevel_llama3"`
	ByteLevelGPT2   []int32 `json:"bytelevel_gpt2"`
}

type fixtures struct {
	Generator struct {
		SentencePiece string `json:"sentencepiece"`
	} `json:"generator"`
	Cases []fixtureCase `json:"cases"`
}

func readFixtures(t testing.TB) fixtures {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", "expected.json"))
	require.NoError(t, err)
	var f fixtures
	require.NoError(t, json.Unmarshal(data, &f))
	require.Greater(t, len(f.Cases), 20)
	return f
}

func loadFixture(t testing.TB, name string) *BPE {
	t.Helper()
	tok, err := LoadJSON(filepath.Join("testdata", name, "tokenizer.json"))
	require.NoError(t, err)
	return tok
}

// fixtureVariant loads a fixture with top-level fields replaced.
func fixtureVariant(t testing.TB, name string, replace map[string]any) *BPE {
	t.Helper()
	data, err := os.ReadFile(filepath.Join("testdata", name, "tokenizer.json"))
	require.NoError(t, err)
	var m map[string]any
	require.NoError(t, json.Unmarshal(data, &m))
	for k, v := range replace {
		m[k] = v
	}
	data, err = json.Marshal(m)
	require.NoError(t, err)
	tok, err := ParseJSON(data)
	require.NoError(t, err)
	return tok
}

func TestSentencePieceFixture(t *testing.T) {
	f := readFixtures(t)
	tok := loadFixture(t, "sp_bpe")
	// Mistral's newer layout: no normalizer, Metaspace(first, no split).
	metaspace := fixtureVariant(t, "sp_bpe", map[string]any{
		"normalizer":    nil,
		"pre_tokenizer": map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false},
		"decoder":       map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "split": false}, map[string]any{"type": "ByteFallback"}, map[string]any{"type": "Fuse"}}},
	})
	byteFallbacks := 0
	for _, c := range f.Cases {
		t.Run(caseName(c.Text), func(t *testing.T) {
			ids := tok.Encode(c.Text)
			require.Equal(t, c.SP, nonNil(ids), "ids of %q", c.Text)
			if strings.HasPrefix(c.Text, " ") || strings.HasPrefix(c.Text, "▁") {
				// HF's Metaspace prepends no ▁ where the text already
				// starts with one, unlike sentencepiece and Prepend.
				// So it encodes " x" as the Prepend layout encodes "x".
				_, size := utf8.DecodeRuneInString(c.Text)
				if rest := c.Text[size:]; rest != "" {
					require.Equal(t, tok.Encode(rest), metaspace.Encode(c.Text))
				}
			} else {
				require.Equal(t, c.SP, nonNil(metaspace.Encode(c.Text)), "Metaspace layout, ids of %q", c.Text)
			}
			for _, id := range ids {
				require.False(t, tok.IsSpecial(id), "Encode produced special token %d", id)
				if s, _ := tok.Token(id); strings.HasPrefix(s, "<0x") {
					byteFallbacks++
				}
			}
			if !strings.Contains(c.Text, "▁") {
				require.Equal(t, c.Text, tok.Decode(ids))
				if !strings.HasPrefix(c.Text, " ") {
					require.Equal(t, c.Text, metaspace.Decode(ids))
				}
			}
		})
	}
	require.Greater(t, byteFallbacks, 10, "the cases exercise byte fallback")
	bos, ok := tok.BOS()
	require.True(t, ok)
	require.Equal(t, int32(1), bos)
}

func TestByteLevelFixture(t *testing.T) {
	f := readFixtures(t)
	llama3 := loadFixture(t, "bytelevel_bpe")
	// GPT-2's layout: ByteLevel with its built-in regex.
	gpt2 := fixtureVariant(t, "bytelevel_bpe", map[string]any{
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": true},
	})
	// Split by the GPT-2 pattern, then ByteLevel without regex: the same.
	gpt2Split := fixtureVariant(t, "bytelevel_bpe", map[string]any{
		"pre_tokenizer": map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "Split", "pattern": map[string]any{"Regex": gpt2Pattern}, "behavior": "Isolated", "invert": false},
			map[string]any{"type": "ByteLevel", "add_prefix_space": false, "use_regex": false},
		}},
	})
	prefixed := fixtureVariant(t, "bytelevel_bpe", map[string]any{
		"pre_tokenizer": map[string]any{"type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true},
	})
	differ := 0
	for _, c := range f.Cases {
		t.Run(caseName(c.Text), func(t *testing.T) {
			require.Equal(t, c.ByteLevelLlama3, nonNil(llama3.Encode(c.Text)), "Llama-3 split, ids of %q", c.Text)
			require.Equal(t, c.ByteLevelGPT2, nonNil(gpt2.Encode(c.Text)), "GPT-2 ByteLevel, ids of %q", c.Text)
			require.Equal(t, c.ByteLevelGPT2, nonNil(gpt2Split.Encode(c.Text)), "GPT-2 Split, ids of %q", c.Text)
			if c.Text != "" && !strings.HasPrefix(c.Text, " ") {
				require.Equal(t, gpt2.Encode(" "+c.Text), prefixed.Encode(c.Text), "add_prefix_space")
			}
			if !equalIDs(c.ByteLevelGPT2, c.ByteLevelLlama3) {
				differ++
			}
			for _, tk := range []*BPE{llama3, gpt2} {
				require.Equal(t, c.Text, tk.Decode(tk.Encode(c.Text)))
			}
		})
	}
	require.GreaterOrEqual(t, differ, 2, "the cases tell the two patterns apart")
	bos, ok := llama3.BOS()
	require.True(t, ok)
	name, _ := llama3.Token(bos)
	require.Equal(t, "<|begin_of_text|>", name)
}

func caseName(s string) string {
	if r := []rune(s); len(r) > 24 {
		s = string(r[:24]) + "…"
	}
	return strconv.Quote(s)
}

func nonNil(ids []int32) []int32 {
	if ids == nil {
		return []int32{}
	}
	return ids
}

func equalIDs(a, b []int32) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}

// TestFixturesRegenerate reruns make_fixtures.py and checks that it
// reproduces the committed fixtures, so they cannot drift from the script.
func TestFixturesRegenerate(t *testing.T) {
	const python = "/usr/bin/python3"
	if _, err := os.Stat(python); err != nil {
		t.Skipf("%s not found: cannot regenerate the fixtures (they are committed)", python)
	}
	out, err := exec.Command(python, "-c", "import sentencepiece, regex; print(sentencepiece.__version__)").Output()
	if err != nil {
		t.Skipf("%s lacks sentencepiece or regex (apt-get install python3-sentencepiece python3-regex): %v", python, err)
	}
	f := readFixtures(t)
	if v := strings.TrimSpace(string(out)); v != f.Generator.SentencePiece {
		t.Skipf("sentencepiece %s differs from the %s the fixtures were made with", v, f.Generator.SentencePiece)
	}
	dir := t.TempDir()
	cmd := exec.Command(python, filepath.Join("testdata", "make_fixtures.py"), "--out", dir)
	msg, err := cmd.CombinedOutput()
	require.NoError(t, err, "%s", msg)
	for _, name := range []string{"expected.json", "sp_bpe/tokenizer.json", "bytelevel_bpe/tokenizer.json"} {
		want, err := os.ReadFile(filepath.Join("testdata", name))
		require.NoError(t, err)
		got, err := os.ReadFile(filepath.Join(dir, name))
		require.NoError(t, err)
		require.True(t, bytes.Equal(want, got), "%s differs from a fresh make_fixtures.py run", name)
	}
}
