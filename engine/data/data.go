// Package data reads corpora into token streams, splits off held-out
// tails, draws reproducible training batches whose position can be saved
// and restored, and cuts held-out streams into evaluation windows. Two
// sources exist wherever Go is installed, so the default experiment needs
// no download: "opticks" (Newton's Opticks, English prose from
// GOROOT/src/testdata) and "gocode" (the Go standard library's source).
package data

import (
	"bytes"
	"encoding/binary"
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

// goroot is GOROOT as the running binary knows it, else as `go env` says.
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

// GOROOT is the Go installation the built-in sources read.
func GOROOT() string { return goroot() }

// DefaultGoCodeBytes caps the gocode source when no cap is given.
const DefaultGoCodeBytes = 4 << 20

// fileSep joins the files of a multi-file corpus.
const fileSep = "\n\n"

// binaryProbe is how much of a file is searched for NUL bytes.
const binaryProbe = 8192

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
	if len(b) == 0 {
		return Corpus{}, fmt.Errorf("data source opticks: %s: empty corpus", p)
	}
	return Corpus{Name: "opticks", Tokens: encode(tok, b)}, nil
}

// GoCode is the .go files (tests included) under GOROOT/src in sorted path
// order, testdata and vendor folders skipped, joined by blank lines and cut
// at maxBytes (0 or less: DefaultGoCodeBytes).
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
		if d.Type().IsRegular() && strings.HasSuffix(p, ".go") {
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
		if buf.Len() >= maxBytes {
			break
		}
		b, err := os.ReadFile(p)
		if err != nil {
			return Corpus{}, fmt.Errorf("data source gocode: %w", err)
		}
		if buf.Len() > 0 {
			buf.WriteString(fileSep)
		}
		buf.Write(b)
	}
	b := buf.Bytes()
	if len(b) > maxBytes {
		b = b[:maxBytes]
	}
	if len(b) == 0 {
		return Corpus{}, fmt.Errorf("data source gocode: no .go files under %s: empty corpus", root)
	}
	return Corpus{Name: "gocode", Tokens: encode(tok, b)}, nil
}

// Text reads a text file, or every regular file under a folder in sorted
// path order (hidden files and folders skipped), joined by blank lines.
// A file with a NUL byte in its first 8 KiB is rejected as not text; other
// bytes, valid UTF-8 or not, are taken as they are.
func Text(tok tokenize.Tokenizer, path string) (Corpus, error) {
	st, err := os.Stat(path)
	if err != nil {
		return Corpus{}, fmt.Errorf("data source: %w", err)
	}
	var files []string
	if st.IsDir() {
		err := filepath.WalkDir(path, func(p string, d fs.DirEntry, err error) error {
			if err != nil {
				return err
			}
			if p != path && strings.HasPrefix(d.Name(), ".") {
				if d.IsDir() {
					return filepath.SkipDir
				}
				return nil
			}
			if d.Type().IsRegular() {
				files = append(files, p)
			}
			return nil
		})
		if err != nil {
			return Corpus{}, fmt.Errorf("data source %s: %w", path, err)
		}
		sort.Strings(files)
	} else {
		files = []string{path}
	}
	var buf bytes.Buffer
	for _, f := range files {
		b, err := os.ReadFile(f)
		if err != nil {
			return Corpus{}, fmt.Errorf("data source %s: %w", path, err)
		}
		if bytes.IndexByte(b[:min(len(b), binaryProbe)], 0) >= 0 {
			return Corpus{}, fmt.Errorf("data source %s: file %s contains NUL bytes; not a text file", path, f)
		}
		if len(b) == 0 {
			continue
		}
		if buf.Len() > 0 {
			buf.WriteString(fileSep)
		}
		buf.Write(b)
	}
	if buf.Len() == 0 {
		return Corpus{}, fmt.Errorf("data source %s: empty corpus", path)
	}
	return Corpus{Name: filepath.Base(path), Tokens: encode(tok, buf.Bytes())}, nil
}

// Source resolves a source name: "opticks", "gocode" (default cap), or a
// file or folder path.
func Source(tok tokenize.Tokenizer, name string) (Corpus, error) {
	switch name {
	case "opticks":
		return Opticks(tok)
	case "gocode":
		return GoCode(tok, 0)
	case "":
		return Corpus{}, fmt.Errorf("data field source: empty source name")
	}
	return Text(tok, name)
}

// Split holds out the contiguous tail fraction evalFrac (0 < evalFrac < 1)
// of c for evaluation, so no training window can overlap an eval window.
// Both parts keep at least two tokens. The parts alias c.Tokens.
func Split(c Corpus, evalFrac float64) (train, eval Corpus, err error) {
	if !(evalFrac > 0 && evalFrac < 1) {
		return Corpus{}, Corpus{}, fmt.Errorf("data field eval_frac = %g: must be in (0, 1)", evalFrac)
	}
	n := int(math.Round(float64(len(c.Tokens)) * (1 - evalFrac)))
	if n < 2 || len(c.Tokens)-n < 2 {
		return Corpus{}, Corpus{}, fmt.Errorf("data %s: %d tokens are too few to split with eval_frac = %g", c.Name, len(c.Tokens), evalFrac)
	}
	return Corpus{Name: c.Name, Tokens: c.Tokens[:n:n]}, Corpus{Name: c.Name, Tokens: c.Tokens[n:]}, nil
}

// Batch is B rows of T tokens, row-major: Targets[i] is the token that
// follows Inputs[i] in the stream. Packed rows (several examples each)
// also carry each token's RoPE position and example (segment) id, B×T;
// nil means one sequence per row at positions 0..T-1.
type Batch struct {
	B, T                int
	Inputs, Targets     []int32
	Positions, Segments []int32
}

// Batcher draws batches of windows at random offsets from a seeded PCG.
// The same tokens, sizes and seed give the same batches, and State and
// Restore carry the position across a resumed run.
type Batcher struct {
	tokens     []int32
	batch, seq int
	pcg        *rand.PCG
	rng        *rand.Rand
	drawn      int
}

// pcgStream is the PCG's second seed word; the first is the caller's seed.
const pcgStream = 0x62617463 // "batc"

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
	pcg := rand.NewPCG(seed, pcgStream)
	return &Batcher{tokens: tokens, batch: batch, seq: seqLen, pcg: pcg, rng: rand.New(pcg)}, nil
}

// Next fills inputs and targets (batch×seqLen each, row-major) with the
// next batch.
func (b *Batcher) Next(inputs, targets []int32) error {
	if len(inputs) != b.batch*b.seq || len(targets) != b.batch*b.seq {
		return fmt.Errorf("data: batch buffers of %d and %d tokens, want batch_size×seq_len = %d", len(inputs), len(targets), b.batch*b.seq)
	}
	span := len(b.tokens) - b.seq // offsets 0..span-1 leave room for the target
	for i := range b.batch {
		off := b.rng.IntN(span)
		copy(inputs[i*b.seq:(i+1)*b.seq], b.tokens[off:off+b.seq])
		copy(targets[i*b.seq:(i+1)*b.seq], b.tokens[off+1:off+1+b.seq])
	}
	b.drawn++
	return nil
}

// NextBatch is Next into freshly allocated buffers.
func (b *Batcher) NextBatch() (Batch, error) {
	out := Batch{B: b.batch, T: b.seq, Inputs: make([]int32, b.batch*b.seq), Targets: make([]int32, b.batch*b.seq)}
	if err := b.Next(out.Inputs, out.Targets); err != nil {
		return Batch{}, err
	}
	return out, nil
}

// Drawn is the number of batches drawn so far (restored by Restore).
func (b *Batcher) Drawn() int { return b.drawn }

// BatcherState is a Batcher's position in plain integers: the PCG state
// words and the number of batches drawn, with the shape the batcher had so
// a state cannot be restored into a batcher that would draw differently.
type BatcherState struct {
	PCGHi  uint64 `json:"pcg_hi"`
	PCGLo  uint64 `json:"pcg_lo"`
	Drawn  int    `json:"drawn"`
	Batch  int    `json:"batch_size"`
	SeqLen int    `json:"seq_len"`
	Tokens int    `json:"tokens"`
}

// pcgPrefix starts math/rand/v2's binary encoding of a PCG.
const pcgPrefix = "pcg:"

// Position returns the batcher's state.
func (b *Batcher) Position() (BatcherState, error) {
	p, err := b.pcg.MarshalBinary()
	if err != nil {
		return BatcherState{}, fmt.Errorf("batcher state: %w", err)
	}
	if len(p) != len(pcgPrefix)+16 || string(p[:len(pcgPrefix)]) != pcgPrefix {
		return BatcherState{}, fmt.Errorf("batcher state: unexpected PCG encoding of %d bytes", len(p))
	}
	return BatcherState{
		PCGHi:  binary.BigEndian.Uint64(p[len(pcgPrefix):]),
		PCGLo:  binary.BigEndian.Uint64(p[len(pcgPrefix)+8:]),
		Drawn:  b.drawn,
		Batch:  b.batch,
		SeqLen: b.seq,
		Tokens: len(b.tokens),
	}, nil
}

// SetPosition continues from a state taken from a batcher with the same
// batch size, sequence length and token count.
func (b *Batcher) SetPosition(s BatcherState) error {
	if s.Batch != b.batch || s.SeqLen != b.seq || s.Tokens != len(b.tokens) {
		return fmt.Errorf("batcher state: saved for batch_size=%d seq_len=%d over %d tokens, but this batcher has batch_size=%d seq_len=%d over %d tokens",
			s.Batch, s.SeqLen, s.Tokens, b.batch, b.seq, len(b.tokens))
	}
	if s.Drawn < 0 {
		return fmt.Errorf("batcher state: drawn = %d must not be negative", s.Drawn)
	}
	p := make([]byte, 0, len(pcgPrefix)+16)
	p = append(p, pcgPrefix...)
	p = binary.BigEndian.AppendUint64(p, s.PCGHi)
	p = binary.BigEndian.AppendUint64(p, s.PCGLo)
	if err := b.pcg.UnmarshalBinary(p); err != nil {
		return fmt.Errorf("batcher state: %w", err)
	}
	b.drawn = s.Drawn
	return nil
}

// State is the batcher's position as JSON (a BatcherState).
func (b *Batcher) State() (json.RawMessage, error) {
	s, err := b.Position()
	if err != nil {
		return nil, err
	}
	out, err := json.Marshal(s)
	if err != nil {
		return nil, fmt.Errorf("batcher state: %w", err)
	}
	return out, nil
}

// Restore continues from a State.
func (b *Batcher) Restore(raw json.RawMessage) error {
	var s BatcherState
	if err := json.Unmarshal(raw, &s); err != nil {
		return fmt.Errorf("batcher state: %w", err)
	}
	return b.SetPosition(s)
}

// Window is one evaluation window: seqLen inputs and the seqLen tokens
// that follow each of them. Both slices alias the token stream.
type Window struct {
	Inputs, Targets []int32
}

// NumWindows is the number of windows Windows cuts from n tokens.
func NumWindows(n, seqLen int) int {
	if seqLen <= 0 || n < seqLen+1 {
		return 0
	}
	return (n - 1) / seqLen
}

// Windows cuts tokens into consecutive windows whose inputs do not
// overlap: window w has inputs tokens[w·seqLen : (w+1)·seqLen] and targets
// shifted one token on. A trailing partial window is dropped, so every
// window has exactly seqLen positions and each target token is scored at
// most once.
func Windows(tokens []int32, seqLen int) ([]Window, error) {
	if seqLen <= 0 {
		return nil, fmt.Errorf("data field seq_len = %d: must be positive", seqLen)
	}
	n := NumWindows(len(tokens), seqLen)
	if n == 0 {
		return nil, fmt.Errorf("data: %d tokens are fewer than one window of seq_len+1 = %d", len(tokens), seqLen+1)
	}
	out := make([]Window, n)
	for w := range out {
		at := w * seqLen
		out[w] = Window{Inputs: tokens[at : at+seqLen : at+seqLen], Targets: tokens[at+1 : at+1+seqLen : at+1+seqLen]}
	}
	return out, nil
}

// EvalBatches groups Windows into batches of batch windows, in order. The
// last batch holds the remaining windows and so may have B < batch; a
// caller with a fixed batch shape pads it.
func EvalBatches(tokens []int32, batch, seqLen int) ([]Batch, error) {
	if batch <= 0 {
		return nil, fmt.Errorf("data field batch_size = %d: must be positive", batch)
	}
	ws, err := Windows(tokens, seqLen)
	if err != nil {
		return nil, err
	}
	var out []Batch
	for w0 := 0; w0 < len(ws); w0 += batch {
		rows := ws[w0:min(w0+batch, len(ws))]
		b := Batch{B: len(rows), T: seqLen, Inputs: make([]int32, 0, len(rows)*seqLen), Targets: make([]int32, 0, len(rows)*seqLen)}
		for _, w := range rows {
			b.Inputs = append(b.Inputs, w.Inputs...)
			b.Targets = append(b.Targets, w.Targets...)
		}
		out = append(out, b)
	}
	return out, nil
}

// UnigramEntropy is the plug-in (maximum-likelihood) entropy of the token
// distribution, in nats: the loss of the best model that ignores context.
// It is 0 for an empty stream, and summed in token order so the result is
// the same bits every time.
func UnigramEntropy(tokens []int32) float64 {
	if len(tokens) == 0 {
		return 0
	}
	counts := map[int32]int{}
	for _, t := range tokens {
		counts[t]++
	}
	ids := make([]int32, 0, len(counts))
	for id := range counts {
		ids = append(ids, id)
	}
	sort.Slice(ids, func(i, j int) bool { return ids[i] < ids[j] })
	var h float64
	n := float64(len(tokens))
	for _, id := range ids {
		p := float64(counts[id]) / n
		h -= p * math.Log(p)
	}
	return h
}
