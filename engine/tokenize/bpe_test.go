package tokenize

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"unicode"
	"unicode/utf8"

	"github.com/stretchr/testify/require"
)

// tiny is a small character-level BPE tokenizer.json, edited by edit.
func tiny(t testing.TB, edit func(m, model map[string]any)) []byte {
	t.Helper()
	model := map[string]any{
		"type":      "BPE",
		"unk_token": "<unk>",
		"vocab":     map[string]any{"<unk>": 0, "a": 1, "b": 2, "c": 3, "ab": 4, "bc": 5, "abc": 6, "<0xC3>": 7, "<0xA9>": 8},
		"merges":    []any{"a b", "b c", "ab c"},
	}
	m := map[string]any{"model": model}
	if edit != nil {
		edit(m, model)
	}
	data, err := json.Marshal(m)
	require.NoError(t, err)
	return data
}

func parseTiny(t testing.TB, edit func(m, model map[string]any)) *BPE {
	t.Helper()
	tok, err := ParseJSON(tiny(t, edit))
	require.NoError(t, err)
	return tok
}

func TestBPEModel(t *testing.T) {
	for _, tc := range []struct {
		name string
		edit func(m, model map[string]any)
		text string
		want []int32
	}{
		{"merge by rank", nil, "abc", []int32{6}},
		// b c outranks a b here, and no merge joins a with bc.
		{"lower rank first", func(_, md map[string]any) { md["merges"] = []any{"b c", "a b", "ab c"} }, "abc", []int32{1, 5}},
		{"pair form", func(_, md map[string]any) { md["merges"] = []any{[]any{"a", "b"}, []any{"ab", "c"}} }, "abcab", []int32{6, 4}},
		{"leftmost among equal ranks", func(_, md map[string]any) {
			md["vocab"] = map[string]any{"a": 0, "aa": 1}
			md["merges"] = []any{"a a"}
			delete(md, "unk_token")
		}, "aaa", []int32{1, 0}},
		{"unk fused", func(_, md map[string]any) { md["fuse_unk"] = true }, "axyb", []int32{1, 0, 2}},
		{"unk not fused", nil, "axyb", []int32{1, 0, 0, 2}},
		// Without an unk token HF drops the characters; their neighbours merge.
		{"no unk: dropped", func(_, md map[string]any) { delete(md, "unk_token") }, "axyb", []int32{4}},
		{"byte fallback", func(_, md map[string]any) { md["byte_fallback"] = true }, "aé", []int32{1, 7, 8}},
		{"byte fallback missing a byte: unk", func(_, md map[string]any) { md["byte_fallback"] = true }, "aè", []int32{1, 0}},
		{"ignore_merges takes a whole word from the vocab", func(_, md map[string]any) {
			md["merges"] = []any{"b c"}
			md["ignore_merges"] = true
		}, "abc", []int32{6}},
		{"without ignore_merges the merges decide", func(_, md map[string]any) { md["merges"] = []any{"b c"} }, "abc", []int32{1, 5}},
		{"continuing_subword_prefix", func(_, md map[string]any) {
			md["vocab"] = map[string]any{"<unk>": 0, "a": 1, "##b": 2, "ab": 3}
			md["merges"] = []any{"a ##b"}
			md["continuing_subword_prefix"] = "##"
		}, "abb", []int32{3, 2}},
		{"end_of_word_suffix", func(_, md map[string]any) {
			md["vocab"] = map[string]any{"<unk>": 0, "a": 1, "b": 2, "b</w>": 3, "ab</w>": 4}
			md["merges"] = []any{"a b</w>"}
			md["end_of_word_suffix"] = "</w>"
		}, "abab", []int32{1, 2, 4}},
		{"version line skipped", func(_, md map[string]any) { md["merges"] = []any{"#version: 0.2", "b c", "a bc"} }, "abc", []int32{6}},
		{"empty", nil, "", nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := parseTiny(t, tc.edit)
			require.Equal(t, tc.want, tok.Encode(tc.text))
			// The cache gives the same answer the second time.
			require.Equal(t, tc.want, tok.Encode(tc.text))
		})
	}
}

func TestAddedTokens(t *testing.T) {
	base := loadFixture(t, "sp_bpe")
	tok := fixtureVariant(t, "sp_bpe", map[string]any{"added_tokens": []any{
		map[string]any{"id": 0, "content": "<unk>", "special": true, "normalized": false},
		map[string]any{"id": 1, "content": "<s>", "special": true, "normalized": false},
		map[string]any{"id": 2, "content": "</s>", "special": true, "normalized": false},
		map[string]any{"id": 600, "content": "<tool>", "special": false, "normalized": false},
		map[string]any{"id": 601, "content": "[x]", "special": true, "normalized": false, "lstrip": true, "rstrip": true},
		map[string]any{"id": 602, "content": "cat", "special": false, "normalized": false, "single_word": true},
		map[string]any{"id": 603, "content": "hey", "special": false, "normalized": true},
		map[string]any{"id": 604, "content": "<tool>x", "special": false, "normalized": false},
	}})
	enc := base.Encode
	cat := func(parts ...[]int32) []int32 {
		var out []int32
		for _, p := range parts {
			out = append(out, p...)
		}
		return out
	}
	for _, tc := range []struct {
		name, text      string
		plain, withSpec []int32
	}{
		{"specials are text to Encode", "<s>hi</s>", enc("<s>hi</s>"), cat([]int32{1}, enc("hi"), []int32{2})},
		{"non-special found by both", "a<tool>b", cat(enc("a"), []int32{600}, enc("b")), cat(enc("a"), []int32{600}, enc("b"))},
		{"longest match wins", "<tool>x", []int32{604}, []int32{604}},
		{"lstrip and rstrip take the spaces", "a  [x]  b", enc("a  [x]  b"), cat(enc("a"), []int32{601}, enc("b"))},
		{"single_word only between non-word runes", "cat concat cats", cat([]int32{602}, enc(" concat cats")), cat([]int32{602}, enc(" concat cats"))},
		{"normalized token matched in normalized text", "say hey", cat(enc("say"), []int32{603}), cat(enc("say"), []int32{603})},
		{"normalized token needs its normalized spelling", "sayhey", enc("sayhey"), enc("sayhey")},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.plain, tok.Encode(tc.text), "Encode")
			require.Equal(t, tc.withSpec, tok.EncodeWithSpecial(tc.text), "EncodeWithSpecial")
		})
	}
	require.Equal(t, 605, tok.VocabSize())
	for _, tc := range []struct {
		name string
		id   int32
		ok   bool
	}{{"<s>", 1, true}, {"[x]", 601, true}, {"▁t", base.vocab["▁t"], true}, {"nope", 0, false}} {
		id, ok := tok.TokenID(tc.name)
		require.Equal(t, tc.ok, ok, tc.name)
		require.Equal(t, tc.id, id, tc.name)
	}
	require.True(t, tok.IsSpecial(601))
	require.False(t, tok.IsSpecial(600))
	// Added tokens decode by name; unknown ids as ⟨id⟩.
	require.Equal(t, "<s> hi[x]⟨9999⟩", tok.Decode(cat([]int32{1}, enc("hi"), []int32{601, 9999})))
}

func TestDecoders(t *testing.T) {
	for _, tc := range []struct {
		name string
		d    decoder
		in   []string
		want string
	}{
		{"byte fallback valid", byteFallbackDecoder{}, []string{"a", "<0xC3>", "<0xA9>", "b"}, "aéb"},
		// HF writes U+FFFD per byte; the bytes are kept so parts concatenate.
		{"byte fallback invalid keeps bytes", byteFallbackDecoder{}, []string{"<0xC3>", "x", "<0xFF>"}, "\xc3x\xff"},
		{"not a byte token", byteFallbackDecoder{}, []string{"<0xZZ>", "<0x4>"}, "<0xZZ><0x4>"},
		{"strip", seqDecoder{fuseDecoder{}, stripDecoder{' ', 1, 1}}, []string{"  a", "b  "}, " ab "},
		{"strip per token", stripDecoder{'x', 2, 0}, []string{"xxxa", "xa"}, "xaa"},
		{"metaspace strips the first token's ▁", metaspaceDecoder{"▁", true}, []string{"▁a▁b", "▁c"}, "ab c"},
		{"metaspace never", metaspaceDecoder{"▁", false}, []string{"▁a", "▁c"}, " a c"},
		{"bpe suffix", bpeDecoder{"</w>"}, []string{"hel", "lo</w>", "you</w>"}, "hello you"},
		{"byte level", byteLevelDecoder{}, []string{"Ġhello", "Ċ", "<|end|>"}, " hello\n<|end|>"},
		{"byte level mid-character", byteLevelDecoder{}, []string{toByteLevel("\xe6\x97")}, "\xe6\x97"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, strings.Join(tc.d.decode(tc.in), ""))
		})
	}
	// Without a decoder HF joins tokens with spaces.
	tok := parseTiny(t, nil)
	require.Equal(t, "ab c", tok.Decode([]int32{4, 3}))
}

func TestSplitBehaviors(t *testing.T) {
	// The cases of HF's NormalizedString::split tests.
	p := piece{"The-final--countdown", true}
	ms := pattern{literal: "-"}.find(p.text)
	for _, tc := range []struct {
		b    behavior
		want []string
	}{
		{removed, []string{"The", "final", "countdown"}},
		{isolated, []string{"The", "-", "final", "-", "-", "countdown"}},
		{mergedWithPrevious, []string{"The-", "final-", "-", "countdown"}},
		{mergedWithNext, []string{"The", "-final", "-", "-countdown"}},
		{contiguous, []string{"The", "-", "final", "--", "countdown"}},
	} {
		var got []string
		for _, q := range splitPiece(p, ms, tc.b, false, nil) {
			got = append(got, q.text)
		}
		require.Equal(t, tc.want, got, "behavior %d", tc.b)
	}
	// invert: the pattern marks what to keep.
	var got []string
	for _, q := range splitPiece(p, ms, removed, true, nil) {
		got = append(got, q.text)
	}
	require.Equal(t, []string{"-", "-", "-"}, got)
}

func TestPreTokenizers(t *testing.T) {
	texts := func(ps []piece) []string {
		out := []string{}
		for _, p := range ps {
			out = append(out, p.text)
		}
		return out
	}
	in := []piece{{"Hey  friend 123", true}, {"go 4", false}}
	for _, tc := range []struct {
		name string
		p    preTokenizer
		want []string
	}{
		{"digits contiguous", runeSplitPreTokenizer{unicode.IsNumber, contiguous}, []string{"Hey  friend ", "123", "go ", "4"}},
		{"digits individual", runeSplitPreTokenizer{unicode.IsNumber, isolated}, []string{"Hey  friend ", "1", "2", "3", "go ", "4"}},
		{"whitespace split", runeSplitPreTokenizer{unicode.IsSpace, removed}, []string{"Hey", "friend", "123", "go", "4"}},
		{"metaspace always", metaspacePreTokenizer{"▁", prependAlways, true}, []string{"▁Hey", "▁", "▁friend", "▁123", "▁go", "▁4"}},
		// "first" prepends only to the piece at the start of the text.
		{"metaspace first", metaspacePreTokenizer{"▁", prependFirst, false}, []string{"▁Hey▁▁friend▁123", "go▁4"}},
		{"metaspace never", metaspacePreTokenizer{"▁", prependNever, false}, []string{"Hey▁▁friend▁123", "go▁4"}},
		{"byte level prefix", byteLevelPreTokenizer{true, false}, []string{"ĠHeyĠĠfriendĠ123", "ĠgoĠ4"}},
		{"byte level regex", byteLevelPreTokenizer{false, true}, []string{"Hey", "Ġ", "Ġfriend", "Ġ123", "go", "Ġ4"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			require.Equal(t, tc.want, texts(tc.p.preTokenize(in)))
		})
	}
	tok := parseTiny(t, func(m, _ map[string]any) {
		m["pre_tokenizer"] = map[string]any{"type": "Whitespace"}
	})
	require.Equal(t, []string{"Hey", "friend", "!?", "x_1"}, texts(tok.preTokenizer.preTokenize([]piece{{"Hey friend!? x_1", true}})))
}

func TestNormalizers(t *testing.T) {
	for _, tc := range []struct {
		name string
		n    map[string]any
		in   string
		want string
	}{
		{"prepend", map[string]any{"type": "Prepend", "prepend": "▁"}, "a", "▁a"},
		{"prepend skips empty", map[string]any{"type": "Prepend", "prepend": "▁"}, "", ""},
		{"replace string", map[string]any{"type": "Replace", "pattern": map[string]any{"String": " "}, "content": "▁"}, "a b  c", "a▁b▁▁c"},
		{"replace regex", map[string]any{"type": "Replace", "pattern": map[string]any{"Regex": " {2,}"}, "content": "▁"}, "a b  c", "a b▁c"},
		{"strip", map[string]any{"type": "Strip", "strip_left": true, "strip_right": false}, " \ta ", "a "},
		{"lowercase", map[string]any{"type": "Lowercase"}, "ÀbC", "àbc"},
		{"sequence", map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Lowercase"}, map[string]any{"type": "Prepend", "prepend": "_"}}}, "AB", "_ab"},
		// Unicode forms; the expected strings are Python's unicodedata.normalize.
		{"NFC composes", map[string]any{"type": "NFC"}, "e\u0301 A\u030a \ufb01", "\u00e9 \u00c5 \ufb01"},
		{"NFD decomposes", map[string]any{"type": "NFD"}, "\u00e9 \u00c5", "e\u0301 A\u030a"},
		{"NFKC folds compatibility forms", map[string]any{"type": "NFKC"}, "\ufb01 \u2460 \uff21 \u1e9b\u0323", "fi 1 A \u1e69"},
		{"NFKD", map[string]any{"type": "NFKD"}, "\ufb01\u00e9", "fie\u0301"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			raw, err := json.Marshal(tc.n)
			require.NoError(t, err)
			n, err := parseNormalizer(raw, "normalizer")
			require.NoError(t, err)
			require.Equal(t, tc.want, n.normalize(tc.in))
		})
	}
}

// TestRoundTripRandom: Decode(Encode(s)) == s for random text, valid UTF-8
// or not. The SentencePiece layout cannot give back a literal ▁ (it is the
// space marker), so those strings are left out for it.
func TestRoundTripRandom(t *testing.T) {
	sp := loadFixture(t, "sp_bpe")
	bl := loadFixture(t, "bytelevel_bpe")
	r := rand.New(rand.NewPCG(7, 11))
	runes := []rune("  \t\n\r aAzZ09'.,!?é日本語🎉ж\u00a0\u3000▁<>")
	for i := range 400 {
		var s string
		switch i % 3 {
		case 0: // runes likely to interact with the patterns
			var b strings.Builder
			for range r.IntN(30) {
				b.WriteRune(runes[r.IntN(len(runes))])
			}
			s = b.String()
		case 1: // any valid rune
			var b strings.Builder
			for range r.IntN(20) {
				c := rune(r.IntN(0x10FFFF))
				if utf8.ValidRune(c) {
					b.WriteRune(c)
				}
			}
			s = b.String()
		default: // any bytes
			b := make([]byte, r.IntN(20))
			for j := range b {
				b[j] = byte(r.UintN(256))
			}
			s = string(b)
		}
		require.Equal(t, s, bl.Decode(bl.Encode(s)), "byte-level round trip of %q", s)
		if !strings.Contains(s, "▁") {
			require.Equal(t, s, sp.Decode(sp.Encode(s)), "SentencePiece round trip of %q", s)
		}
		for _, tk := range []*BPE{sp, bl} {
			for _, id := range tk.Encode(s) {
				require.True(t, id >= 0 && int(id) < tk.VocabSize())
				require.False(t, tk.IsSpecial(id))
			}
		}
	}
}

func TestLoadPicksTokenizerJSON(t *testing.T) {
	dir := t.TempDir()
	data, err := os.ReadFile(filepath.Join("testdata", "sp_bpe", "tokenizer.json"))
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "tokenizer.json"), data, 0o644))
	tok, err := Load(dir)
	require.NoError(t, err)
	require.IsType(t, &BPE{}, tok)
	require.Equal(t, 600, tok.VocabSize())
	require.Equal(t, "hello", tok.Decode(tok.Encode("hello")))

	bad := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(bad, "tokenizer.json"), tiny(t, func(_, md map[string]any) { md["type"] = "Unigram" }), 0o644))
	_, err = Load(bad)
	require.ErrorContains(t, err, filepath.Join(bad, "tokenizer.json"))
	require.ErrorContains(t, err, `model.type "Unigram" is not supported (supported: BPE)`)
}

func TestParseErrors(t *testing.T) {
	set := func(key string, v any) func(m, md map[string]any) {
		return func(m, md map[string]any) { m[key] = v }
	}
	setModel := func(key string, v any) func(m, md map[string]any) {
		return func(m, md map[string]any) { md[key] = v }
	}
	for _, tc := range []struct {
		name string
		data []byte
		want string
	}{
		{"truncated", []byte(`{"model": {`), "tokenizer.json: invalid JSON"},
		{"not an object", []byte(`[1]`), "tokenizer.json: invalid JSON"},
		{"no model", []byte(`{}`), "tokenizer.json: model is missing"},
		{"Unigram", tiny(t, setModel("type", "Unigram")), `tokenizer.json: model.type "Unigram" is not supported (supported: BPE)`},
		{"WordPiece", tiny(t, setModel("type", "WordPiece")), `model.type "WordPiece" is not supported`},
		{"no type, no merges", []byte(`{"model": {"vocab": {}}}`), "model.type is missing"},
		{"no vocab", tiny(t, setModel("vocab", nil)), "model.vocab is missing"},
		{"vocab a list", tiny(t, setModel("vocab", []any{"a"})), "model.vocab: json: cannot unmarshal array"},
		{"negative id", tiny(t, setModel("vocab", map[string]any{"a": -1})), `model.vocab["a"]: id -1 is out of range`},
		{"sparse ids", tiny(t, func(_, md map[string]any) {
			md["vocab"] = map[string]any{"<unk>": 0, "a": 1 << 30}
			md["merges"] = []any{}
		}), "ids must be dense"},
		{"no merges", tiny(t, setModel("merges", nil)), "model.merges is missing"},
		{"merge token not in vocab", tiny(t, setModel("merges", []any{"a b", "a z"})), `model.merges[1]: token "z" is not in model.vocab`},
		{"merged token not in vocab", tiny(t, setModel("merges", []any{"b a"})), `model.merges[0]: merged token "ba" is not in model.vocab`},
		{"merge of three", tiny(t, setModel("merges", []any{"a b c"})), `model.merges[0]: "a b c" is not two tokens`},
		{"merge not a pair", tiny(t, setModel("merges", []any{[]any{"a"}})), `model.merges[0]: want "a b" or ["a", "b"]`},
		{"merge a number", tiny(t, setModel("merges", []any{7})), `model.merges[0]: want`},
		{"unk not in vocab", tiny(t, setModel("unk_token", "[UNK]")), `model.unk_token "[UNK]" is not in model.vocab`},
		{"dropout", tiny(t, setModel("dropout", 0.1)), "model.dropout 0.1 is not supported"},
		{"prefix mismatch", tiny(t, setModel("continuing_subword_prefix", "##")), `does not start with continuing_subword_prefix "##"`},
		{"Nmt", tiny(t, set("normalizer", map[string]any{"type": "Nmt"})), `normalizer.type "Nmt" is not supported (supported: Sequence, Prepend`},
		{"Precompiled in a sequence", tiny(t, set("normalizer", map[string]any{"type": "Sequence", "normalizers": []any{
			map[string]any{"type": "Lowercase"}, map[string]any{"type": "Precompiled"}}})), `normalizer.normalizers[1].type "Precompiled" is not supported`},
		{"component without type", tiny(t, set("normalizer", map[string]any{"prepend": "x"})), "normalizer.type is missing"},
		{"Prepend without prepend", tiny(t, set("normalizer", map[string]any{"type": "Prepend"})), "normalizer.prepend is missing"},
		{"Replace bad pattern", tiny(t, set("normalizer", map[string]any{"type": "Replace", "pattern": map[string]any{"Glob": "*"}, "content": ""})), `normalizer.pattern: want {"String": ...} or {"Regex": ...}`},
		{"BertPreTokenizer", tiny(t, set("pre_tokenizer", map[string]any{"type": "BertPreTokenizer"})), `pre_tokenizer.type "BertPreTokenizer" is not supported`},
		{"Punctuation in a sequence", tiny(t, set("pre_tokenizer", map[string]any{"type": "Sequence", "pretokenizers": []any{
			map[string]any{"type": "ByteLevel"}, map[string]any{"type": "Punctuation"}}})), `pre_tokenizer.pretokenizers[1].type "Punctuation" is not supported`},
		{"lookbehind", tiny(t, set("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `(?<=a)b`}, "behavior": "Isolated"})), `pre_tokenizer.pattern.Regex "(?<=a)b": lookaround`},
		{"bad regex", tiny(t, set("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"Regex": `(a`}, "behavior": "Isolated"})), "pre_tokenizer.pattern.Regex"},
		{"bad behavior", tiny(t, set("pre_tokenizer", map[string]any{"type": "Split", "pattern": map[string]any{"String": "a"}, "behavior": "Sideways"})), `pre_tokenizer.behavior "Sideways" is not one of`},
		{"metaspace scheme", tiny(t, set("pre_tokenizer", map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "sometimes"})), `pre_tokenizer.prepend_scheme "sometimes"`},
		{"metaspace contradiction", tiny(t, set("pre_tokenizer", map[string]any{"type": "Metaspace", "replacement": "▁", "prepend_scheme": "first", "add_prefix_space": false})), "contradicts"},
		{"metaspace replacement", tiny(t, set("pre_tokenizer", map[string]any{"type": "Metaspace", "replacement": "ab"})), `pre_tokenizer.replacement "ab" must be exactly one character`},
		{"WordPiece decoder", tiny(t, set("decoder", map[string]any{"type": "WordPiece"})), `decoder.type "WordPiece" is not supported`},
		{"Strip content", tiny(t, set("decoder", map[string]any{"type": "Sequence", "decoders": []any{map[string]any{"type": "Strip", "content": "ab", "start": 1, "stop": 0}}})), `decoder.decoders[0].content "ab" must be exactly one character`},
		{"Strip negative", tiny(t, set("decoder", map[string]any{"type": "Strip", "content": " ", "start": -1})), "decoder: json: cannot unmarshal number -1"},
		{"added token without id", tiny(t, set("added_tokens", []any{map[string]any{"content": "<s>"}})), "added_tokens[0].id is missing"},
		{"added token empty", tiny(t, set("added_tokens", []any{map[string]any{"id": 9, "content": ""}})), "added_tokens[0].content is missing or empty"},
		{"added token id", tiny(t, set("added_tokens", []any{map[string]any{"id": -3, "content": "x"}})), "added_tokens[0].id -3 is out of range"},
		{"added tokens an object", tiny(t, set("added_tokens", map[string]any{})), "added_tokens: json: cannot unmarshal object"},
		{"template without its special", tiny(t, set("post_processor", map[string]any{"type": "TemplateProcessing",
			"single": []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}}, "special_tokens": map[string]any{}})),
			`post_processor.special_tokens["<s>"] is missing`},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok, err := ParseJSON(tc.data)
			require.ErrorContains(t, err, tc.want)
			require.Nil(t, tok)
		})
	}
}

func TestPostProcessorBOS(t *testing.T) {
	tmpl := map[string]any{"type": "TemplateProcessing",
		"single":         []any{map[string]any{"SpecialToken": map[string]any{"id": "<s>", "type_id": 0}}, map[string]any{"Sequence": map[string]any{"id": "A", "type_id": 0}}},
		"special_tokens": map[string]any{"<s>": map[string]any{"id": "<s>", "ids": []any{2}, "tokens": []any{"<s>"}}}}
	for _, tc := range []struct {
		name string
		pp   any
		bos  int32
		ok   bool
	}{
		{"none", nil, 0, false},
		{"template", tmpl, 2, true},
		{"sequence", map[string]any{"type": "Sequence", "processors": []any{map[string]any{"type": "ByteLevel"}, tmpl}}, 2, true},
		{"template without BOS", map[string]any{"type": "TemplateProcessing", "single": []any{map[string]any{"Sequence": map[string]any{"id": "A"}}}}, 0, false},
		{"roberta", map[string]any{"type": "RobertaProcessing", "cls": []any{"<s>", 3}, "sep": []any{"</s>", 1}}, 3, true},
		{"other kinds are ignored", map[string]any{"type": "SomethingNew"}, 0, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			tok := parseTiny(t, func(m, _ map[string]any) { m["post_processor"] = tc.pp })
			bos, ok := tok.BOS()
			require.Equal(t, tc.ok, ok)
			require.Equal(t, tc.bos, bos)
		})
	}
}

// TestLongWordsCutSafely: encodeWord cuts long words where no merge can
// join; the ids must equal merging the whole word at once.
func TestLongWordsCutSafely(t *testing.T) {
	sp := loadFixture(t, "sp_bpe")
	bl := loadFixture(t, "bytelevel_bpe")
	corpus, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	require.NoError(t, err)
	r := rand.New(rand.NewPCG(5, 9))
	alphabet := []rune("  \n\tabcdeeeeilmnorsttt▁.,'é日🎉")
	texts := []string{string(corpus[:20000]), strings.Repeat("abcdefgh ", 100)}
	for range 50 {
		var b strings.Builder
		for range 300 + r.IntN(1000) {
			b.WriteRune(alphabet[r.IntN(len(alphabet))])
		}
		texts = append(texts, b.String())
	}
	for _, text := range texts {
		norm := sp.normalizer.normalize(text)
		require.Equal(t, sp.mergeWord(norm, nil), sp.Encode(text), "SentencePiece layout")
		word := toByteLevel(strings.ReplaceAll(text, " ", ""))
		require.Equal(t, bl.mergeWord(word, nil), bl.encodeWord(word, nil), "byte-level word")
	}
}

// TestConcurrentEncode: the word cache is shared; concurrent Encode calls
// give the sequential answers (run with -race to check the locking).
func TestConcurrentEncode(t *testing.T) {
	corpus, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	require.NoError(t, err)
	lines := strings.Split(string(corpus), "\n")
	for _, name := range []string{"sp_bpe", "bytelevel_bpe"} {
		ref := loadFixture(t, name)
		want := make([][]int32, len(lines))
		for i, l := range lines {
			want[i] = ref.Encode(l)
		}
		tok := loadFixture(t, name)
		errs := make(chan error, 4)
		for g := range 4 {
			go func() {
				for i := range lines {
					j := (i + g*97) % len(lines)
					if got := tok.Encode(lines[j]); !equalIDs(got, want[j]) {
						errs <- fmt.Errorf("%s line %d: got %v, want %v", name, j, got, want[j])
						return
					}
				}
				errs <- nil
			}()
		}
		for range 4 {
			require.NoError(t, <-errs)
		}
	}
}

func TestMetaspaceForms(t *testing.T) {
	for _, tc := range []struct {
		name string
		json string
		want metaspacePreTokenizer
	}{
		{"older form", `{"type":"Metaspace","replacement":"▁","add_prefix_space":true,"str_rep":"▁"}`, metaspacePreTokenizer{"▁", prependAlways, true}},
		{"older form without prefix", `{"type":"Metaspace","replacement":"▁","add_prefix_space":false}`, metaspacePreTokenizer{"▁", prependNever, true}},
		{"newer form", `{"type":"Metaspace","replacement":"▁","prepend_scheme":"first","split":false}`, metaspacePreTokenizer{"▁", prependFirst, false}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p, err := parsePreTokenizer(json.RawMessage(tc.json), "pre_tokenizer")
			require.NoError(t, err)
			require.Equal(t, tc.want, p)
		})
	}
}
