package tokenize

import (
	"bytes"
	"encoding/json"
	"fmt"
	"math"
	"slices"
	"sort"
	"strings"
	"unicode"
	"unicode/utf8"

	"golang.org/x/text/unicode/norm"
)

// Parsing of tokenizer.json. Every error names the field path in the file
// (model.merges[12], pre_tokenizer.pretokenizers[0].pattern), so a user can
// find what is wrong or unsupported.

func errAt(path, format string, args ...any) error {
	return fmt.Errorf("tokenizer.json: %s%s", path, fmt.Sprintf(format, args...))
}

func isNull(raw json.RawMessage) bool {
	t := bytes.TrimSpace(raw)
	return len(t) == 0 || string(t) == "null"
}

// decodeAt unmarshals raw into v, naming path on failure.
func decodeAt(raw json.RawMessage, path string, v any) error {
	if err := json.Unmarshal(raw, v); err != nil {
		return errAt(path, ": %v", err)
	}
	return nil
}

// componentType reads the "type" of a normalizer, pre-tokenizer, decoder
// or post-processor object.
func componentType(raw json.RawMessage, path string) (string, error) {
	var c struct {
		Type *string `json:"type"`
	}
	if err := decodeAt(raw, path, &c); err != nil {
		return "", err
	}
	if c.Type == nil {
		return "", errAt(path, ".type is missing")
	}
	return *c.Type, nil
}

func unsupported(path, typ string, supported ...string) error {
	return errAt(path, ".type %q is not supported (supported: %s)", typ, strings.Join(supported, ", "))
}

// maxIDSlack bounds how far ids may lie beyond the number of tokens, so a
// file cannot make the id table huge.
const maxIDSlack = 1 << 16

// ParseJSON builds a tokenizer from the contents of a tokenizer.json.
// Supported: model BPE (merges as "a b" or ["a", "b"], unk_token, fuse_unk,
// byte_fallback, ignore_merges, continuing_subword_prefix,
// end_of_word_suffix); normalizers Sequence, Prepend, Replace, Strip,
// Lowercase, ByteLevel, NFC, NFD, NFKC, NFKD; pre-tokenizers Sequence, ByteLevel, Split, Metaspace
// (both the prepend_scheme and the older add_prefix_space form), Digits,
// Whitespace, WhitespaceSplit; decoders Sequence, ByteLevel, Metaspace,
// Replace, ByteFallback, Fuse, Strip, BPEDecoder; added_tokens with
// single_word, lstrip, rstrip, normalized; the BOS of a TemplateProcessing
// post-processor. Regex patterns may use the lookahead alternative
// \s+(?!\S) but no other lookaround. Anything else is an error naming its
// field path, e.g. `tokenizer.json: model.type "Unigram" is not supported
// (supported: BPE)`.
func ParseJSON(data []byte) (*BPE, error) {
	var file struct {
		AddedTokens   json.RawMessage `json:"added_tokens"`
		Normalizer    json.RawMessage `json:"normalizer"`
		PreTokenizer  json.RawMessage `json:"pre_tokenizer"`
		PostProcessor json.RawMessage `json:"post_processor"`
		Decoder       json.RawMessage `json:"decoder"`
		Model         json.RawMessage `json:"model"`
	}
	if err := json.Unmarshal(data, &file); err != nil {
		return nil, fmt.Errorf("tokenizer.json: invalid JSON: %w", err)
	}
	t := &BPE{unk: -1, cache: map[string][]int32{}, added: map[string]addedToken{}, special: map[int32]bool{}}
	if isNull(file.Model) {
		return nil, errAt("model", " is missing")
	}
	if err := t.parseModel(file.Model); err != nil {
		return nil, err
	}
	var err error
	if !isNull(file.Normalizer) {
		if t.normalizer, err = parseNormalizer(file.Normalizer, "normalizer"); err != nil {
			return nil, err
		}
	}
	if !isNull(file.PreTokenizer) {
		if t.preTokenizer, err = parsePreTokenizer(file.PreTokenizer, "pre_tokenizer"); err != nil {
			return nil, err
		}
	}
	if !isNull(file.Decoder) {
		if t.decoder, err = parseDecoder(file.Decoder, "decoder"); err != nil {
			return nil, err
		}
	}
	if err := t.parseAddedTokens(file.AddedTokens); err != nil {
		return nil, err
	}
	if !isNull(file.PostProcessor) {
		if err := t.parsePostProcessor(file.PostProcessor, "post_processor"); err != nil {
			return nil, err
		}
	}
	return t, nil
}

func (t *BPE) parseModel(raw json.RawMessage) error {
	var m struct {
		Type                    *string           `json:"type"`
		Dropout                 *float64          `json:"dropout"`
		UnkToken                *string           `json:"unk_token"`
		ContinuingSubwordPrefix *string           `json:"continuing_subword_prefix"`
		EndOfWordSuffix         *string           `json:"end_of_word_suffix"`
		FuseUnk                 bool              `json:"fuse_unk"`
		ByteFallback            bool              `json:"byte_fallback"`
		IgnoreMerges            bool              `json:"ignore_merges"`
		Vocab                   json.RawMessage   `json:"vocab"`
		Merges                  []json.RawMessage `json:"merges"`
	}
	if err := decodeAt(raw, "model", &m); err != nil {
		return err
	}
	switch {
	case m.Type == nil && m.Merges == nil:
		return errAt("model", ".type is missing")
	case m.Type != nil && *m.Type != "BPE":
		return unsupported("model", *m.Type, "BPE")
	}
	if m.Dropout != nil && *m.Dropout != 0 {
		return errAt("model", ".dropout %v is not supported (BPE dropout is for training; set it to null)", *m.Dropout)
	}
	if isNull(m.Vocab) {
		return errAt("model", ".vocab is missing")
	}
	var vocab map[string]int64
	if err := decodeAt(m.Vocab, "model.vocab", &vocab); err != nil {
		return err
	}
	t.vocab = make(map[string]int32, len(vocab))
	for tok, id := range vocab {
		if id < 0 || id > math.MaxInt32 {
			return errAt("model.vocab", "[%q]: id %d is out of range", tok, id)
		}
		t.vocab[tok] = int32(id)
	}
	if m.ContinuingSubwordPrefix != nil {
		t.prefix = *m.ContinuingSubwordPrefix
	}
	if m.EndOfWordSuffix != nil {
		t.suffix = *m.EndOfWordSuffix
	}
	t.fuseUnk, t.byteFallback, t.ignoreMerges = m.FuseUnk, m.ByteFallback, m.IgnoreMerges
	if m.UnkToken != nil {
		id, ok := t.vocab[*m.UnkToken]
		if !ok {
			return errAt("model", ".unk_token %q is not in model.vocab", *m.UnkToken)
		}
		t.unk = id
	}
	for b := range t.byteIDs {
		t.byteIDs[b] = -1
		if id, ok := t.vocab[fmt.Sprintf("<0x%02X>", b)]; ok {
			t.byteIDs[b] = id
		}
	}
	if m.Merges == nil {
		return errAt("model", ".merges is missing")
	}
	t.merges = make(map[uint64]mergeRule, len(m.Merges))
	rank := int32(0)
	for i, raw := range m.Merges {
		path := fmt.Sprintf("model.merges[%d]", i)
		a, b, skip, err := parseMerge(raw, path)
		if err != nil {
			return err
		}
		if skip {
			continue
		}
		ida, ok := t.vocab[a]
		if !ok {
			return errAt(path, ": token %q is not in model.vocab", a)
		}
		idb, ok := t.vocab[b]
		if !ok {
			return errAt(path, ": token %q is not in model.vocab", b)
		}
		if !strings.HasPrefix(b, t.prefix) {
			return errAt(path, ": %q does not start with continuing_subword_prefix %q", b, t.prefix)
		}
		merged := a + b[len(t.prefix):]
		id, ok := t.vocab[merged]
		if !ok {
			return errAt(path, ": merged token %q is not in model.vocab", merged)
		}
		// A pair listed twice keeps its later rank, as in HF.
		t.merges[pairKey(ida, idb)] = mergeRule{rank, id}
		rank++
	}
	return nil
}

// parseMerge reads "a b" or ["a", "b"]; skip is set for a "#version" line.
func parseMerge(raw json.RawMessage, path string) (a, b string, skip bool, err error) {
	var s string
	if json.Unmarshal(raw, &s) == nil {
		if strings.HasPrefix(s, "#version") {
			return "", "", true, nil
		}
		parts := strings.Split(s, " ")
		if len(parts) != 2 {
			return "", "", false, errAt(path, ": %q is not two tokens separated by one space", s)
		}
		return parts[0], parts[1], false, nil
	}
	var pair []string
	if json.Unmarshal(raw, &pair) != nil || len(pair) != 2 {
		return "", "", false, errAt(path, ": want \"a b\" or [\"a\", \"b\"], got %s", truncate(string(raw), 40))
	}
	return pair[0], pair[1], false, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

func (t *BPE) parseAddedTokens(raw json.RawMessage) error {
	var list []json.RawMessage
	if !isNull(raw) {
		if err := decodeAt(raw, "added_tokens", &list); err != nil {
			return err
		}
	}
	var all []addedToken
	for i, r := range list {
		path := fmt.Sprintf("added_tokens[%d]", i)
		var a struct {
			ID         *int64  `json:"id"`
			Content    *string `json:"content"`
			SingleWord bool    `json:"single_word"`
			LStrip     bool    `json:"lstrip"`
			RStrip     bool    `json:"rstrip"`
			Normalized *bool   `json:"normalized"`
			Special    bool    `json:"special"`
		}
		if err := decodeAt(r, path, &a); err != nil {
			return err
		}
		switch {
		case a.ID == nil:
			return errAt(path, ".id is missing")
		case *a.ID < 0 || *a.ID > math.MaxInt32:
			return errAt(path, ".id %d is out of range", *a.ID)
		case a.Content == nil || *a.Content == "":
			return errAt(path, ".content is missing or empty")
		}
		tok := addedToken{content: *a.Content, id: int32(*a.ID), singleWord: a.SingleWord,
			lstrip: a.LStrip, rstrip: a.RStrip, special: a.Special, normalized: !a.Special}
		if a.Normalized != nil {
			tok.normalized = *a.Normalized
		}
		t.added[tok.content] = tok
		if tok.special {
			t.special[tok.id] = true
		}
		all = append(all, tok)
	}
	if err := t.buildIDTable(all); err != nil {
		return err
	}
	t.plain = t.newSplitter(all, false)
	t.withSpecial = t.newSplitter(all, true)
	return nil
}

// buildIDTable fills idToken and size from the vocabulary and the added
// tokens. Of two vocabulary tokens sharing an id the smaller string wins,
// so decoding is deterministic.
func (t *BPE) buildIDTable(added []addedToken) error {
	maxID := int32(-1)
	for _, id := range t.vocab {
		maxID = max(maxID, id)
	}
	for _, a := range added {
		maxID = max(maxID, a.id)
	}
	if int64(maxID) >= int64(len(t.vocab)+len(added))+maxIDSlack {
		return errAt("model.vocab", ": id %d is far beyond the %d tokens (ids must be dense)", maxID, len(t.vocab)+len(added))
	}
	t.idToken = make([]string, maxID+1)
	for tok, id := range t.vocab {
		if cur := t.idToken[id]; cur == "" || tok < cur {
			t.idToken[id] = tok
		}
	}
	for _, a := range added {
		t.idToken[a.id] = a.content
	}
	t.size = int(maxID) + 1
	return nil
}

// newSplitter indexes the added tokens Encode (withSpecial false) or
// EncodeWithSpecial looks for.
func (t *BPE) newSplitter(all []addedToken, withSpecial bool) addedSplitter {
	s := addedSplitter{raw: map[byte][]addedToken{}, norm: map[byte][]addedToken{}}
	for _, a := range all {
		if a.special && !withSpecial {
			continue
		}
		set := s.raw
		if a.normalized && t.normalizer != nil {
			a.content = t.normalizer.normalize(a.content)
			set = s.norm
		} else if a.normalized {
			set = s.norm
		}
		if a.content == "" {
			continue
		}
		set[a.content[0]] = append(set[a.content[0]], a)
	}
	for _, set := range []map[byte][]addedToken{s.raw, s.norm} {
		for _, list := range set {
			sort.SliceStable(list, func(i, j int) bool { return len(list[i].content) > len(list[j].content) })
		}
	}
	return s
}

// parsePattern reads {"String": s} or {"Regex": r}.
func parsePattern(raw json.RawMessage, path string) (pattern, error) {
	var p struct {
		String *string `json:"String"`
		Regex  *string `json:"Regex"`
	}
	if isNull(raw) {
		return pattern{}, errAt(path, " is missing")
	}
	if err := decodeAt(raw, path, &p); err != nil {
		return pattern{}, err
	}
	switch {
	case p.String != nil && p.Regex == nil:
		return pattern{literal: *p.String}, nil
	case p.Regex != nil && p.String == nil:
		re, err := compileSplitter(*p.Regex)
		if err != nil {
			return pattern{}, errAt(path, ".Regex %q: %v", truncate(*p.Regex, 80), err)
		}
		return pattern{re: re}, nil
	}
	return pattern{}, errAt(path, `: want {"String": ...} or {"Regex": ...}`)
}

// oneRune reads a JSON string holding exactly one character (a Rust char).
func oneRune(s *string, path string) (rune, error) {
	if s == nil {
		return 0, errAt(path, " is missing")
	}
	r, size := utf8.DecodeRuneInString(*s)
	if size == 0 || size != len(*s) || r == utf8.RuneError && size == 1 {
		return 0, errAt(path, " %q must be exactly one character", *s)
	}
	return r, nil
}

var (
	normalizerTypes   = []string{"Sequence", "Prepend", "Replace", "Strip", "Lowercase", "ByteLevel", "NFC", "NFD", "NFKC", "NFKD"}
	preTokenizerTypes = []string{"Sequence", "ByteLevel", "Split", "Metaspace", "Digits", "Whitespace", "WhitespaceSplit"}
	decoderTypes      = []string{"Sequence", "ByteLevel", "Metaspace", "Replace", "ByteFallback", "Fuse", "Strip", "BPEDecoder"}
)

func parseNormalizer(raw json.RawMessage, path string) (normalizer, error) {
	typ, err := componentType(raw, path)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			Normalizers []json.RawMessage `json:"normalizers"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		var seq seqNormalizer
		for i, r := range s.Normalizers {
			n, err := parseNormalizer(r, fmt.Sprintf("%s.normalizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, n)
		}
		return seq, nil
	case "Prepend":
		var p struct {
			Prepend *string `json:"prepend"`
		}
		if err := decodeAt(raw, path, &p); err != nil {
			return nil, err
		}
		if p.Prepend == nil {
			return nil, errAt(path, ".prepend is missing")
		}
		return prependNormalizer{*p.Prepend}, nil
	case "Replace":
		pat, content, err := parseReplace(raw, path)
		if err != nil {
			return nil, err
		}
		return replaceNormalizer{pat, content}, nil
	case "Strip":
		var s struct {
			Left  bool `json:"strip_left"`
			Right bool `json:"strip_right"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		return stripNormalizer{s.Left, s.Right}, nil
	case "Lowercase":
		return lowercaseNormalizer{}, nil
	case "ByteLevel":
		return byteLevelNormalizer{}, nil
	case "NFC":
		return unicodeNormalizer{norm.NFC}, nil
	case "NFD":
		return unicodeNormalizer{norm.NFD}, nil
	case "NFKC":
		return unicodeNormalizer{norm.NFKC}, nil
	case "NFKD":
		return unicodeNormalizer{norm.NFKD}, nil
	}
	return nil, unsupported(path, typ, normalizerTypes...)
}

func parseReplace(raw json.RawMessage, path string) (pattern, string, error) {
	var r struct {
		Pattern json.RawMessage `json:"pattern"`
		Content *string         `json:"content"`
	}
	if err := decodeAt(raw, path, &r); err != nil {
		return pattern{}, "", err
	}
	pat, err := parsePattern(r.Pattern, path+".pattern")
	if err != nil {
		return pattern{}, "", err
	}
	if r.Content == nil {
		return pattern{}, "", errAt(path, ".content is missing")
	}
	return pat, *r.Content, nil
}

func parsePreTokenizer(raw json.RawMessage, path string) (preTokenizer, error) {
	typ, err := componentType(raw, path)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			PreTokenizers []json.RawMessage `json:"pretokenizers"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		var seq seqPreTokenizer
		for i, r := range s.PreTokenizers {
			p, err := parsePreTokenizer(r, fmt.Sprintf("%s.pretokenizers[%d]", path, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, p)
		}
		return seq, nil
	case "ByteLevel":
		bl := struct {
			AddPrefixSpace bool `json:"add_prefix_space"`
			UseRegex       bool `json:"use_regex"`
		}{UseRegex: true}
		if err := decodeAt(raw, path, &bl); err != nil {
			return nil, err
		}
		return byteLevelPreTokenizer{bl.AddPrefixSpace, bl.UseRegex}, nil
	case "Split":
		var s struct {
			Pattern  json.RawMessage `json:"pattern"`
			Behavior *string         `json:"behavior"`
			Invert   bool            `json:"invert"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		pat, err := parsePattern(s.Pattern, path+".pattern")
		if err != nil {
			return nil, err
		}
		b, err := parseBehavior(s.Behavior, path+".behavior")
		if err != nil {
			return nil, err
		}
		return splitPreTokenizer{pat, b, s.Invert}, nil
	case "Metaspace":
		return parseMetaspace(raw, path)
	case "Digits":
		var d struct {
			Individual bool `json:"individual_digits"`
		}
		if err := decodeAt(raw, path, &d); err != nil {
			return nil, err
		}
		b := contiguous
		if d.Individual {
			b = isolated
		}
		return runeSplitPreTokenizer{unicode.IsNumber, b}, nil
	case "Whitespace":
		re, err := compileSplitRegex(`\w+|[^\w\s]+`)
		if err != nil {
			return nil, err
		}
		return splitPreTokenizer{pattern{re: re}, removed, true}, nil
	case "WhitespaceSplit":
		return runeSplitPreTokenizer{unicode.IsSpace, removed}, nil
	}
	return nil, unsupported(path, typ, preTokenizerTypes...)
}

func parseBehavior(s *string, path string) (behavior, error) {
	if s == nil {
		return 0, errAt(path, " is missing")
	}
	if b, ok := behaviors[*s]; ok {
		return b, nil
	}
	names := make([]string, 0, len(behaviors))
	for n := range behaviors {
		names = append(names, n)
	}
	slices.Sort(names)
	return 0, errAt(path, " %q is not one of %s", *s, strings.Join(names, ", "))
}

// metaspaceFields reads Metaspace in both forms: prepend_scheme (newer) or
// add_prefix_space (older; false means "never").
func metaspaceFields(raw json.RawMessage, path string) (repl rune, scheme string, split bool, err error) {
	var m struct {
		Replacement    *string `json:"replacement"`
		AddPrefixSpace *bool   `json:"add_prefix_space"`
		PrependScheme  *string `json:"prepend_scheme"`
		Split          *bool   `json:"split"`
	}
	if err := decodeAt(raw, path, &m); err != nil {
		return 0, "", false, err
	}
	if repl, err = oneRune(m.Replacement, path+".replacement"); err != nil {
		return 0, "", false, err
	}
	scheme = prependAlways
	if m.PrependScheme != nil {
		scheme = *m.PrependScheme
		switch scheme {
		case prependAlways, prependFirst, prependNever:
		default:
			return 0, "", false, errAt(path, ".prepend_scheme %q is not one of always, first, never", scheme)
		}
	}
	if m.AddPrefixSpace != nil && !*m.AddPrefixSpace {
		if scheme != prependNever && m.PrependScheme != nil {
			return 0, "", false, errAt(path, ".add_prefix_space false contradicts prepend_scheme %q", scheme)
		}
		scheme = prependNever
	}
	split = m.Split == nil || *m.Split
	return repl, scheme, split, nil
}

func parseMetaspace(raw json.RawMessage, path string) (preTokenizer, error) {
	repl, scheme, split, err := metaspaceFields(raw, path)
	if err != nil {
		return nil, err
	}
	return metaspacePreTokenizer{string(repl), scheme, split}, nil
}

func parseDecoder(raw json.RawMessage, path string) (decoder, error) {
	typ, err := componentType(raw, path)
	if err != nil {
		return nil, err
	}
	switch typ {
	case "Sequence":
		var s struct {
			Decoders []json.RawMessage `json:"decoders"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		var seq seqDecoder
		for i, r := range s.Decoders {
			d, err := parseDecoder(r, fmt.Sprintf("%s.decoders[%d]", path, i))
			if err != nil {
				return nil, err
			}
			seq = append(seq, d)
		}
		return seq, nil
	case "ByteLevel":
		return byteLevelDecoder{}, nil
	case "Metaspace":
		repl, scheme, _, err := metaspaceFields(raw, path)
		if err != nil {
			return nil, err
		}
		return metaspaceDecoder{string(repl), scheme != prependNever}, nil
	case "Replace":
		pat, content, err := parseReplace(raw, path)
		if err != nil {
			return nil, err
		}
		return replaceDecoder{pat, content}, nil
	case "ByteFallback":
		return byteFallbackDecoder{}, nil
	case "Fuse":
		return fuseDecoder{}, nil
	case "Strip":
		var s struct {
			Content *string `json:"content"`
			Start   uint32  `json:"start"`
			Stop    uint32  `json:"stop"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		r, err := oneRune(s.Content, path+".content")
		if err != nil {
			return nil, err
		}
		return stripDecoder{r, int(s.Start), int(s.Stop)}, nil
	case "BPEDecoder":
		var s struct {
			Suffix *string `json:"suffix"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return nil, err
		}
		suffix := "</w>"
		if s.Suffix != nil {
			suffix = *s.Suffix
		}
		return bpeDecoder{suffix}, nil
	}
	return nil, unsupported(path, typ, decoderTypes...)
}

// parsePostProcessor finds the BOS token of the template. Post-processors
// of other kinds change nothing Encode returns and are ignored.
func (t *BPE) parsePostProcessor(raw json.RawMessage, path string) error {
	typ, err := componentType(raw, path)
	if err != nil {
		return err
	}
	switch typ {
	case "Sequence":
		var s struct {
			Processors []json.RawMessage `json:"processors"`
		}
		if err := decodeAt(raw, path, &s); err != nil {
			return err
		}
		for i, r := range s.Processors {
			if err := t.parsePostProcessor(r, fmt.Sprintf("%s.processors[%d]", path, i)); err != nil {
				return err
			}
		}
	case "TemplateProcessing":
		var tp struct {
			Single []struct {
				SpecialToken *struct {
					ID string `json:"id"`
				} `json:"SpecialToken"`
			} `json:"single"`
			SpecialTokens map[string]struct {
				IDs []int64 `json:"ids"`
			} `json:"special_tokens"`
		}
		if err := decodeAt(raw, path, &tp); err != nil {
			return err
		}
		if len(tp.Single) == 0 || tp.Single[0].SpecialToken == nil || t.hasBOS {
			return nil
		}
		name := tp.Single[0].SpecialToken.ID
		st, ok := tp.SpecialTokens[name]
		if !ok || len(st.IDs) != 1 {
			return errAt(path, ".special_tokens[%q] is missing or has not exactly one id", name)
		}
		if st.IDs[0] < 0 || st.IDs[0] >= int64(t.size) {
			return errAt(path, ".special_tokens[%q]: id %d is outside the vocabulary", name, st.IDs[0])
		}
		t.bos, t.hasBOS = int32(st.IDs[0]), true
	case "BertProcessing", "RobertaProcessing":
		var p struct {
			CLS []json.RawMessage `json:"cls"`
		}
		if err := decodeAt(raw, path, &p); err != nil {
			return err
		}
		var id int64
		if len(p.CLS) != 2 || json.Unmarshal(p.CLS[1], &id) != nil || id < 0 || id >= int64(t.size) {
			return errAt(path, ".cls: want [token, id] with an id in the vocabulary")
		}
		if !t.hasBOS {
			t.bos, t.hasBOS = int32(id), true
		}
	}
	return nil
}
