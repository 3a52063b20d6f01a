// Package data reads corpora into token streams, splits off held-out
// tails, and draws reproducible training batches whose position can be
// saved and restored. Two sources exist wherever Go is installed, so the
// default experiment needs no download: "opticks" (Newton's Opticks, English
// prose from GOROOT/src/testdata) and "gocode" (the Go standard library's
// source).
package data

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	goruntime "runtime"
	"sort"
	"strings"
	"sync"

	"lens/engine/tokenize"
)

// Corpus is a named token stream.
type Corpus struct {
	Name   string
	Tokens []int32
}

var goroot = sync.OnceValue(func() string {
	if r := goruntime.GOROOT(); r != "" {
		if _, err := os.Stat(filepath.Join(r, "src")); err == nil {
			return r
		}
	}
	out, err := exec.Command("go", "env", "GOROOT").Output()
	if err != nil {
		return ""
	}
	return strings.TrimSpace(string(out))
})

// DefaultGoCodeBytes caps the gocode source.
const DefaultGoCodeBytes = 4 << 20

func encode(tok tokenize.Tokenizer, b []byte) []int32 {
	if bt, ok := tok.(*tokenize.Byte); ok {
		return bt.EncodeBytes(b)
	}
	return tok.Encode(string(b))
}

// Opticks is Newton's Opticks from GOROOT/src/testdata.
func Opticks(tok tokenize.Tokenizer) (Corpus, error) {
	p := filepath.Join(goroot(), "src", "testdata", "Isaac.Newton-Opticks.txt")
	b, err := os.ReadFile(p)
	if err != nil {
		return Corpus{}, fmt.Errorf("data source opticks: %w", err)
	}
	return Corpus{Name: "opticks", Tokens: encode(tok, b)}, nil
}

// GoCode is the .go files under GOROOT/src (sorted paths, testdata and
// vendor folders skipped), joined by blank lines, up to maxBytes (0: the
// default).
func GoCode(tok tokenize.Tokenizer, maxBytes int) (Corpus, error) {
	if maxBytes <= 0 {
		maxBytes = DefaultGoCodeBytes
	}
	root := filepath.Join(goroot(), "src")
	if _, err := os.Stat(root); err != nil {
		return Corpus{}, fmt.Errorf("data source gocode: %w", err)
	}
	var paths []string
	err := filepath.WalkDir(root, func(p string, d fs.DirEntry, err error) error {
		if err != nil {
			return err
		}
		if d.IsDir() && (d.Name() == "testdata" || d.Name() == "vendor") {
			return filepath.SkipDir
		}
		if !d.IsDir() && strings.HasSuffix(p, ".go") {
			paths = append(paths, p)
		}
		return nil
	})
	if err != nil {
		return Corpus{}, fmt.Errorf("data source gocode: %w", err)
	}
	sort.Strings(paths)
	var buf bytes.Buffer
	for _, p := range paths {
		b, err := os.ReadFile(p)
		if err != nil {
			return Corpus{}, fmt.Errorf("data source gocode: %w", err)
		}
		buf.Write(b)
		buf.WriteString("\n\n")
		if buf.Len() >= maxBytes {
			break
		}
	}
	b := buf.Bytes()
	if len(b) > maxBytes {
		b = b[:maxBytes]
	}
	if len(b) == 0 {
		return Corpus{}, fmt.Errorf("data source gocode: no .go files under %s", root)
	}
	return Corpus{Name: "gocode", Tokens: encode(tok, b)}, nil
}

// Text reads a text file, or every regular file under a folder in sorted
// order. Files with NUL bytes near the start are rejected as binary.
func Text(tok tokenize.Tokenizer, path string) (Corpus, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Corpus{}, fmt.Errorf("data file: %w", err)
	}
	var files []string
	if st.IsDir() {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return Corpus{}, fmt.Errorf("data folder %s: %w", path, err)
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Corpus{}, fmt.Errorf("data file: %w", err)
		}
		if bytes.IndexByte(b[:min(len(b), 8192)], 0) >= 0 {
			return Corpus{}, fmt.Errorf("data file %s: contains NUL bytes; not a text file", f)
		}
		buf.Write(b)
	}
	if buf.Len() == 0 {
		return Corpus{}, fmt.Errorf("data %s: empty corpus", path)
	}
	return Corpus{Name: filepath.Base(path), Tokens: encode(tok, buf.Bytes())}, nil
}

// Source resolves a source name: "opticks", "gocode", or a path.
func Source(tok tokenize.Tokenizer, name string) (Corpus, error) {
	switch name {
	case "opticks":
		return Opticks(tok)
	case "gocode":
		return GoCode(tok, 0)
	case "":
		return Corpus{}, fmt.Errorf("data: empty source name")
	}
	return Text(tok, name)
}

// Split holds out the tail fraction evalFrac of c for evaluation.
func Split(c Corpus, evalFrac float64) (train, eval Corpus, err error) {
	if !(evalFrac > 0 && evalFrac < 1) {
		return Corpus{}, Corpus{}, fmt.Errorf("data field eval_frac = %g: must be in (0, 1)", evalFrac)
	}
	n := int(math.Round(float64(len(c.Tokens)) * (1 - evalFrac)))
	if n < 2 || len(c.Tokens)-n < 2 {
		return Corpus{}, Corpus{}, fmt.Errorf("data %s: %d tokens are too few to split", c.Name, len(c.Tokens))
	}
	return Corpus{Name: c.Name, Tokens: c.Tokens[:n]}, Corpus{Name: c.Name, Tokens: c.Tokens[n:]}, nil
}

// Batcher draws batches of windows at random offsets from a seeded PCG.
type Batcher struct {
	tokens     []int32
	batch, seq int
	pcg        *rand.PCG
	rng        *rand.Rand
	drawn      int
}

// NewBatcher prepares batches of batch windows of seqLen+1 tokens.
func NewBatcher(tokens []int32, batch, seqLen int, seed uint64) (*Batcher, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("data field batch_size = %d: must be positive", batch)
	}
	if seqLen <= 0 {
		return nil, fmt.Errorf("data field seq_len = %d: must be positive", seqLen)
	}
	if len(tokens) < seqLen+1 {
		return nil, fmt.Errorf("data: %d tokens are fewer than one window of seq_len+1 = %d", len(tokens), seqLen+1)
	}
	pcg := rand.NewPCG(seed, 0x62617463)
	return &Batcher{tokens: tokens, batch: batch, seq: seqLen, pcg: pcg, rng: rand.New(pcg)}, nil
}

// Next fills inputs and targets (batch×seqLen each).
func (b *Batcher) Next(inputs, targets []int32) error {
	if len(inputs) != b.batch*b.seq || len(targets) != b.batch*b.seq {
		return fmt.Errorf("data: batch buffers of %d and %d, want %d", len(inputs), len(targets), b.batch*b.seq)
	}
	span := len(b.tokens) - b.seq
	for i := range b.batch {
		off := b.rng.IntN(span)
		copy(inputs[i*b.seq:(i+1)*b.seq], b.tokens[off:off+b.seq])
		copy(targets[i*b.seq:(i+1)*b.seq], b.tokens[off+1:off+1+b.seq])
	}
	b.drawn++
	return nil
}

type batcherState struct {
	PCG   []byte `json:"pcg"`
	Drawn int    `json:"drawn"`
}

// State is the batcher's position.
func (b *Batcher) State() (json.RawMessage, error) {
	p, err := b.pcg.MarshalBinary()
	if err != nil {
		return nil, err
	}
	return json.Marshal(batcherState{PCG: p, Drawn: b.drawn})
}

// Restore continues from a State.
func (b *Batcher) Restore(s json.RawMessage) error {
	var st batcherState
	if err := json.Unmarshal(s, &st); err != nil {
		return fmt.Errorf("batcher state: %w", err)
	}
	if err := b.pcg.UnmarshalBinary(st.PCG); err != nil {
		return fmt.Errorf("batcher state: %w", err)
	}
	b.drawn = st.Drawn
	return nil
}

// UnigramEntropy is the plug-in entropy of the token distribution, in nats.
func UnigramEntropy(tokens []int32) float64 {
	counts := map[int32]int{}
	for _, t := range tokens {
		counts[t]++
	}
	var h float64
	n := float64(len(tokens))
	for _, c := range counts {
		p := float64(c) / n
		h -= p * math.Log(p)
	}
	return h
}
