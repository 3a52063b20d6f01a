package sft

import (
	"fmt"

	"lens/engine/tokenize"
)

// Ignore is the label of a token the loss skips (Hugging Face's -100; the
// trainer skips every negative target).
const Ignore = -1

// Row is one tokenized example: Labels[i] is Tokens[i] where the loss
// trains on it and Ignore elsewhere. Where locates its example.
type Row struct {
	Tokens, Labels []int32
	Where          string
}

// Trained is the number of tokens the loss counts: labels of every token
// but the first, which no position predicts.
func (r Row) Trained() int {
	n := 0
	for _, l := range r.Labels[min(1, len(r.Labels)):] {
		if l >= 0 {
			n++
		}
	}
	return n
}

// Options says how examples become tokens.
type Options struct {
	// TrainOn is "completion" (the default: only completions and assistant
	// turns train, as TRL's completion_only_loss/assistant_only_loss) or
	// "all".
	TrainOn string
	// MaxLen caps an example's tokens, BOS and EOS included (0: no cap);
	// Truncation says what a longer one does: "error" (the default),
	// "right" (keep the first MaxLen) or "left" (keep the last MaxLen).
	MaxLen     int
	Truncation string
	// BOS is put before text and prompt/completion examples, EOS after
	// them (TRL's SFTTrainer appends the EOS token). Conversations get
	// neither: their template writes what the model expects.
	BOS, EOS []int32
	Renderer Renderer // for messages; nil: Simple
}

// Stats describes a tokenized dataset.
type Stats struct {
	Examples  int `json:"examples"`  // rows kept
	Truncated int `json:"truncated"` // examples cut to MaxLen
	Dropped   int `json:"dropped"`   // examples left with no trained token, not kept
	Tokens    int `json:"tokens"`    // tokens of the rows kept
	Trained   int `json:"trained"`   // of them, counted by the loss
	Longest   int `json:"longest"`   // tokens of the longest example before truncation
}

// Add sums two Stats (Longest is the larger).
func (s Stats) Add(o Stats) Stats {
	return Stats{Examples: s.Examples + o.Examples, Truncated: s.Truncated + o.Truncated, Dropped: s.Dropped + o.Dropped,
		Tokens: s.Tokens + o.Tokens, Trained: s.Trained + o.Trained, Longest: max(s.Longest, o.Longest)}
}

// Check reports the first bad option by its name.
func (o Options) Check() error {
	switch o.TrainOn {
	case "", "completion", "all":
	default:
		return fmt.Errorf("train_on = %q: want \"completion\" or \"all\"", o.TrainOn)
	}
	switch o.Truncation {
	case "", "error", "right", "left":
	default:
		return fmt.Errorf("truncation = %q: want \"error\", \"right\" or \"left\"", o.Truncation)
	}
	if o.MaxLen < 0 || o.MaxLen == 1 {
		return fmt.Errorf("max_len = %d: want at least 2 tokens (or 0 for no cap)", o.MaxLen)
	}
	return nil
}

// withSpecial is a tokenizer that can also produce special tokens from
// their text, as chat templates write them.
type withSpecial interface {
	EncodeWithSpecial(string) []int32
}

// Encode tokenizes every example of d with its loss mask. An example
// longer than MaxLen is an error naming it with Truncation "error", else
// it is cut and counted; one left with no trained token is dropped and
// counted.
func Encode(d Dataset, tok tokenize.Tokenizer, o Options) ([]Row, Stats, error) {
	if err := o.Check(); err != nil {
		return nil, Stats{}, err
	}
	all := o.TrainOn == "all"
	r := o.Renderer
	if r == nil {
		r = Simple{}
	}
	enc := tok.Encode
	var st Stats
	rows := make([]Row, 0, len(d.Examples))
	for _, ex := range d.Examples {
		var row Row
		add := func(ids []int32, train bool) {
			row.Tokens = append(row.Tokens, ids...)
			for _, id := range ids {
				if train {
					row.Labels = append(row.Labels, id)
				} else {
					row.Labels = append(row.Labels, Ignore)
				}
			}
		}
		switch d.Shape {
		case ShapeText:
			add(o.BOS, true)
			add(enc(ex.Text), true)
			add(o.EOS, true)
		case ShapeCompletion:
			// The prompt and completion are encoded apart, so no token
			// straddles the boundary between what is and is not trained.
			add(o.BOS, all)
			add(enc(ex.Prompt), all)
			add(enc(ex.Completion), true)
			add(o.EOS, true)
		case ShapeMessages:
			segs, err := Segments(r, ex.Messages)
			if err != nil {
				return nil, Stats{}, fmt.Errorf("%s: %w", ex.Where, err)
			}
			menc := enc
			if ws, ok := tok.(withSpecial); ok {
				menc = ws.EncodeWithSpecial
			}
			for _, s := range segs {
				add(menc(s.Text), all || s.Train)
			}
		default:
			return nil, Stats{}, fmt.Errorf("dataset %s: unknown shape %q", d.Name, d.Shape)
		}
		n := len(row.Tokens)
		st.Longest = max(st.Longest, n)
		if o.MaxLen > 0 && n > o.MaxLen {
			switch o.Truncation {
			case "", "error":
				return nil, Stats{}, fmt.Errorf("%s: %d tokens exceed max_len = %d (truncation = \"error\"; raise max_len or truncate \"right\" or \"left\")", ex.Where, n, o.MaxLen)
			case "right":
				row.Tokens, row.Labels = row.Tokens[:o.MaxLen], row.Labels[:o.MaxLen]
			case "left":
				row.Tokens, row.Labels = row.Tokens[n-o.MaxLen:], row.Labels[n-o.MaxLen:]
			}
			st.Truncated++
		}
		tr := row.Trained()
		if tr == 0 {
			st.Dropped++
			continue
		}
		row.Where = ex.Where
		st.Examples++
		st.Tokens += len(row.Tokens)
		st.Trained += tr
		rows = append(rows, row)
	}
	if len(rows) == 0 {
		return nil, st, fmt.Errorf("dataset %s: no example has a token to train on (%d dropped)", d.Name, st.Dropped)
	}
	return rows, st, nil
}
