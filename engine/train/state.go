package train

import (
	"encoding/json"
	"fmt"
)

// State is the trainer's position apart from tensors: restoring it with
// the parameters and optimizer moments continues a run bit for bit.
type State struct {
	Step     int             `json:"step"`
	Batches  json.RawMessage `json:"batches"`
	Dropout  []byte          `json:"dropout"` // PCG state of the dropout masks
	BadSteps int             `json:"bad_steps"`
	LRScale  float64         `json:"lr_scale,omitempty"` // after NaN rollbacks; 0 means 1
}

// State captures the trainer's position.
func (t *Trainer) State() (State, error) {
	b, err := t.train.State()
	if err != nil {
		return State{}, fmt.Errorf("save data position: %w", err)
	}
	d, err := t.drop.MarshalBinary()
	if err != nil {
		return State{}, err
	}
	s := State{Step: t.Step, Batches: b, Dropout: d, BadSteps: t.badSteps}
	if t.lrScale != 1 {
		s.LRScale = t.lrScale
	}
	return s, nil
}

// ParamsChanged tells the trainer that its tensors (Param.Data, M, V) were
// rewritten from outside, as Restore's caller does; a device step uploads
// them again before the next step.
func (t *Trainer) ParamsChanged() {
	if t.device != nil {
		t.device.stale = true
	}
}

// Restore sets the trainer's position; the caller restores the tensors
// (Param.Data, M, V).
func (t *Trainer) Restore(s State) error {
	if err := t.train.Restore(s.Batches); err != nil {
		return fmt.Errorf("restore data position: %w", err)
	}
	if err := t.drop.UnmarshalBinary(s.Dropout); err != nil {
		return fmt.Errorf("restore dropout state: %w", err)
	}
	t.Step, t.badSteps, t.lrScale = s.Step, s.BadSteps, s.LRScale
	if t.device != nil {
		t.device.stale = true // the caller has just rewritten the tensors
	}
	if t.lrScale == 0 {
		t.lrScale = 1
	}
	return nil
}
