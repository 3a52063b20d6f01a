package tokenize

import (
	"encoding/json"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

func splitStrings(r splitter, s string) []string {
	out := []string{}
	for _, m := range r.findAll(s) {
		out = append(out, s[m[0]:m[1]])
	}
	return out
}

// splitterPairs are the general regex matchers of the GPT-2 and Llama-3
// patterns and the hand-written ones, all checked against the same answers.
func splitterPairs(t *testing.T) map[string][2]splitter {
	gpt2, err := compileSplitRegex(gpt2Pattern)
	require.NoError(t, err)
	llama3, err := compileSplitRegex(llama3Pattern)
	require.NoError(t, err)
	return map[string][2]splitter{"regex": {gpt2, llama3}, "hand-written": {gpt2Splitter{}, llama3Splitter{}}}
}

func TestSplitRegexLookahead(t *testing.T) {
	for impl, pair := range splitterPairs(t) {
		gpt2, llama3 := pair[0], pair[1]
		t.Run(impl, func(t *testing.T) { testLookahead(t, gpt2, llama3) })
	}
}

func testLookahead(t *testing.T, gpt2, llama3 splitter) {
	// Expected splits are those of Python's regex module, which implements
	// the lookahead natively.
	for _, tc := range []struct {
		text         string
		gpt2, llama3 []string
	}{
		{"", []string{}, []string{}},
		{" ", []string{" "}, []string{" "}},
		{"a b", []string{"a", " b"}, []string{"a", " b"}},
		// The run gives its last space to the word that follows.
		{"a   b", []string{"a", "  ", " b"}, []string{"a", "  ", " b"}},
		// At the end of the text the whole run matches.
		{"a   ", []string{"a", "   "}, []string{"a", "   "}},
		// A single space before a non-letter: the lookahead fails, \s+ takes it.
		{"a \tb", []string{"a", " ", "\t", "b"}, []string{"a", " ", "\tb"}},
		{"x  \n  y", []string{"x", "  \n ", " y"}, []string{"x", "  \n", " ", " y"}},
		{"\t\tfoo", []string{"\t", "\t", "foo"}, []string{"\t", "\tfoo"}},
		{"a\u00a0\u00a0b", []string{"a", "\u00a0", "\u00a0", "b"}, []string{"a", "\u00a0", "\u00a0b"}},
		{"don't I'M", []string{"don", "'t", " I", "'", "M"}, []string{"don", "'t", " I", "'M"}},
		{"12345", []string{"12345"}, []string{"123", "45"}},
	} {
		t.Run(tc.text, func(t *testing.T) {
			require.Equal(t, tc.gpt2, splitStrings(gpt2, tc.text), "GPT-2 pattern")
			require.Equal(t, tc.llama3, splitStrings(llama3, tc.text), "Llama-3 pattern")
		})
	}
}

// TestSplitRegexMatchesPython compares with the splits make_fixtures.py
// recorded from Python's regex module for random whitespace-heavy strings.
func TestSplitRegexMatchesPython(t *testing.T) {
	data, err := os.ReadFile(filepath.Join("testdata", "expected.json"))
	require.NoError(t, err)
	var f struct {
		Splits []struct {
			Text   string   `json:"text"`
			GPT2   []string `json:"gpt2"`
			Llama3 []string `json:"llama3"`
		} `json:"splits"`
	}
	require.NoError(t, json.Unmarshal(data, &f))
	require.GreaterOrEqual(t, len(f.Splits), 300)
	for impl, pair := range splitterPairs(t) {
		for _, c := range f.Splits {
			require.Equal(t, c.GPT2, splitStrings(pair[0], c.Text), "%s GPT-2 pattern on %q", impl, c.Text)
			require.Equal(t, c.Llama3, splitStrings(pair[1], c.Text), "%s Llama-3 pattern on %q", impl, c.Text)
		}
	}
}

// TestFastSplittersMatchRegex compares the hand-written matchers with the
// general regex emulation on random strings over runes each pattern treats
// specially: case-folded contractions (ſ folds to s), numbers of every
// category, marks, Unicode spaces, CR/LF, invalid UTF-8.
func TestFastSplittersMatchRegex(t *testing.T) {
	pairs := splitterPairs(t)
	re, fast := pairs["regex"], pairs["hand-written"]
	alphabet := []string{" ", " ", " ", "\t", "\n", "\r", "\v", "\u0085", "\u00a0", "\u2028", "\u3000", "\u200b",
		"'", "'", "s", "S", "ſ", "t", "T", "r", "R", "e", "E", "v", "V", "m", "M", "l", "L", "d", "D", "x", "K",
		"1", "٣", "Ⅻ", "½", "\u0301", ".", "!", "_", "日", "🎉", "\xff", "\xe6\x97"}
	r := rand.New(rand.NewPCG(3, 5))
	for range 20000 {
		var b strings.Builder
		for range r.IntN(12) {
			b.WriteString(alphabet[r.IntN(len(alphabet))])
		}
		s := b.String()
		require.Equal(t, splitStrings(re[0], s), splitStrings(fast[0], s), "GPT-2 pattern on %q", s)
		require.Equal(t, splitStrings(re[1], s), splitStrings(fast[1], s), "Llama-3 pattern on %q", s)
	}
}

func TestSplitRegexTranslation(t *testing.T) {
	for _, tc := range []struct {
		pattern, text string
		want          []string
	}{
		// \s, \d, \w are Unicode-aware, as in Oniguruma.
		{`\s+`, "a\u3000\u2028b\vc", []string{"\u3000\u2028", "\v"}},
		{`\d+`, "x٣٤y12", []string{"٣٤", "12"}},
		{`\w+`, "héllo, wörld_1", []string{"héllo", "wörld_1"}},
		{`[^\s\w]+`, "a, b!?", []string{",", "!?"}},
		{`\S+`, "ab\u00a0cd", []string{"ab", "cd"}},
		{`[]a]+`, "x]a]y", []string{"]a]"}},
		// The lookahead alternative in the middle of a pattern, with a
		// fallback after it.
		{`\s+(?!\S)|x|\s`, "  x  ", []string{" ", " ", "x", "  "}},
		// Empty matches advance one character.
		{`a*`, "baab", []string{"", "aa", "", ""}},
	} {
		t.Run(tc.pattern, func(t *testing.T) {
			r, err := compileSplitRegex(tc.pattern)
			require.NoError(t, err)
			require.Equal(t, tc.want, splitStrings(r, tc.text))
		})
	}
	for _, tc := range []struct{ pattern, want string }{
		{`a(?=b)`, "lookaround"},
		{`(?<!a)b`, "lookaround"},
		{`x+(?!\S)`, "lookaround"},
		{`[\S]`, `\S inside a character class`},
		{`a++`, "invalid nested repetition"},
		{`(a`, "missing closing )"},
	} {
		_, err := compileSplitRegex(tc.pattern)
		require.ErrorContains(t, err, tc.want, tc.pattern)
	}
}
