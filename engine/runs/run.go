package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"os"
	"path/filepath"
	"runtime/metrics"
	"time"

	"lens/engine/accel"
	"lens/engine/collect"
	"lens/engine/data"
	"lens/engine/device"
	"lens/engine/lora"
	"lens/engine/memstat"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// Progress is what a progress display needs after each step.
type Progress struct {
	RunID, Name  string
	Step, Steps  int
	Loss         float64
	TokensPerSec float64
	Elapsed, ETA time.Duration
	Eval         map[string]float64 // set after an evaluation
}

// Options are the optional parts of a training run.
type Options struct {
	Progress func(Progress)
	Logger   *slog.Logger
	Hooks    []train.Hooks // extra hooks, e.g. collectors
	// OnStart is called once the run record exists and the trainer is
	// ready, before the first step.
	OnStart func(runID string, t *train.Trainer) error
	// Registry resolves Spec.Collect (default collect.Default).
	Registry *collect.Registry
	// Collectors are extra collectors built by the caller (e.g. defined in
	// a script); they are not stored in the spec.
	Collectors []collect.Collector
	// Sinks mirror the run elsewhere (TensorBoard, W&B) as it trains.
	Sinks []Sink
	// Device, when set, is where Resume continues the run ("cpu", "cuda",
	// "auto") instead of the device it was recorded with: a run trained on
	// a GPU can finish on a machine without one.
	Device string
}

// Job is a prepared run: a trainer over its data, not yet recorded.
type Job struct {
	Spec    Spec
	Trainer *train.Trainer
	batches *data.Batcher
	drop    *rand.PCG
	Eval    map[string]data.Corpus
	Train   data.Corpus
	sinks   *sinks // set while running
	// Examples describes the run's example datasets (nil for a corpus).
	Examples *ExampleData
	// restoredEval is the run's latest evaluation at or before the step
	// of the checkpoint restored last, and restoredEvalStep its step: a
	// resumed run starts from them (for its final loss and for a checkpoint
	// at that step) as the uninterrupted run had them.
	restoredEval     map[string]float64
	restoredEvalStep int
}

// Prepare validates spec, loads the data and builds the trainer. base is
// not modified: full training works on a copy.
func Prepare(spec Spec, base *model.Model) (*Job, error) {
	spec.Train = spec.Train.WithDefaults()
	spec.ModelConfig = base.Config
	spec.Train.Full = spec.LoRA == nil
	if err := spec.Train.Validate(); err != nil {
		return nil, err
	}
	if spec.Data.Source == "" {
		return nil, fmt.Errorf("data: no source given")
	}
	if err := checkInit(spec); err != nil {
		return nil, err
	}
	dev, _, err := device.Resolve(spec.Device)
	if err != nil {
		return nil, err
	}
	tok, err := spec.Tokenizer()
	if err != nil {
		return nil, err
	}
	if base.Config.VocabSize < tok.VocabSize() {
		return nil, fmt.Errorf("model vocab_size %d is smaller than its tokenizer's %d", base.Config.VocabSize, tok.VocabSize())
	}
	ld, err := loadData(&spec, tok) // a corpus or examples (see examples.go)
	if err != nil {
		return nil, err
	}
	m := base
	var ad *lora.Adapter
	if spec.LoRA == nil {
		m = base.Clone()
	} else {
		if ad, err = lora.New(base, *spec.LoRA, spec.LoRASeed); err != nil {
			return nil, err
		}
		ad.Base = spec.Base.Dir
		if ad.Base == "" {
			ad.Base = "lens:" + spec.Base.Hash
		}
	}
	t, err := train.New(m, ad, ld.batches, ld.sets, spec.Train)
	if err != nil {
		return nil, err
	}
	if dev != device.CPU {
		d, err := accel.Open(dev)
		if err == nil {
			err = t.UseDevice(d)
		}
		if err != nil {
			t.Close()
			return nil, fmt.Errorf("device %q: %w", dev, err)
		}
	}
	return &Job{Spec: spec, Trainer: t, batches: ld.corpus, Eval: ld.evals, Train: ld.trainSet, Examples: ld.examples}, nil
}

// evalName is the eval set name of a data source: the source itself for
// built-in ones, the file name for paths.
func evalName(source string) string {
	switch source {
	case "opticks", "gocode":
		return source
	}
	return filepath.Base(source)
}

// MainEval is the name of the eval set of the run's own data.
func (s Spec) MainEval() string { return evalName(s.Data.Source) }

// Run records the job as a new run in st and trains it to the end or until
// ctx is cancelled. The returned record has the final status: done,
// cancelled (with a checkpoint at the step reached) or failed.
func (j *Job) Run(ctx context.Context, st *kv.Store, opt Options) (kv.RunMeta, error) {
	if err := j.applyInit(st); err != nil { // before the config is stored: it pins the init's step and hash
		j.Trainer.Close()
		return kv.RunMeta{}, err
	}
	cfg, err := json.Marshal(j.Spec)
	if err != nil {
		return kv.RunMeta{}, err
	}
	meta := kv.RunMeta{
		ID: st.NewRunID(), Name: j.Spec.Name, Script: j.Spec.Script, ScriptHash: j.Spec.ScriptHash,
		Args: j.Spec.Args, Config: cfg, Seed: j.Spec.Train.Seed, Status: kv.StatusRunning, Tags: j.Spec.Tags,
		LensVersion: Version, Owner: os.Getpid(),
	}
	if err := st.CreateRun(meta); err != nil {
		return kv.RunMeta{}, fmt.Errorf("create run: %w", err)
	}
	return j.run(ctx, st, meta, opt)
}

func (j *Job) run(ctx context.Context, st *kv.Store, meta kv.RunMeta, opt Options) (kv.RunMeta, error) {
	t := j.Trainer
	defer t.Close()
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	id := meta.ID
	// lastEval is the latest evaluation, at step evalStep. A checkpoint
	// carries it only when it is of the checkpoint's own step, so that an
	// eval loss in a checkpoint always belongs to those weights.
	lastEval, evalStep := j.restoredEval, j.restoredEvalStep
	if lastEval == nil {
		evalStep = -1
	}
	evalOf := func(step int) map[string]float64 {
		if evalStep == step {
			return lastEval
		}
		return nil
	}
	var lastLoss = math.NaN()
	start := time.Now()
	startStep := t.Step
	t.Rollback = func() (bool, error) {
		cm, err := st.LatestCheckpoint(id)
		if errors.Is(err, kv.ErrNotFound) {
			return false, nil // nothing to go back to yet: the step is skipped
		}
		if err != nil {
			return false, err
		}
		from := t.Step + 1
		if err := j.restore(st, id, cm.Step); err != nil {
			return false, err
		}
		backoff := t.Config.LRBackoff // the trainer's config, with defaults
		log.Warn("non-finite step: rolled back", "run", id, "step", from, "to", cm.Step)
		return true, st.AddEvent(id, kv.Event{Step: from, Kind: "nan_rollback",
			Message: fmt.Sprintf("non-finite loss or gradient at step %d: rolled back to checkpoint %d, learning rate x%g (now x%g)", from, cm.Step, backoff, t.LRScale()*backoff)})
	}
	j.sinks = newSinks(opt.Sinks, st, id, log)
	j.sinks.start(meta)
	t.AddHooks(train.Hooks{
		AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
			lastLoss = s.Loss
			tps := float64(s.Tokens) / s.Duration.Seconds()
			vals := map[string]float64{"loss": s.Loss, "lr": s.LR, "grad_norm": s.GradNorm,
				"tokens_per_s": tps, "step_time_s": s.Duration.Seconds(), "memory_bytes": memoryBytes(),
				"peak_rss": float64(memstat.PeakRSS())}
			if err := st.AddMetrics(id, s.Step, vals); err != nil {
				return err
			}
			// Readers of the store see the run advance (kv writes this at
			// most every half second) without its record being rewritten.
			if err := st.SetProgress(id, kv.Progress{Step: s.Step, Steps: t.Config.Steps, Loss: s.Loss, TokensPerSec: tps}); err != nil {
				return err
			}
			j.sinks.logMetrics(s.Step, vals)
			if s.Skipped {
				if err := st.AddEvent(id, kv.Event{Step: s.Step, Kind: "nan_skip",
					Message: fmt.Sprintf("non-finite loss %g or gradient norm %g: step skipped", s.Loss, s.GradNorm)}); err != nil {
					return err
				}
			}
			if opt.Progress != nil {
				el := time.Since(start)
				done := t.Step - startStep
				eta := time.Duration(float64(el) / float64(done) * float64(t.Config.Steps-t.Step))
				opt.Progress(Progress{RunID: id, Name: meta.Name, Step: t.Step, Steps: t.Config.Steps, Loss: s.Loss,
					TokensPerSec: tps, Elapsed: el, ETA: eta})
			}
			return nil
		},
		AfterEval: func(t *train.Trainer, step int, losses map[string]float64) error {
			lastEval, evalStep = losses, step
			vals := map[string]float64{}
			for k, v := range losses {
				vals["eval/"+k] = v
			}
			if opt.Progress != nil {
				opt.Progress(Progress{RunID: id, Name: meta.Name, Step: step, Steps: t.Config.Steps, Loss: lastLoss, Eval: losses})
			}
			if err := st.AddMetrics(id, step, vals); err != nil {
				return err
			}
			// Metrics are batched across steps; an evaluation is rare and
			// what readers wait for, so it goes to the store now.
			if err := st.Flush(); err != nil {
				return err
			}
			j.sinks.logMetrics(step, vals)
			return nil
		},
	})
	for _, h := range opt.Hooks {
		t.AddHooks(h)
	}
	if err := j.attachCollectors(st, id, opt); err != nil {
		return j.finish(st, meta, kv.StatusFailed, err.Error(), lastEval, lastLoss)
	}
	if opt.OnStart != nil {
		if err := opt.OnStart(id, t); err != nil {
			return j.finish(st, meta, kv.StatusFailed, err.Error(), lastEval, lastLoss)
		}
	}
	// The checkpoint is the step's commit point, so its hook comes after
	// every other: the step's metrics, eval losses and collector records
	// are in the store before the checkpoint that a resume starts after.
	// A step that evaluates checkpoints after the evaluation, so that the
	// checkpoint carries this step's eval loss.
	t.AddHooks(train.Hooks{
		AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
			if j.checkpointDue(t.Step) && !t.EvalDue() {
				return j.checkpoint(st, id, evalOf(t.Step))
			}
			return nil
		},
		AfterEval: func(t *train.Trainer, step int, losses map[string]float64) error {
			if step > 0 && j.checkpointDue(step) {
				return j.checkpoint(st, id, evalOf(t.Step))
			}
			return nil
		},
	})
	if t.Step == 0 && len(t.Evals) > 0 {
		// Step 0 evaluation: the base model's loss, the "before" of every table.
		if err := t.RunEval(); err != nil {
			return j.finish(st, meta, kv.StatusFailed, err.Error(), lastEval, lastLoss)
		}
	}
	err := t.Run(ctx)
	switch {
	case err == nil:
		if cerr := j.checkpoint(st, id, evalOf(t.Step)); cerr != nil {
			return j.finish(st, meta, kv.StatusFailed, cerr.Error(), lastEval, lastLoss)
		}
		return j.finish(st, meta, kv.StatusDone, "", lastEval, lastLoss)
	case errors.Is(err, context.Canceled) || errors.Is(err, context.DeadlineExceeded):
		if cerr := j.checkpoint(st, id, evalOf(t.Step)); cerr != nil {
			return j.finish(st, meta, kv.StatusFailed, "cancelled, and the checkpoint failed: "+cerr.Error(), lastEval, lastLoss)
		}
		log.Info("run cancelled", "run", id, "step", t.Step)
		return j.finish(st, meta, kv.StatusCancelled, fmt.Sprintf("cancelled at step %d", t.Step), lastEval, lastLoss)
	default:
		_ = st.AddEvent(id, kv.Event{Step: t.Step, Kind: "failed", Message: err.Error()})
		return j.finish(st, meta, kv.StatusFailed, err.Error(), lastEval, lastLoss)
	}
}

func (j *Job) finish(st *kv.Store, meta kv.RunMeta, status, reason string, eval map[string]float64, lastLoss float64) (kv.RunMeta, error) {
	final := lastLoss
	if v, ok := eval[j.Spec.MainEval()]; ok {
		final = v
	}
	err := st.UpdateRun(meta.ID, func(m *kv.RunMeta) error {
		m.Status, m.Reason, m.Steps = status, reason, j.Trainer.Step
		if !math.IsNaN(final) {
			m.FinalLoss = &final
		}
		return nil
	})
	if err != nil {
		return meta, fmt.Errorf("record run %s: %w", meta.ID, err)
	}
	if err := st.Sync(); err != nil {
		return meta, err
	}
	out, gerr := st.GetRun(meta.ID)
	if gerr != nil {
		return meta, gerr
	}
	j.sinks.finish(out)
	if status == kv.StatusFailed {
		return out, fmt.Errorf("run %s failed: %s", meta.ID, reason)
	}
	return out, nil
}

// checkpointDue says whether a periodic checkpoint falls on step (the
// final one is saved separately).
func (j *Job) checkpointDue(step int) bool {
	every := j.Spec.CheckpointEvery
	return every > 0 && step%every == 0 && step < j.Trainer.Config.Steps
}

// attachCollectors builds the spec's collectors and the caller's, with
// the probe batch taken from the first windows of the run's eval data.
func (j *Job) attachCollectors(st *kv.Store, runID string, opt Options) error {
	reg := opt.Registry
	if reg == nil {
		reg = collect.Default
	}
	cs := append([]collect.Collector(nil), opt.Collectors...)
	for _, s := range j.Spec.Collect {
		c, err := reg.Build(s)
		if err != nil {
			return err
		}
		cs = append(cs, c)
	}
	if len(cs) == 0 {
		return nil
	}
	probe, err := j.probe()
	if err != nil {
		return err
	}
	sink := collect.StoreSink{Store: st, RunID: runID}
	for _, c := range cs {
		j.Trainer.AddHooks(c.Hooks(j.Trainer, sink, probe))
	}
	return nil
}

// probe is a fixed batch of consecutive windows from the start of the
// run's own eval data: real text, the same at every step.
func (j *Job) probe() (*collect.Probe, error) {
	n := j.Spec.ProbeBatch
	T := j.Trainer.Config.SeqLen
	if n <= 0 {
		n = max(1, 512/T)
	}
	if p := j.exampleProbe(n); p != nil {
		return p, nil
	}
	toks := j.Eval[j.Spec.MainEval()].Tokens
	if len(toks) < n*T+1 {
		n = (len(toks) - 1) / T
		if n == 0 {
			return nil, fmt.Errorf("probe batch: eval data of %d tokens is shorter than one window of %d", len(toks), T)
		}
	}
	p := &collect.Probe{Batch: n}
	for w := range n {
		p.Inputs = append(p.Inputs, toks[w*T:w*T+T]...)
		p.Targets = append(p.Targets, toks[w*T+1:w*T+T+1]...)
	}
	return p, nil
}

var memSample = []metrics.Sample{{Name: "/memory/classes/total:bytes"}}

// memoryBytes is the memory the Go runtime has mapped (heap, stacks,
// metadata): cheap to read every step, unlike ReadMemStats.
func memoryBytes() float64 {
	metrics.Read(memSample)
	if memSample[0].Value.Kind() != metrics.KindUint64 {
		return 0
	}
	return float64(memSample[0].Value.Uint64())
}
