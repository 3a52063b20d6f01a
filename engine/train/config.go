// Package train runs the training loop: AdamW with decoupled weight decay,
// warmup followed by a cosine, linear or constant schedule, global-L2-norm
// gradient clipping (the norm is recorded before clipping), gradient
// accumulation, held-out evaluation, LoRA or full training, hook points for
// collectors, and snapshots that let a run resume exactly where it stopped.
package train

import (
	"fmt"
	"math"
	"slices"
	"strings"

	"lens/engine/model"
)

// Config holds every training setting. Zero values take the defaults of
// Defaults; Validate names the first bad field.
type Config struct {
	Steps         int     `json:"steps"`
	BatchSize     int     `json:"batch_size"`
	SeqLen        int     `json:"seq_len"`
	GradAccum     int     `json:"grad_accum"`
	LR            float64 `json:"lr"`
	LoRAPlusRatio float64 `json:"loraplus_ratio"` // lr of B = ratio·lr (LoRA+); 1 is plain LoRA
	Warmup        int     `json:"warmup"`
	Schedule      string  `json:"schedule"` // cosine, linear or constant
	MinLRRatio    float64 `json:"min_lr_ratio"`
	Beta1         float64 `json:"beta1"`
	Beta2         float64 `json:"beta2"`
	Eps           float64 `json:"eps"`
	WeightDecay   float64 `json:"weight_decay"`
	ClipNorm      float64 `json:"clip_norm"` // 0 turns clipping off
	EvalEvery     int     `json:"eval_every"`
	EvalBatches   int     `json:"eval_batches"` // at most this many batches per eval set; 0 = all
	Seed          uint64  `json:"seed"`
	Full          bool    `json:"full"` // train the base weights instead of an adapter
	// What a non-finite loss or gradient does: NaNSkip (the default) drops
	// the step; NaNRollback restores the last checkpoint and multiplies the
	// learning rate by LRBackoff (default 0.5). MaxBadSteps consecutive
	// failures end the run (default 5). The defaults are WithDefaults's;
	// older records without these fields read as zero and get them there.
	NaNPolicy   NaNPolicy `json:"nan_policy,omitempty"`
	LRBackoff   float64   `json:"lr_backoff,omitempty"`
	MaxBadSteps int       `json:"max_bad_steps,omitempty"`
	// BaseQuant holds the frozen linear-module base weights as "nf4",
	// "nf4-dq" or "bf16" (model.Quantized), widened per use; "" keeps
	// float32. LoRA only, on the CPU.
	BaseQuant string `json:"base_quant,omitempty"`
	// HeadChunk computes the head and the loss this many token rows at a
	// time (0: all at once); the loss and gradients are the same.
	HeadChunk int `json:"head_chunk,omitempty"`
	// Checkpointing keeps only each transformer layer's input in the
	// forward pass and recomputes the layer's forward in backward (one
	// more forward pass of the blocks, about one layer's activations held
	// instead of every layer's); losses and gradients are the same bit for
	// bit. LoRA only, on the CPU graph and on a device.
	Checkpointing bool `json:"checkpointing,omitempty"`
}

// NaNPolicy is what a non-finite loss or gradient does (Config.NaNPolicy).
type NaNPolicy string

// NaN policies.
const (
	NaNSkip     NaNPolicy = "skip"     // drop the step
	NaNRollback NaNPolicy = "rollback" // restore the last checkpoint, lower the learning rate
)

// Defaults returns the settings used where a field is left zero.
func Defaults() Config {
	return Config{
		Steps: 100, BatchSize: 8, SeqLen: 128, GradAccum: 1, LR: 1e-3, LoRAPlusRatio: 1,
		Schedule: "cosine", Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, WeightDecay: 0, ClipNorm: 0,
		EvalEvery: 0, EvalBatches: 0, Seed: 0,
		NaNPolicy: NaNSkip, LRBackoff: 0.5, MaxBadSteps: 5,
	}
}

// WithDefaults fills zero fields from Defaults (Seed, Warmup, WeightDecay,
// MinLRRatio, ClipNorm and EvalEvery keep their zero meaning).
func (c Config) WithDefaults() Config {
	d := Defaults()
	if c.Steps == 0 {
		c.Steps = d.Steps
	}
	if c.BatchSize == 0 {
		c.BatchSize = d.BatchSize
	}
	if c.SeqLen == 0 {
		c.SeqLen = d.SeqLen
	}
	if c.GradAccum == 0 {
		c.GradAccum = d.GradAccum
	}
	if c.LR == 0 {
		c.LR = d.LR
	}
	if c.LoRAPlusRatio == 0 {
		c.LoRAPlusRatio = d.LoRAPlusRatio
	}
	if c.Schedule == "" {
		c.Schedule = d.Schedule
	}
	if c.Beta1 == 0 {
		c.Beta1 = d.Beta1
	}
	if c.Beta2 == 0 {
		c.Beta2 = d.Beta2
	}
	if c.Eps == 0 {
		c.Eps = d.Eps
	}
	if c.NaNPolicy == "" {
		c.NaNPolicy = d.NaNPolicy
	}
	if c.LRBackoff == 0 {
		c.LRBackoff = d.LRBackoff
	}
	if c.MaxBadSteps == 0 {
		c.MaxBadSteps = d.MaxBadSteps
	}
	return c
}

// Validate reports the first field out of range, by its name.
func (c Config) Validate() error {
	ints := []struct {
		name string
		v    int
	}{{"steps", c.Steps}, {"batch_size", c.BatchSize}, {"seq_len", c.SeqLen}, {"grad_accum", c.GradAccum}}
	for _, f := range ints {
		if f.v <= 0 {
			return fmt.Errorf("train field %s = %d: must be positive", f.name, f.v)
		}
	}
	if c.Warmup < 0 || c.EvalEvery < 0 || c.EvalBatches < 0 {
		return fmt.Errorf("train fields warmup, eval_every and eval_batches must not be negative")
	}
	floats := []struct {
		name   string
		v      float64
		lo, hi float64
		loOpen bool
	}{
		{"lr", c.LR, 0, 10, true}, {"loraplus_ratio", c.LoRAPlusRatio, 0, 1e4, true},
		{"min_lr_ratio", c.MinLRRatio, 0, 1, false}, {"beta1", c.Beta1, 0, 1, false},
		{"beta2", c.Beta2, 0, 1, false}, {"eps", c.Eps, 0, 1, true},
		{"weight_decay", c.WeightDecay, 0, 10, false}, {"clip_norm", c.ClipNorm, 0, math.MaxFloat64, false},
	}
	for _, f := range floats {
		if math.IsNaN(f.v) || f.v < f.lo || (f.loOpen && f.v == f.lo) || f.v > f.hi {
			return fmt.Errorf("train field %s = %g: out of range", f.name, f.v)
		}
	}
	if c.Beta1 >= 1 || c.Beta2 >= 1 {
		return fmt.Errorf("train fields beta1 and beta2 must be below 1")
	}
	switch c.Schedule {
	case "cosine", "linear", "constant":
	default:
		return fmt.Errorf("train field schedule = %q: want cosine, linear or constant", c.Schedule)
	}
	switch c.NaNPolicy {
	case "", NaNSkip, NaNRollback:
	default:
		return fmt.Errorf("train field nan_policy = %q: want skip or rollback", c.NaNPolicy)
	}
	if math.IsNaN(c.LRBackoff) || c.LRBackoff < 0 || c.LRBackoff >= 1 {
		return fmt.Errorf("train field lr_backoff = %g: want a factor in (0, 1)", c.LRBackoff)
	}
	if c.HeadChunk < 0 {
		return fmt.Errorf("train field head_chunk = %d: must not be negative", c.HeadChunk)
	}
	if c.BaseQuant != "" {
		if !slices.Contains(model.QuantKinds, c.BaseQuant) {
			return fmt.Errorf("train field base_quant = %q: want one of %s (or empty)", c.BaseQuant, strings.Join(model.QuantKinds, ", "))
		}
		if c.Full {
			return fmt.Errorf("train field base_quant = %q: full training needs float32 base weights", c.BaseQuant)
		}
	}
	if c.Checkpointing && c.Full {
		return fmt.Errorf("train field checkpointing: activation checkpointing supports LoRA training only, not full fine-tuning")
	}
	if c.MaxBadSteps < 0 {
		return fmt.Errorf("train field max_bad_steps = %d: must not be negative", c.MaxBadSteps)
	}
	return nil
}

// LRAt is the learning rate of the step (0-based): linear warmup over
// Warmup steps, then the schedule decays towards MinLRRatio·LR at Steps.
func (c Config) LRAt(step int) float64 {
	if step < c.Warmup {
		return c.LR * float64(step+1) / float64(c.Warmup)
	}
	f := 1.0
	if span := c.Steps - c.Warmup; span > 0 {
		p := float64(step-c.Warmup) / float64(span)
		switch c.Schedule {
		case "cosine":
			f = 0.5 * (1 + math.Cos(math.Pi*p))
		case "linear":
			f = 1 - p
		}
	}
	return c.LR * (c.MinLRRatio + (1-c.MinLRRatio)*max(0, f))
}
