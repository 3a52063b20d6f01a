package runs

import (
	"crypto/sha256"
	"encoding/binary"
	"encoding/hex"
	"fmt"
	"math"
	"slices"

	"lens/engine/lora"
	"lens/kv"
)

// InitRef is the adapter a LoRA run starts from instead of lora.New's
// initialisation (A random, B zero): another run's checkpoint, or a PEFT
// directory (e.g. one exported by lens or downloaded from the Hub). The run
// records the checkpoint step and a hash of the values it started from, so
// a run resumed before its first checkpoint starts from the same adapter,
// or stops if that adapter changed.
type InitRef struct {
	Run  string `json:"run,omitempty"`
	Step int    `json:"step,omitempty"` // with Run: its checkpoint (≤ 0: the latest)
	Dir  string `json:"dir,omitempty"`
	Hash string `json:"hash,omitempty"` // sha256 of the modules' names, shapes and values
}

func (r *InitRef) String() string {
	if r.Run != "" && r.Step <= 0 {
		return fmt.Sprintf("run %s (its latest checkpoint)", r.Run)
	}
	if r.Run != "" {
		return fmt.Sprintf("run %s step %d", r.Run, r.Step)
	}
	return r.Dir
}

// checkInit validates a spec's Init before anything runs.
func checkInit(s Spec) error {
	r := s.Init
	switch {
	case r == nil:
		return nil
	case s.LoRA == nil:
		return fmt.Errorf("init: full training starts from the base weights; init= needs a LoRA run")
	case (r.Run == "") == (r.Dir == ""):
		return fmt.Errorf("init: give a run or a PEFT directory (one of them)")
	}
	return nil
}

// applyInit loads the run's init adapter, checks that it fits the run's
// adapter (same modules, ranks and shapes) and was trained on the same
// base, pins its checkpoint step and hash in j.Spec.Init (or checks them
// against what the run recorded) and copies its values into the trainer.
// The optimizer moments stay zero: a new run starts a new optimizer.
func (j *Job) applyInit(st *kv.Store) error {
	r := j.Spec.Init
	if r == nil {
		return nil
	}
	src, err := j.loadInit(st)
	if err != nil {
		return fmt.Errorf("init %s: %w", r, err)
	}
	ad := j.Trainer.Adapter
	for _, mod := range src.Modules {
		if _, ok := ad.A[mod]; !ok {
			return fmt.Errorf("init %s: it adapts %s, which this run's lora targets (%v) do not include", r, mod, ad.Config.Targets)
		}
	}
	for _, mod := range ad.Modules {
		if src.A[mod] == nil || src.B[mod] == nil {
			return fmt.Errorf("init %s: it has no adapter for %s, which this run adapts", r, mod)
		}
		for _, pair := range [][2][]int{{src.A[mod].Shape, ad.A[mod].Shape}, {src.B[mod].Shape, ad.B[mod].Shape}} {
			if !slices.Equal(pair[0], pair[1]) {
				return fmt.Errorf("init %s: %s has shape %v there and %v in this run (rank %d here)", r, mod, pair[0], pair[1], ad.Config.Rank)
			}
		}
	}
	h := adapterHash(src)
	if r.Hash != "" && r.Hash != h {
		return fmt.Errorf("init %s: the adapter changed since this run started (hash %.12s, recorded %.12s)", r, h, r.Hash)
	}
	r.Hash = h
	for _, mod := range ad.Modules {
		for suffix, from := range map[string][]float32{".lora_A": src.A[mod].Data, ".lora_B": src.B[mod].Data} {
			p := j.Trainer.Param(mod + suffix)
			if p == nil {
				return fmt.Errorf("init %s: the trainer has no tensor %s", r, mod+suffix)
			}
			copy(p.Data, from)
			clear(p.M)
			clear(p.V)
		}
	}
	j.Trainer.ParamsChanged()
	return nil
}

func (j *Job) loadInit(st *kv.Store) (*lora.Adapter, error) {
	r := j.Spec.Init
	if r.Dir != "" {
		return lora.Load(r.Dir, j.Trainer.Model)
	}
	meta, err := st.GetRun(r.Run)
	if err != nil {
		return nil, err
	}
	from, err := SpecOf(meta)
	if err != nil {
		return nil, err
	}
	if from.LoRA == nil {
		return nil, fmt.Errorf("run %s trained every weight, not an adapter", r.Run)
	}
	if from.Base.Hash != j.Spec.Base.Hash {
		return nil, fmt.Errorf("run %s was trained on another base model (%.12s, this run's is %.12s)", r.Run, from.Base.Hash, j.Spec.Base.Hash)
	}
	step := r.Step
	if step <= 0 {
		step = -1
	} else {
		cms, err := st.Checkpoints(r.Run)
		if err != nil {
			return nil, err
		}
		have := make([]int, len(cms))
		for i, cm := range cms {
			have[i] = cm.Step
		}
		if !slices.Contains(have, step) {
			return nil, fmt.Errorf("run %s has no checkpoint at step %d (it has %v)", r.Run, step, have)
		}
	}
	src, cm, err := Adapter(st, r.Run, step)
	if err != nil {
		return nil, err
	}
	r.Step = cm.Step
	return src, nil
}

// adapterHash is a sha256 over the modules in order: name, A's and B's
// shapes and values.
func adapterHash(a *lora.Adapter) string {
	h := sha256.New()
	var b [4]byte
	for _, mod := range slices.Sorted(slices.Values(a.Modules)) {
		h.Write([]byte(mod))
		for _, t := range []struct {
			shape []int
			data  []float32
		}{{a.A[mod].Shape, a.A[mod].Data}, {a.B[mod].Shape, a.B[mod].Data}} {
			for _, d := range t.shape {
				binary.LittleEndian.PutUint32(b[:], uint32(d))
				h.Write(b[:])
			}
			for _, v := range t.data {
				binary.LittleEndian.PutUint32(b[:], math.Float32bits(v))
				h.Write(b[:])
			}
		}
	}
	return hex.EncodeToString(h.Sum(nil))
}
