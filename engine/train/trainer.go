package train

import (
	"context"
	"encoding/json"
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strings"
	"time"

	"lens/engine/data"
	"lens/engine/kern"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// Batches yields training batches and can save and restore its position,
// so a resumed run sees exactly the batches it would have seen.
type Batches interface {
	// Next fills inputs and targets (batch×seqLen each).
	Next(inputs, targets []int32) error
	State() (json.RawMessage, error)
	Restore(json.RawMessage) error
}

// PackedBatches are Batches that may put several examples in a row; when
// Packed is true the trainer draws with NextPacked, which also gives each
// token's RoPE position and segment id (see nn.Feed).
type PackedBatches interface {
	Batches
	Packed() bool
	NextPacked(inputs, targets, positions, segments []int32) error
}

// EvalSet is a named held-out token stream, evaluated in windows, or
// pre-built batch_size×seq_len batches (examples with their loss masks)
// when Batches is set.
type EvalSet struct {
	Name    string
	Tokens  []int32
	Batches []data.Batch
}

// Param is one trainable tensor with its optimizer state. Grad holds the
// step's accumulated gradient from backward until the optimizer step.
type Param struct {
	Name    string
	Shape   []int
	Data    []float32
	Grad    []float32
	M, V    []float32
	LRScale float64
	Decay   bool
}

// StepInfo describes one optimizer step as the hooks see it.
type StepInfo struct {
	Step     int     // 1-based number of this step
	Loss     float64 // mean training loss over the micro-batches
	LR       float64
	GradNorm float64 // global L2 norm before clipping
	Clipped  bool
	Skipped  bool // the step was not applied: non-finite loss or gradient
	// RolledBackTo is the checkpoint step the trainer went back to (with
	// NaNPolicy "rollback"); AfterStep hooks do not run for such a step.
	RolledBackTo int
	Tokens       int
	Duration     time.Duration
	MicroNorm    []float64 // ‖g‖² of each micro-batch's gradient (for noise scale)
}

// Hooks are called at the loop's hook points; nil functions are skipped.
type Hooks struct {
	// AfterBackward runs with the step's gradients in Param.Grad, before
	// clipping and before the optimizer touches anything.
	AfterBackward func(t *Trainer, s *StepInfo) error
	// AfterStep runs after the optimizer step (weights updated).
	AfterStep func(t *Trainer, s *StepInfo) error
	// AfterEval runs after each evaluation with the loss per eval set.
	AfterEval func(t *Trainer, step int, losses map[string]float64) error
}

// Trainer trains an adapter (or, with Config.Full, the base weights).
type Trainer struct {
	Config  Config
	Model   *model.Model
	Adapter *lora.Adapter
	Params  []*Param
	Step    int // optimizer steps done
	Evals   []EvalSet

	// MaxBadSteps ends the run after this many consecutive non-finite steps.
	MaxBadSteps int
	badSteps    int
	lrScale     float64 // learning-rate factor left by NaN rollbacks
	// Rollback restores the last good checkpoint (tensors and State) for
	// Config.NaNPolicy "rollback"; it reports false when there is none, and
	// the step is skipped instead. Set by whoever owns the checkpoints.
	Rollback func() (bool, error)

	train   Batches
	feed    *nn.Feed // the whole micro-batch; the shards' feeds are views of it
	shards  []*shard
	runPart func(w, lo, hi int) // runs shards [lo, hi), built once
	gs      [][]float32         // scratch: one parameter's gradient by shard
	w       []float32           // each shard's weight in the last batch's mean
	evalNet forwardShards
	probes  map[int]forwardShards
	joined  map[int]*joinCache // by probe batch size // probe graphs by batch size, one per shard
	drop    *rand.PCG
	maskAt  map[string]rand.PCG // checkpointed CPU step: the dropout stream where each module's mask starts
	hooks   []Hooks
	device  *onDevice // nil: the step runs on the CPU
}

// New prepares a trainer. With cfg.Full the adapter must be nil and every
// base weight trains; otherwise only the adapter's A and B train and the
// base weights stay untouched.
func New(m *model.Model, ad *lora.Adapter, train Batches, evals []EvalSet, cfg Config) (*Trainer, error) {
	cfg = cfg.WithDefaults()
	if err := cfg.Validate(); err != nil {
		return nil, err
	}
	if cfg.Full == (ad != nil) {
		if cfg.Full {
			return nil, fmt.Errorf("train: full training takes no adapter")
		}
		return nil, fmt.Errorf("train: LoRA training needs an adapter (or set full)")
	}
	if cfg.SeqLen > m.Config.MaxPositionEmbeddings {
		return nil, fmt.Errorf("train field seq_len = %d exceeds the model's max_position_embeddings %d", cfg.SeqLen, m.Config.MaxPositionEmbeddings)
	}
	// A model already held packed (model.from_dir(quantize=)) must say so
	// in the config, which runs record, so a resume rebuilds the same base.
	if m.Quant != cfg.BaseQuant {
		if m.Quant != "" {
			return nil, fmt.Errorf("train: the model is held as %s but base_quant is %q", m.Quant, cfg.BaseQuant)
		}
		q, err := m.Quantized(cfg.BaseQuant)
		if err != nil {
			return nil, fmt.Errorf("train: %w", err)
		}
		m = q
	}
	t := &Trainer{Config: cfg, Model: m, Adapter: ad, Evals: evals, train: train, MaxBadSteps: cfg.MaxBadSteps, lrScale: 1,
		drop: rand.NewPCG(cfg.Seed, 0x64726f70), probes: map[int]forwardShards{}, joined: map[int]*joinCache{}}
	t.feed = &nn.Feed{B: cfg.BatchSize, T: cfg.SeqLen,
		Inputs: make([]int32, cfg.BatchSize*cfg.SeqLen), Targets: make([]int32, cfg.BatchSize*cfg.SeqLen)}
	if pb, ok := train.(PackedBatches); ok && pb.Packed() {
		t.feed.Positions, t.feed.Segments = make([]int32, cfg.BatchSize*cfg.SeqLen), make([]int32, cfg.BatchSize*cfg.SeqLen)
	}
	if err := t.buildShards(); err != nil {
		return nil, err
	}
	for _, name := range t.shards[0].names {
		shape, d := t.shards[0].param(name)
		p := &Param{Name: name, Shape: shape, Data: d, Grad: make([]float32, len(d)),
			M: make([]float32, len(d)), V: make([]float32, len(d)), LRScale: 1}
		if strings.HasSuffix(name, ".lora_B") {
			p.LRScale = cfg.LoRAPlusRatio
		}
		p.Decay = len(p.Shape) == 2 // never the norm weights
		t.Params = append(t.Params, p)
	}
	if len(evals) > 0 {
		var err error
		if t.evalNet, err = newForwardShards(m, ad, cfg.BatchSize, cfg.SeqLen, cfg.Checkpointing, cfg.HeadChunk); err != nil {
			return nil, err
		}
	}
	return t, nil
}

// AddHooks registers hook functions; they run in registration order.
func (t *Trainer) AddHooks(h Hooks) { t.hooks = append(t.hooks, h) }

// Param returns a trainable parameter by name, or nil.
func (t *Trainer) Param(name string) *Param {
	for _, p := range t.Params {
		if p.Name == name {
			return p
		}
	}
	return nil
}

// Close releases the compiled graphs.
func (t *Trainer) Close() error {
	for _, s := range t.shards {
		s.mach.Close()
	}
	t.evalNet.close()
	for _, fs := range t.probes {
		fs.close()
	}
	if t.device != nil {
		return t.device.close()
	}
	return nil
}

func (t *Trainer) fillMasks() {
	p := t.Config
	if t.Adapter == nil || t.Adapter.Config.Dropout == 0 {
		return
	}
	keep := 1 - t.Adapter.Config.Dropout
	if t.feed.Masks == nil {
		t.feed.Masks = map[string][]float32{}
	}
	rng := rand.New(t.drop)
	if t.Config.Checkpointing && t.device == nil {
		// A checkpointed CPU step draws each layer's masks when it runs
		// the layer (maskFor): keep where each module's draws start and
		// move the stream past them, so it draws what is drawn here.
		if t.maskAt == nil {
			t.maskAt = map[string]rand.PCG{}
		}
		n := p.BatchSize * p.SeqLen
		for _, mod := range t.Adapter.Modules {
			t.maskAt[mod] = *t.drop
			for range n * t.Adapter.A[mod].Shape[1] {
				rng.Float64()
			}
		}
		return
	}
	for _, mod := range t.Adapter.Modules {
		in := t.Adapter.A[mod].Shape[1]
		m := t.feed.Masks[mod]
		if len(m) != p.BatchSize*p.SeqLen*in {
			m = make([]float32, p.BatchSize*p.SeqLen*in)
			t.feed.Masks[mod] = m
			t.shardMasks(mod, m)
		}
		for i := range m {
			if rng.Float64() < keep {
				m[i] = float32(1 / keep)
			} else {
				m[i] = 0
			}
		}
	}
}

// maskFor fills dst with rows [row0, row0+len(dst)/in) of module mod's
// dropout mask (N×in) for the current micro-batch, drawn as fillMasks
// draws it; it reports false when the run has no dropout.
func (t *Trainer) maskFor(mod string, dst []float32, row0 int) bool {
	at, ok := t.maskAt[mod]
	if !ok || t.Adapter == nil || t.Adapter.Config.Dropout == 0 {
		return false
	}
	keep := 1 - t.Adapter.Config.Dropout
	in := t.Adapter.A[mod].Shape[1]
	rng := rand.New(&at) // at is a copy: the trainer's stream stays put
	for range row0 * in {
		rng.Float64()
	}
	for i := range dst {
		if rng.Float64() < keep {
			dst[i] = float32(1 / keep)
		} else {
			dst[i] = 0
		}
	}
	return true
}

// TrainStep runs one optimizer step: GradAccum forward/backward passes,
// the AfterBackward hooks, clipping, AdamW, the AfterStep hooks.
func (t *Trainer) TrainStep() (*StepInfo, error) {
	start := time.Now()
	c := t.Config
	info := &StepInfo{Step: t.Step + 1, LR: c.LRAt(t.Step) * t.lrScale}
	if t.shards == nil && t.device == nil { // released before a final evaluation
		if err := t.buildShards(); err != nil {
			return nil, fmt.Errorf("step %d: %w", info.Step, err)
		}
		for mod, m := range t.feed.Masks { // fillMasks points new shards at the masks only once
			t.shardMasks(mod, m)
		}
	}
	for _, p := range t.Params {
		clear(p.Grad)
	}
	for range c.GradAccum {
		if err := t.nextBatch(); err != nil {
			return nil, fmt.Errorf("step %d: next batch: %w", info.Step, err)
		}
		t.fillMasks()
		loss, sq, err := t.micro(float32(1 / float64(c.GradAccum)))
		if err != nil {
			return nil, fmt.Errorf("step %d: %w", info.Step, err)
		}
		info.Loss += loss / float64(c.GradAccum)
		info.MicroNorm = append(info.MicroNorm, sq)
		info.Tokens += c.BatchSize * c.SeqLen
	}
	var sq float64
	for _, p := range t.Params {
		for _, v := range p.Grad {
			sq += float64(v) * float64(v)
		}
	}
	info.GradNorm = math.Sqrt(sq)
	for _, h := range t.hooks {
		if h.AfterBackward != nil {
			if err := h.AfterBackward(t, info); err != nil {
				return nil, err
			}
		}
	}
	if math.IsNaN(info.Loss) || math.IsInf(info.Loss, 0) || math.IsNaN(info.GradNorm) || math.IsInf(info.GradNorm, 0) {
		info.Skipped = true
		t.badSteps++
		if t.badSteps >= t.MaxBadSteps {
			return info, fmt.Errorf("step %d: %d consecutive non-finite steps (loss %g, grad norm %g)", info.Step, t.badSteps, info.Loss, info.GradNorm)
		}
		if c.NaNPolicy == NaNRollback && t.Rollback != nil {
			bad, scale := t.badSteps, t.lrScale
			ok, err := t.Rollback()
			if err != nil {
				return info, fmt.Errorf("step %d: roll back after a non-finite step: %w", info.Step, err)
			}
			if ok {
				// Restore brought back the checkpoint's counters; the
				// failure streak and the reduced rate carry on from here.
				t.badSteps, t.lrScale = bad, scale*c.LRBackoff
				info.RolledBackTo = t.Step
				info.Duration = time.Since(start)
				return info, nil
			}
		}
	} else {
		t.badSteps = 0
		scale := 1.0
		if c.ClipNorm > 0 && info.GradNorm > c.ClipNorm {
			scale = c.ClipNorm / info.GradNorm
			info.Clipped = true
		}
		if t.device != nil {
			if err := t.device.adamw(t, info.LR, scale); err != nil {
				return info, fmt.Errorf("step %d on %s: %w", info.Step, t.DeviceName(), err)
			}
		} else {
			t.adamw(info.LR, scale)
		}
	}
	t.Step++
	info.Duration = time.Since(start)
	for _, h := range t.hooks {
		if h.AfterStep != nil {
			if err := h.AfterStep(t, info); err != nil {
				return info, err
			}
		}
	}
	return info, nil
}

// micro runs one forward/backward pass on the current batch and adds its
// gradient, scaled by inv, into Param.Grad; it returns the loss and the
// squared norm of the unscaled gradient.
func (t *Trainer) micro(inv float32) (float64, float64, error) {
	if t.device != nil {
		return t.device.micro(t, inv)
	}
	return t.microShards(inv)
}

// LRScale is the factor NaN rollbacks have left on the learning rate (1
// when there were none).
func (t *Trainer) LRScale() float64 { return t.lrScale }

// adamw applies one AdamW update (decoupled weight decay, bias-corrected
// moments) with the gradient scaled by gscale (clipping): kern.AdamW, the
// kernel the host device runs too.
func (t *Trainer) adamw(lr, gscale float64) {
	for _, p := range t.Params {
		kern.AdamW(p.Data, p.Grad, p.M, p.V, t.adamParams(p, lr, gscale))
	}
}

// adamParams are the scalars of this step's AdamW update of p, shared by
// the CPU update above and the device kernel.
func (t *Trainer) adamParams(p *Param, lr, gscale float64) kern.AdamParams {
	c := t.Config
	step := float64(t.Step + 1)
	plr := lr * p.LRScale
	h := kern.AdamParams{Beta1: float32(c.Beta1), Beta2: float32(c.Beta2), Eps: float32(c.Eps),
		Step: float32(plr / (1 - math.Pow(c.Beta1, step))), Sq: float32(1 / math.Sqrt(1-math.Pow(c.Beta2, step))),
		Decay: 1, GScale: float32(gscale)}
	if p.Decay && c.WeightDecay > 0 {
		h.Decay = float32(1 - plr*c.WeightDecay)
	}
	return h
}

// Evaluate computes the loss on every eval set with the current weights.
// On the CPU the evaluation graphs then let their buffers go (freshEval),
// so the training step's never sit beside them.
func (t *Trainer) Evaluate() (map[string]float64, error) {
	out := map[string]float64{}
	for _, e := range t.Evals {
		r, err := t.evalSet(e)
		if err != nil {
			return nil, fmt.Errorf("eval set %s: %w", e.Name, err)
		}
		out[e.Name] = r.Loss
	}
	if t.device == nil && t.evalNet != nil {
		if err := t.freshEval(); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// freshEval replaces the evaluation graphs by unallocated ones (a graph
// allocates its buffers at its first run: 280 MiB at 1B, 1024 tokens)
// and collects the old buffers now, so that what allocates next reuses
// their memory instead of the heap growing by them first.
func (t *Trainer) freshEval() error {
	t.evalNet.close()
	c := t.Config
	fs, err := newForwardShards(t.Model, t.Adapter, c.BatchSize, c.SeqLen, c.Checkpointing, c.HeadChunk)
	if err != nil {
		return err
	}
	t.evalNet = fs
	runtime.GC()
	return nil
}

// releaseShards lets the CPU training graphs go with their buffers before
// the final evaluation allocates its own (so a run's peak is the larger
// of the two, not their sum); the next step, if any, builds them again
// over the same parameter memory.
func (t *Trainer) releaseShards() {
	if t.device != nil {
		return
	}
	for _, s := range t.shards {
		s.mach.Close()
	}
	t.shards = nil
	runtime.GC()
}

// Run trains until Config.Steps steps are done or ctx is cancelled (then
// it returns ctx's error with the trainer at a step boundary), evaluating
// every EvalEvery steps and after the last.
func (t *Trainer) Run(ctx context.Context) error {
	for t.Step < t.Config.Steps {
		if err := ctx.Err(); err != nil {
			return err
		}
		info, err := t.TrainStep()
		if err != nil {
			return err
		}
		if info.RolledBackTo > 0 {
			continue // back at a checkpoint that was already evaluated
		}
		if t.EvalDue() {
			if t.Step == t.Config.Steps {
				t.releaseShards()
			}
			if err := t.RunEval(); err != nil {
				return err
			}
		}
	}
	return nil
}

// EvalDue says whether Run evaluates after the step just taken: every
// EvalEvery steps and after the last.
func (t *Trainer) EvalDue() bool {
	c := t.Config
	return len(t.Evals) > 0 && ((c.EvalEvery > 0 && t.Step%c.EvalEvery == 0) || t.Step == c.Steps)
}

// RunEval evaluates and calls the AfterEval hooks.
func (t *Trainer) RunEval() error {
	losses, err := t.Evaluate()
	if err != nil {
		return err
	}
	for _, h := range t.hooks {
		if h.AfterEval != nil {
			if err := h.AfterEval(t, t.Step, losses); err != nil {
				return err
			}
		}
	}
	return nil
}

// nextBatch draws the next micro-batch into the feed, packed when the feed
// carries segments.
func (t *Trainer) nextBatch() error {
	if f := t.feed; f.Segments != nil {
		return t.train.(PackedBatches).NextPacked(f.Inputs, f.Targets, f.Positions, f.Segments)
	}
	return t.train.Next(t.feed.Inputs, t.feed.Targets)
}
