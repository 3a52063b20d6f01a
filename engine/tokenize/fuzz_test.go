package tokenize

import (
	"strings"
	"testing"
)

// FuzzLoadTokenizerJSON: any bytes either parse into a tokenizer that
// encodes and decodes without panicking and only yields ids inside its
// vocabulary, or give an error that says it is about tokenizer.json. Seeds
// live in testdata/fuzz/FuzzLoadTokenizerJSON and run with go test.
func FuzzLoadTokenizerJSON(f *testing.F) {
	texts := []string{"", "hi there  ", "a\n\n b'S 123", "<s>日本 🎉\xff", "<|end|>x"}
	f.Fuzz(func(t *testing.T, data []byte) {
		tok, err := ParseJSON(data)
		if err != nil {
			if tok != nil {
				t.Fatalf("error %v with a tokenizer", err)
			}
			if !strings.HasPrefix(err.Error(), "tokenizer.json: ") {
				t.Fatalf("error does not name tokenizer.json: %v", err)
			}
			return
		}
		if bos, ok := tok.BOS(); ok && (bos < 0 || int(bos) >= tok.VocabSize()) {
			t.Fatalf("BOS %d outside vocabulary of %d", bos, tok.VocabSize())
		}
		for _, s := range texts {
			for _, ids := range [][]int32{tok.Encode(s), tok.EncodeWithSpecial(s)} {
				for _, id := range ids {
					if id < 0 || int(id) >= tok.VocabSize() {
						t.Fatalf("Encode(%q) gave id %d outside vocabulary of %d", s, id, tok.VocabSize())
					}
				}
				_ = tok.Decode(ids)
			}
		}
		_ = tok.Decode([]int32{-1, 0, 1, int32(tok.VocabSize()), 1 << 30})
	})
}
