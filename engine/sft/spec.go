package sft

import (
	"fmt"
	"math"
	"math/rand/v2"
	"path/filepath"
	"sort"
	"strings"

	"lens/engine/data"
	"lens/engine/tokenize"
)

// Spec describes an example dataset completely enough to rebuild it from
// a run's record: a file (Path, Format, Fields) or examples given inline
// (built in a script, or reshaped there by a function the record cannot
// hold, so their normalized form is kept instead), where the held-out
// examples come from, and how examples become tokens.
type Spec struct {
	Path   string    `json:"path,omitempty"`
	Format string    `json:"format,omitempty"` // "jsonl" or "parquet"; empty: by extension
	Fields Fields    `json:"fields,omitzero"`
	Shape  Shape     `json:"shape,omitempty"` // of Examples
	Inline []Example `json:"inline,omitempty"`
	// Builtin names a dataset built on any machine with Go: "gofunc/<task>"
	// (see GoFuncTasks), rebuilt from GOROOT when the run resumes.
	Builtin string `json:"builtin,omitempty"`
	Name    string `json:"name,omitempty"` // of inline examples (default "examples")

	// Held-out examples: a file or inline examples of their own (read with
	// the same Format and Fields), else the fraction EvalFrac (default
	// 0.05, at least one example) split off the dataset.
	EvalPath   string    `json:"eval_path,omitempty"`
	EvalShape  Shape     `json:"eval_shape,omitempty"`
	EvalInline []Example `json:"eval_inline,omitempty"`
	EvalFrac   float64   `json:"eval_frac,omitempty"`

	TrainOn    string  `json:"train_on,omitempty"`   // "completion" (default) or "all"
	MaxLen     int     `json:"max_len,omitempty"`    // tokens per example; 0: seq_len+1
	Truncation string  `json:"truncation,omitempty"` // "error" (default), "right", "left"
	Epochs     float64 `json:"epochs,omitempty"`     // when positive, the run's steps cover this many epochs
	// Packing puts several whole examples in each training row, attention
	// and positions restarting at each one (see Batcher.NextPacked);
	// held-out batches stay one example per row.
	Packing bool `json:"packing,omitempty"`
}

// DefaultEvalFrac is the share of examples held out when no eval set is
// given.
const DefaultEvalFrac = 0.05

// splitSeed fixes which examples are held out, the same for every run
// seed, so runs that differ in seed are evaluated on the same examples.
const splitSeed = 0x73706c74 // "splt"

// DisplayName is the dataset's name: the file's base name or Name.
func (s Spec) DisplayName() string {
	if s.Path != "" {
		return filepath.Base(s.Path)
	}
	if s.Builtin != "" {
		return strings.ReplaceAll(s.Builtin, "/", "-")
	}
	if s.Name != "" {
		return s.Name
	}
	return "examples"
}

// Check reports the first field out of range, by its name.
func (s Spec) Check() error {
	given := 0
	for _, b := range []bool{s.Path != "", len(s.Inline) > 0, s.Builtin != ""} {
		if b {
			given++
		}
	}
	if given != 1 {
		return fmt.Errorf("examples: give a file, inline examples or a built-in dataset, exactly one")
	}
	if len(s.Inline) > 0 && s.Shape == "" {
		return fmt.Errorf("examples: inline examples without a shape")
	}
	if s.EvalPath != "" && len(s.EvalInline) > 0 {
		return fmt.Errorf("examples: give an eval file or inline eval examples, not both")
	}
	if len(s.EvalInline) > 0 && s.EvalShape == "" {
		return fmt.Errorf("examples: inline eval examples without a shape")
	}
	if math.IsNaN(s.EvalFrac) || s.EvalFrac < 0 || s.EvalFrac >= 1 {
		return fmt.Errorf("data field eval_frac = %g: must be in [0, 1)", s.EvalFrac)
	}
	if math.IsNaN(s.Epochs) || s.Epochs < 0 {
		return fmt.Errorf("data field epochs = %g: must not be negative", s.Epochs)
	}
	return s.options(0).Check()
}

func (s Spec) options(seqLen int) Options {
	o := Options{TrainOn: s.TrainOn, MaxLen: s.MaxLen, Truncation: s.Truncation}
	if o.MaxLen == 0 && seqLen > 0 {
		o.MaxLen = seqLen + 1
	}
	return o
}

// Load reads the training and held-out examples.
func (s Spec) Load() (trainSet, evalSet Dataset, err error) {
	if err := s.Check(); err != nil {
		return Dataset{}, Dataset{}, err
	}
	var all Dataset
	if s.Builtin != "" {
		all, err = builtinDataset(s.Builtin)
	} else {
		all, err = s.read(s.Path, s.Shape, s.Inline, s.DisplayName())
	}
	if err != nil {
		return Dataset{}, Dataset{}, err
	}
	if s.EvalPath != "" || len(s.EvalInline) > 0 {
		ev, err := s.read(s.EvalPath, s.EvalShape, s.EvalInline, s.DisplayName()+" eval")
		if err != nil {
			return Dataset{}, Dataset{}, err
		}
		return all, ev, nil
	}
	frac := s.EvalFrac
	if frac == 0 {
		frac = DefaultEvalFrac
	}
	return Split(all, frac)
}

func (s Spec) read(path string, shape Shape, inline []Example, name string) (Dataset, error) {
	if path != "" {
		return Read(path, s.Format, s.Fields)
	}
	d := Dataset{Name: name, Shape: shape, Examples: make([]Example, len(inline))}
	for i, ex := range inline {
		ex.Where = fmt.Sprintf("%s example %d", name, i)
		d.Examples[i] = ex
	}
	return d, nil
}

// Split holds out round(frac·n) examples (at least one), chosen by a
// permutation from a fixed seed; both parts keep the file's order.
func Split(d Dataset, frac float64) (trainSet, evalSet Dataset, err error) {
	n := len(d.Examples)
	k := max(1, int(math.Round(frac*float64(n))))
	if n-k < 1 {
		return Dataset{}, Dataset{}, fmt.Errorf("dataset %s: %d example(s) are too few to hold out eval_frac = %g and keep some to train on; give an eval set", d.Name, n, frac)
	}
	held := rand.New(rand.NewPCG(splitSeed, uint64(n))).Perm(n)[:k]
	sort.Ints(held)
	trainSet, evalSet = Dataset{Name: d.Name, Shape: d.Shape}, Dataset{Name: d.Name, Shape: d.Shape}
	j := 0
	for i, ex := range d.Examples {
		if j < k && held[j] == i {
			evalSet.Examples = append(evalSet.Examples, ex)
			j++
		} else {
			trainSet.Examples = append(trainSet.Examples, ex)
		}
	}
	return trainSet, evalSet, nil
}

// Prepared is a dataset ready for a trainer with batch_size×seq_len
// batches.
type Prepared struct {
	Name       string
	Train      *Batcher
	TrainRows  []Row
	EvalRows   []Row
	Eval       []data.Batch // held-out rows, batch_size at a time, padded
	TrainStats Stats
	EvalStats  Stats
	Steps      int // the steps Epochs asks for; 0 when Epochs is not set
}

// Prepare loads, tokenizes and batches the dataset for a run of
// batch×seqLen batches drawn from seed. bos and eos surround text and
// prompt/completion examples; r renders conversations (nil: Simple).
func (s Spec) Prepare(tok tokenize.Tokenizer, r Renderer, bos, eos []int32, batch, seqLen, accum int, seed uint64) (*Prepared, error) {
	o := s.options(seqLen)
	if o.MaxLen > seqLen+1 {
		return nil, fmt.Errorf("data field max_len = %d: a row holds seq_len+1 = %d tokens; raise seq_len to at least %d", o.MaxLen, seqLen+1, o.MaxLen-1)
	}
	o.BOS, o.EOS, o.Renderer = bos, eos, r
	tr, ev, err := s.Load()
	if err != nil {
		return nil, err
	}
	p := &Prepared{Name: s.DisplayName()}
	if p.TrainRows, p.TrainStats, err = Encode(tr, tok, o); err != nil {
		return nil, err
	}
	if p.EvalRows, p.EvalStats, err = Encode(ev, tok, o); err != nil {
		return nil, fmt.Errorf("eval examples: %w", err)
	}
	if p.Train, err = NewBatcher(p.TrainRows, batch, seqLen, seed); err != nil {
		return nil, err
	}
	if s.Packing {
		p.Train.Pack()
	}
	if p.Eval, err = EvalBatches(p.EvalRows, batch, seqLen); err != nil {
		return nil, err
	}
	if s.Epochs > 0 {
		p.Steps = p.Train.StepsFor(s.Epochs, max(1, accum))
	}
	return p, nil
}

// DefaultSpecials are the BOS and EOS ids for a tokenizer until its own
// chat configuration is known: its BOS when it has one, and EndMarker's
// tokens as the end of an example.
func DefaultSpecials(tok tokenize.Tokenizer) (bos, eos []int32) {
	if b, ok := tok.(interface{ BOS() (int32, bool) }); ok {
		if id, has := b.BOS(); has {
			bos = []int32{id}
		}
	}
	return bos, tok.Encode(EndMarker)
}
