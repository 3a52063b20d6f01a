package tokenize

import (
	"fmt"
	"os"
	"strings"
	"sync"
	"unicode"
	"unicode/utf8"
)

// BPE is a Hugging Face tokenizer.json tokenizer with a BPE model: the
// byte-level kind of GPT-2, SmolLM and Llama-3 and the SentencePiece kind
// with byte fallback of Llama-2 and Mistral. Encoding follows
// huggingface/tokenizers step by step: split off added tokens, normalize,
// pre-tokenize, merge each piece by rank. It is safe for concurrent use.
type BPE struct {
	vocab   map[string]int32
	idToken []string // token string of each id (added tokens win), "" where none
	size    int      // VocabSize

	merges       map[uint64]mergeRule
	unk          int32 // -1: none
	fuseUnk      bool
	byteFallback bool
	byteIDs      [256]int32 // id of <0xNN>, -1 when absent
	ignoreMerges bool
	prefix       string // continuing_subword_prefix
	suffix       string // end_of_word_suffix

	normalizer   normalizer   // nil: none
	preTokenizer preTokenizer // nil: none
	decoder      decoder      // nil: join with spaces, as HF does

	added       map[string]addedToken
	special     map[int32]bool
	plain       addedSplitter // non-special added tokens, used by Encode
	withSpecial addedSplitter // all added tokens, used by EncodeWithSpecial

	bos    int32
	hasBOS bool

	mu    sync.RWMutex
	cache map[string][]int32

	joinOnce sync.Once
	joinable map[uint64]struct{} // see encodeWord
}

var _ Tokenizer = (*BPE)(nil)

// mergeRule is what a pair of ids merges into, and how early.
type mergeRule struct{ rank, id int32 }

func pairKey(a, b int32) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// The word cache follows HF: pieces shorter than cacheMaxLen bytes, at most
// cacheCap of them.
const (
	cacheCap    = 10000
	cacheMaxLen = 256
)

// LoadJSON reads a tokenizer.json file.
func LoadJSON(path string) (*BPE, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer: %w", err)
	}
	t, err := ParseJSON(data)
	if err != nil {
		return nil, fmt.Errorf("load tokenizer %s: %w", path, err)
	}
	return t, nil
}

// Encode returns the ids of text. Special added tokens (<s>, <|endoftext|>)
// are never produced, even where text spells them, except the model's
// unk_token for a character it cannot encode (none with byte fallback or a
// byte-level vocabulary); non-special added tokens are, as they are
// ordinary vocabulary.
func (t *BPE) Encode(text string) []int32 { return t.encode(text, &t.plain) }

// EncodeWithSpecial is Encode that also turns the spelling of a special
// added token into its id, as HF's encode does by default.
func (t *BPE) EncodeWithSpecial(text string) []int32 { return t.encode(text, &t.withSpecial) }

// Decode writes ids back as text, running HF's decoder. Added tokens come
// out by name; ids outside the vocabulary as ⟨id⟩. Where HF would write
// U+FFFD for bytes that are not UTF-8, Decode keeps the bytes.
func (t *BPE) Decode(ids []int32) string {
	toks := make([]string, len(ids))
	for i, id := range ids {
		if id >= 0 && int(id) < len(t.idToken) && t.idToken[id] != "" {
			toks[i] = t.idToken[id]
		} else {
			toks[i] = fmt.Sprintf("⟨%d⟩", id)
		}
	}
	if t.decoder == nil {
		return strings.Join(toks, " ")
	}
	return strings.Join(t.decoder.decode(toks), "")
}

// VocabSize is one more than the largest id of the vocabulary and the added
// tokens.
func (t *BPE) VocabSize() int { return t.size }

// TokenID returns the id of a token string, added tokens first.
func (t *BPE) TokenID(name string) (int32, bool) {
	if a, ok := t.added[name]; ok {
		return a.id, true
	}
	id, ok := t.vocab[name]
	return id, ok
}

// Token returns the string of an id as the vocabulary spells it (byte-level
// stand-ins, ▁ for spaces).
func (t *BPE) Token(id int32) (string, bool) {
	if id < 0 || int(id) >= len(t.idToken) || t.idToken[id] == "" {
		return "", false
	}
	return t.idToken[id], true
}

// IsSpecial reports whether id is a special added token.
func (t *BPE) IsSpecial(id int32) bool { return t.special[id] }

// BOS is the token the post_processor template puts before every sequence,
// when it has one.
func (t *BPE) BOS() (int32, bool) { return t.bos, t.hasBOS }

func (t *BPE) encode(text string, split *addedSplitter) []int32 {
	var out []int32
	for _, seg := range split.split(text, false, true) {
		if seg.text == "" {
			// HF drops empty splits before pre-tokenizing, so "" encodes
			// to nothing even with a Metaspace that would prepend.
			continue
		}
		if seg.id >= 0 {
			out = append(out, seg.id)
			continue
		}
		norm := seg.text
		if t.normalizer != nil {
			norm = t.normalizer.normalize(norm)
		}
		for _, sub := range split.split(norm, true, seg.start) {
			if sub.text == "" {
				continue
			}
			if sub.id >= 0 {
				out = append(out, sub.id)
				continue
			}
			ps := []piece{{sub.text, sub.start}}
			if t.preTokenizer != nil {
				ps = t.preTokenizer.preTokenize(ps)
			}
			for _, p := range ps {
				out = t.encodeWord(p.text, out)
			}
		}
	}
	return out
}

// encodeWord appends the ids of one pre-tokenized piece (BPE::tokenize).
func (t *BPE) encodeWord(w string, out []int32) []int32 {
	if w == "" {
		return out
	}
	if t.ignoreMerges {
		if id, ok := t.vocab[w]; ok {
			return append(out, id)
		}
	}
	if len(w) < cacheMaxLen || t.prefix != "" || t.suffix != "" {
		return t.encodeChunk(w, out)
	}
	// A long word (a whole text, in the SentencePiece layout) is cut where
	// no merge can ever join the two characters: between characters that
	// are tokens by themselves and never adjacent inside a merged token.
	// The parts merge independently, with the same result and a small,
	// cache-friendly queue each, and short parts hit the cache.
	t.joinOnce.Do(t.buildJoinable)
	start := 0
	prev, size := utf8.DecodeRuneInString(w)
	_, prevIn := t.vocab[w[:size]]
	for i := size; i < len(w); i += size {
		var r rune
		r, size = utf8.DecodeRuneInString(w[i:])
		_, in := t.vocab[w[i:i+size]]
		if prevIn && in {
			if _, join := t.joinable[runePair(prev, r)]; !join {
				out = t.encodeChunk(w[start:i], out)
				start = i
			}
		}
		prev, prevIn = r, in
	}
	return t.encodeChunk(w[start:], out)
}

func runePair(a, b rune) uint64 { return uint64(uint32(a))<<32 | uint64(uint32(b)) }

// buildJoinable collects the rune pairs adjacent inside some vocabulary
// token: a superset of those inside merged tokens, which is what matters.
func (t *BPE) buildJoinable() {
	t.joinable = map[uint64]struct{}{}
	for tok := range t.vocab {
		prev := rune(-1)
		for _, r := range tok {
			if prev >= 0 {
				t.joinable[runePair(prev, r)] = struct{}{}
			}
			prev = r
		}
	}
}

// encodeChunk merges w through the word cache.
func (t *BPE) encodeChunk(w string, out []int32) []int32 {
	if len(w) < cacheMaxLen {
		t.mu.RLock()
		ids, ok := t.cache[w]
		t.mu.RUnlock()
		if ok {
			return append(out, ids...)
		}
	}
	n := len(out)
	out = t.mergeWord(w, out)
	if len(w) < cacheMaxLen {
		t.mu.Lock()
		if len(t.cache) < cacheCap {
			t.cache[w] = append([]int32(nil), out[n:]...)
		}
		t.mu.Unlock()
	}
	return out
}

type symbol struct {
	id         int32
	prev, next int32
	dead       bool
}

// mergeWord is HF's Word: one symbol per character (byte fallback or unk
// for characters outside the vocabulary), then merges applied lowest rank
// first, leftmost first among equal ranks, from a priority queue.
func (t *BPE) mergeWord(w string, out []int32) []int32 {
	syms := make([]symbol, 0, len(w))
	add := func(id int32) {
		n := int32(len(syms))
		if n > 0 {
			syms[n-1].next = n
		}
		syms = append(syms, symbol{id: id, prev: n - 1, next: -1})
	}
	unk := false // an unk symbol is pending (fuse_unk joins a run of them)
	for i := 0; i < len(w); {
		_, size := utf8.DecodeRuneInString(w[i:])
		s := w[i : i+size]
		if t.prefix != "" && i > 0 {
			s = t.prefix + s
		}
		i += size
		if t.suffix != "" && i == len(w) {
			s += t.suffix
		}
		if id, ok := t.vocab[s]; ok {
			if unk {
				add(t.unk)
				unk = false
			}
			add(id)
			continue
		}
		if t.byteFallback && t.haveBytes(s) {
			// As in HF, a pending unk is not flushed first.
			for j := 0; j < len(s); j++ {
				add(t.byteIDs[s[j]])
			}
			continue
		}
		if t.unk >= 0 {
			if unk && !t.fuseUnk {
				add(t.unk)
			}
			unk = true
		}
		// No unk token: HF drops the character.
	}
	if unk {
		add(t.unk)
	}

	var q mergeQueue
	for i := 0; i+1 < len(syms); i++ {
		if m, ok := t.merges[pairKey(syms[i].id, syms[i+1].id)]; ok {
			q = append(q, candidate(m.rank, int32(i)))
		}
	}
	q.init()
	for len(q) > 0 {
		rank, pos := q.pop()
		cur := &syms[pos]
		if cur.dead || cur.next < 0 {
			continue
		}
		rpos := cur.next
		right := syms[rpos]
		// Skip entries made stale by earlier merges: each rank belongs to
		// one pair, so the pair here must still have this rank.
		m, ok := t.merges[pairKey(cur.id, right.id)]
		if !ok || m.rank != rank {
			continue
		}
		cur.id = m.id
		cur.next = right.next
		syms[rpos].dead = true
		if right.next >= 0 {
			syms[right.next].prev = pos
		}
		if cur.prev >= 0 {
			if m, ok := t.merges[pairKey(syms[cur.prev].id, cur.id)]; ok {
				q.push(candidate(m.rank, cur.prev))
			}
		}
		if cur.next >= 0 {
			if m, ok := t.merges[pairKey(cur.id, syms[cur.next].id)]; ok {
				q.push(candidate(m.rank, pos))
			}
		}
	}
	for _, s := range syms {
		if !s.dead {
			out = append(out, s.id)
		}
	}
	return out
}

func (t *BPE) haveBytes(s string) bool {
	for i := 0; i < len(s); i++ {
		if t.byteIDs[s[i]] < 0 {
			return false
		}
	}
	return true
}

// mergeQueue is a 4-ary min-heap of merge candidates packed as rank<<32 |
// position, so the order is rank first, then leftmost; packing keeps the
// heap small for words of a million symbols (the SentencePiece layout has
// no pre-tokenizer, so a whole text is one word).
type mergeQueue []uint64

func candidate(rank, pos int32) uint64 { return uint64(uint32(rank))<<32 | uint64(uint32(pos)) }

func (q mergeQueue) init() {
	for i := (len(q) - 2) / 4; i >= 0; i-- {
		q.down(i)
	}
}

func (q *mergeQueue) push(c uint64) {
	*q = append(*q, c)
	h := *q
	i := len(h) - 1
	for i > 0 {
		p := (i - 1) / 4
		if h[p] <= c {
			break
		}
		h[i] = h[p]
		i = p
	}
	h[i] = c
}

func (q *mergeQueue) pop() (rank, pos int32) {
	h := *q
	top := h[0]
	n := len(h) - 1
	h[0] = h[n]
	*q = h[:n]
	q.down(0)
	return int32(top >> 32), int32(uint32(top))
}

func (q mergeQueue) down(i int) {
	n := len(q)
	if i >= n {
		return
	}
	c := q[i]
	for {
		first := 4*i + 1
		if first >= n {
			break
		}
		m := first
		for j := first + 1; j < min(first+4, n); j++ {
			if q[j] < q[m] {
				m = j
			}
		}
		if q[m] >= c {
			break
		}
		q[i] = q[m]
		i = m
	}
	q[i] = c
}

// addedToken is an entry of added_tokens.
type addedToken struct {
	content                    string
	id                         int32
	singleWord, lstrip, rstrip bool
	normalized, special        bool
}

// addedSplitter finds added tokens in text: leftmost-longest matches, then
// HF's single_word, lstrip and rstrip rules (AddedVocabulary::find_matches).
// Tokens with normalized set are looked for in normalized text under their
// normalized spelling, the others in the raw text.
type addedSplitter struct {
	raw, norm map[byte][]addedToken // by first byte, longest first
}

type segment struct {
	text  string
	id    int32 // -1: text to encode
	start bool
}

// split cuts text at added tokens: the raw ones in the input text, the
// normalized ones in normalized text.
func (a *addedSplitter) split(text string, normalized, start bool) []segment {
	set := a.raw
	if normalized {
		set = a.norm
	}
	if len(set) == 0 || text == "" {
		return []segment{{text, -1, start}}
	}
	var out []segment
	from := 0 // end of the last match
	for i := 0; i < len(text); {
		tok, ok := longestAt(set, text, i)
		if !ok {
			i++
			continue
		}
		s, e := i, i+len(tok.content)
		i = e
		if tok.singleWord {
			before, _ := utf8.DecodeLastRuneInString(text[:s])
			after, _ := utf8.DecodeRuneInString(text[e:])
			if s > 0 && isWordRune(before) || e < len(text) && isWordRune(after) {
				continue
			}
		}
		if tok.lstrip {
			s = max(len(strings.TrimRightFunc(text[:s], unicode.IsSpace)), from)
		}
		if tok.rstrip {
			e = len(text) - len(strings.TrimLeftFunc(text[e:], unicode.IsSpace))
			i = e
		}
		if s < from {
			continue
		}
		if s > from {
			out = append(out, segment{text[from:s], -1, start && from == 0})
		}
		out = append(out, segment{text[s:e], tok.id, false})
		from = e
	}
	if from < len(text) {
		out = append(out, segment{text[from:], -1, start && from == 0})
	}
	return out
}

// longestAt is the longest token of set at text[i:]; a token's content in
// set is the spelling it is matched by.
func longestAt(set map[byte][]addedToken, text string, i int) (addedToken, bool) {
	for _, tok := range set[text[i]] {
		if strings.HasPrefix(text[i:], tok.content) {
			return tok, true
		}
	}
	return addedToken{}, false
}
