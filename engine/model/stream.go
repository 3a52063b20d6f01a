package model

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"fmt"
	"hash"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"strings"

	"lens/engine/nn"
	"lens/engine/quant"
	"lens/engine/safetensors"
)

// Hash is the content hash runs record for a base model (runs.HashModel):
// SHA-256 over the config as JSON, then, for each weight in name order,
// its name and shape (fmt's "%s%v") and its float32 values little-endian,
// as the model holds them after loading (F16/BF16 widened exactly, F64
// rounded); the first 24 hex digits. Packed weights contribute their name
// and shape only: LoadQuantized and NewQuantized hash the float32 values
// as they stream past, before packing.
func Hash(m *Model) string {
	h := newWeightHash(m.Config)
	for _, n := range m.Names() {
		t := m.Weights[n]
		h.begin(n, t.Shape)
		h.add(t.Data)
	}
	return h.sum()
}

type weightHash struct {
	h   hash.Hash
	buf []byte
}

func newWeightHash(c Config) *weightHash {
	h := sha256.New()
	b, _ := json.Marshal(c)
	h.Write(b)
	return &weightHash{h: h}
}

func (w *weightHash) begin(name string, shape []int) { fmt.Fprintf(w.h, "%s%v", name, shape) }

func (w *weightHash) add(vals []float32) {
	const piece = 1 << 16
	for len(vals) > 0 {
		n := min(len(vals), piece)
		if cap(w.buf) < 4*n {
			w.buf = make([]byte, 4*piece)
		}
		b := w.buf[:4*n]
		for i, v := range vals[:n] {
			u := math.Float32bits(v)
			b[4*i], b[4*i+1], b[4*i+2], b[4*i+3] = byte(u), byte(u>>8), byte(u>>16), byte(u>>24)
		}
		w.h.Write(b)
		vals = vals[n:]
	}
}

func (w *weightHash) sum() string { return hex.EncodeToString(w.h.Sum(nil))[:24] }

// streamPiece is how many values are converted at a time (4 MB of float32).
const streamPiece = 1 << 20

// fillFunc writes the float32 values off..off+len(dst) of weight name;
// build asks for each weight's values in order, weight by weight in name
// order.
type fillFunc func(name string, off int, dst []float32) error

// build makes a model of cfg weight by weight, in name order: it hashes
// each weight's float32 values (Hash's value) as they are produced and
// holds each in its final form at once: with kind set, the weights
// Quantized packs are packed without a float32 copy of the model ever
// existing (the vocabulary tables are rounded to bf16 a piece at a time;
// an NF4 weight is quantized from one float32 buffer reused for all).
func build(cfg Config, kind string, fill fillFunc) (*Model, string, error) {
	if kind != "" && !slices.Contains(QuantKinds, kind) {
		return nil, "", fmt.Errorf("quantize %q: want one of %s (or none)", kind, strings.Join(QuantKinds, ", "))
	}
	shapes := cfg.Shapes()
	names := make([]string, 0, len(shapes))
	for n := range shapes {
		names = append(names, n)
	}
	sort.Strings(names)
	packed := map[string]bool{}
	if kind != "" {
		for _, n := range quantNames(cfg) {
			packed[n] = true
		}
	}
	m := &Model{Config: cfg, Weights: make(map[string]*Tensor, len(names))}
	if kind != "" {
		m.Packed, m.Quant = map[string]nn.Packed{}, kind
	}
	h := newWeightHash(cfg)
	var scratch []float32
	// read fills dst with the weight's values piece by piece, checking and
	// hashing each piece, and hands each to put (at its offset).
	read := func(name string, dst []float32, n int, put func(off int, piece []float32)) error {
		for off := 0; off < n; off += streamPiece {
			p := min(streamPiece, n-off)
			var piece []float32
			if dst != nil {
				piece = dst[off : off+p]
			} else {
				scratch = grow(scratch, p)
				piece = scratch
			}
			if err := fill(name, off, piece); err != nil {
				return err
			}
			for i, v := range piece {
				if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
					return fmt.Errorf("weight %s has a non-finite value at %d", name, off+i)
				}
			}
			h.add(piece)
			if put != nil {
				put(off, piece)
			}
		}
		return nil
	}
	var wide []float32 // one float32 weight at a time, for NF4
	for _, name := range names {
		shape := shapes[name]
		n := Size(shape)
		h.begin(name, shape)
		var err error
		switch {
		case !packed[name]:
			t := &Tensor{Shape: shape, Data: make([]float32, n)}
			err = read(name, t.Data, n, nil)
			m.Weights[name] = t
		case kind == QuantBF16 || name == EmbedName || name == HeadName:
			bits := make([]uint16, n)
			if err = read(name, nil, n, func(off int, p []float32) { quant.RoundBF16(bits[off:], p) }); err == nil {
				m.Packed[name], err = quant.BF16FromBits(bits, shape)
			}
			m.Weights[name] = &Tensor{Shape: shape}
		default: // nf4, nf4-dq
			wide = grow(wide, n)
			if err = read(name, wide, n, nil); err == nil {
				m.Packed[name], err = quant.QuantizeNF4(wide, shape, kind == QuantNF4DQ)
			}
			m.Weights[name] = &Tensor{Shape: shape}
		}
		if err != nil {
			return nil, "", err
		}
	}
	if err := m.check(); err != nil {
		return nil, "", err
	}
	return m, h.sum(), nil
}

func grow(b []float32, n int) []float32 {
	if cap(b) >= n {
		return b[:n]
	}
	return make([]float32, n)
}

// NewQuantized is New(cfg, seed) held as Quantized(kind) would hold it,
// bit for bit, but made weight by weight: the float32 model never exists
// (a random 1B base for benchmarks is 5 GB in float32). hash is
// Hash(New(cfg, seed)). kind "" gives New's model.
func NewQuantized(cfg Config, seed uint64, kind string) (m *Model, hash string, err error) {
	cfg = cfg.withDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	rng := rand.New(rand.NewPCG(seed, 0x6c656e73))
	shapes := cfg.Shapes()
	return build(cfg, kind, func(name string, _ int, dst []float32) error {
		shape := shapes[name]
		switch {
		case strings.HasSuffix(name, ".bias"):
			clear(dst) // zero, as HF initialises linear biases
		case len(shape) == 1:
			// norm weights: 1, or 0 under Gemma's (1 + w)
			for i := range dst {
				dst[i] = float32(1 - cfg.NormOffset())
			}
		default:
			for i := range dst {
				dst[i] = float32(rng.NormFloat64() * cfg.InitializerRange)
			}
		}
		return nil
	})
}

// Assemble makes a model of cfg from weights another store holds (a
// run's base kept as a blob) as LoadQuantized makes one from files: fill
// writes the float32 values off..off+len(dst) of weight name, asked for
// weight by weight in name order and a piece at a time, and each weight is
// packed as kind at once. hash is the float32 model's Hash. cfg is used as
// given (it is part of the hash).
func Assemble(cfg Config, kind string, fill func(name string, off int, dst []float32) error) (m *Model, hash string, err error) {
	if err := cfg.Validate(); err != nil {
		return nil, "", err
	}
	return build(cfg, kind, fill)
}

// LoadQuantized reads an HF model directory as Load does, then holds it as
// Quantized(kind) would, bit for bit, converting each tensor as it is read
// from the safetensors files (a piece at a time): neither the files nor
// the float32 model are ever whole in memory. hash is Hash(Load(dir)).
// kind "" gives Load's float32 model.
func LoadQuantized(dir, kind string) (m *Model, hash string, err error) {
	if kind != "" && !slices.Contains(QuantKinds, kind) {
		return nil, "", fmt.Errorf("quantize %q: want one of %s (or none)", kind, strings.Join(QuantKinds, ", "))
	}
	cfg, err := ReadConfig(dir)
	if err != nil {
		return nil, "", err
	}
	files, err := weightFiles(dir)
	if err != nil {
		return nil, "", err
	}
	var readers []*safetensors.Reader
	defer func() {
		for _, r := range readers {
			r.Close()
		}
	}()
	at := map[string]*safetensors.Reader{}
	from := map[string]string{}
	want := cfg.Shapes()
	for _, path := range files {
		r, err := safetensors.Open(path)
		if err != nil {
			return nil, "", fmt.Errorf("load model: %w", err)
		}
		readers = append(readers, r)
		for _, name := range r.Names() {
			if cfg.TieWordEmbeddings && name == HeadName {
				continue // tied checkpoints may still carry a copy
			}
			if prev, ok := from[name]; ok {
				return nil, "", fmt.Errorf("load model %s: weight %s is in both %s and %s", dir, name, prev, path)
			}
			shape, ok := want[name]
			if !ok {
				return nil, "", fmt.Errorf("load model %s: %s: weight %s is not part of a %d-layer model with this config", dir, path, name, cfg.NumHiddenLayers)
			}
			dt, got, _ := r.Info(name)
			switch dt {
			case safetensors.F32, safetensors.F16, safetensors.BF16, safetensors.F64:
			default:
				return nil, "", fmt.Errorf("load model %s: %s: weight %s has dtype %s, not a floating-point type", dir, path, name, dt)
			}
			if !equalShape(got, shape) {
				return nil, "", fmt.Errorf("load model %s: %s: weight %s has shape %v, config wants %v", dir, path, name, got, shape)
			}
			at[name], from[name] = r, path
		}
	}
	for name := range want {
		if _, ok := at[name]; !ok {
			return nil, "", fmt.Errorf("load model %s: weight %s is missing", dir, name)
		}
	}
	m, hash, err = build(cfg, kind, func(name string, off int, dst []float32) error {
		return at[name].Float32At(name, off, dst)
	})
	if err != nil {
		return nil, "", fmt.Errorf("load model %s: %w", dir, err)
	}
	return m, hash, nil
}
