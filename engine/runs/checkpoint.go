package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"os"
	"strings"
	"time"

	"lens/engine/device"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// Checkpoint tensor names: the trainable tensors under their own names
// (HF names, or "<module>.lora_A"/".lora_B"), the AdamW moments under
// "adam_m/<name>" and "adam_v/<name>".
const (
	momentM = "adam_m/"
	momentV = "adam_v/"
)

// checkpoint saves the trainer's tensors, moments and position at its step.
func (j *Job) checkpoint(st *kv.Store, runID string, eval map[string]float64) error {
	t := j.Trainer
	for _, p := range t.Params {
		for _, v := range p.Data {
			if math.IsNaN(float64(v)) || math.IsInf(float64(v), 0) {
				// Never overwrite good state with bad: the last finite
				// checkpoint stays the latest.
				return st.AddEvent(runID, kv.Event{Step: t.Step, Kind: "checkpoint_skipped",
					Message: fmt.Sprintf("weights of %s are not finite; checkpoint not saved", p.Name)})
			}
		}
	}
	state, err := t.State()
	if err != nil {
		return err
	}
	sb, err := json.Marshal(state)
	if err != nil {
		return err
	}
	var ts []kv.Tensor
	for _, p := range t.Params {
		ts = append(ts,
			kv.Tensor{Name: p.Name, Shape: p.Shape, Data: p.Data},
			kv.Tensor{Name: momentM + p.Name, Shape: p.Shape, Data: p.M},
			kv.Tensor{Name: momentV + p.Name, Shape: p.Shape, Data: p.V})
	}
	meta := kv.CheckpointMeta{Step: t.Step, Time: time.Now().UTC(), State: sb, EvalLoss: eval}
	drop, err := j.rotation(st, runID, meta)
	if err != nil {
		return err
	}
	if err := st.SaveCheckpoint(runID, meta, ts, drop...); err != nil {
		return fmt.Errorf("checkpoint step %d: %w", t.Step, err)
	}
	if j.sinks != nil {
		weights := make([]kv.Tensor, 0, len(t.Params))
		for i := 0; i < len(ts); i += 3 {
			weights = append(weights, ts[i])
		}
		j.sinks.tensors(t.Step, "checkpoint", weights)
	}
	return nil
}

// rotation lists the checkpoints that saving next retires: all but the
// KeepLast latest and the one with the lowest loss on the run's own eval
// set (the best is never deleted). They go in the same commit as next.
func (j *Job) rotation(st *kv.Store, runID string, next kv.CheckpointMeta) ([]int, error) {
	k := j.Spec.KeepLast
	if k <= 0 {
		return nil, nil
	}
	stored, err := st.Checkpoints(runID)
	if err != nil {
		return nil, fmt.Errorf("rotate checkpoints: %w", err)
	}
	var cps []kv.CheckpointMeta
	for _, c := range stored {
		if c.Step < next.Step { // a checkpoint at next's step is replaced; later ones cannot exist
			cps = append(cps, c)
		}
	}
	cps = append(cps, next)
	if len(cps) <= k {
		return nil, nil
	}
	best, bestLoss := -1, 0.0
	for _, c := range cps {
		if v, ok := c.EvalLoss[j.Spec.MainEval()]; ok && (best < 0 || v < bestLoss) {
			best, bestLoss = c.Step, v
		}
	}
	var drop []int
	for _, c := range cps[:len(cps)-k] {
		if c.Step != best {
			drop = append(drop, c.Step)
		}
	}
	return drop, nil
}

// restore loads a checkpoint into the job's trainer.
func (j *Job) restore(st *kv.Store, runID string, step int) error {
	meta, ts, err := st.LoadCheckpoint(runID, step)
	if err != nil {
		return err
	}
	byName := map[string]kv.Tensor{}
	for _, t := range ts {
		byName[t.Name] = t
	}
	for _, p := range j.Trainer.Params {
		for prefix, dst := range map[string][]float32{"": p.Data, momentM: p.M, momentV: p.V} {
			t, ok := byName[prefix+p.Name]
			if !ok || len(t.Data) != len(dst) {
				return fmt.Errorf("checkpoint %d of run %s: tensor %s missing or of the wrong size", step, runID, prefix+p.Name)
			}
			copy(dst, t.Data)
		}
	}
	var s train.State
	if err := json.Unmarshal(meta.State, &s); err != nil {
		return fmt.Errorf("checkpoint %d of run %s: state: %w", step, runID, err)
	}
	if j.restoredEval, j.restoredEvalStep, err = lastEvalUpTo(st, runID, step); err != nil {
		return fmt.Errorf("checkpoint %d of run %s: %w", step, runID, err)
	}
	return j.Trainer.Restore(s)
}

// lastEvalUpTo reads the run's latest evaluation at or before step from
// its eval/<set> metrics (nil when none): what the run knew when it saved
// the checkpoint at step, whether or not it evaluated at that step. Later
// points, written before a crash, are recomputed by the resume.
func lastEvalUpTo(st *kv.Store, runID string, step int) (map[string]float64, int, error) {
	names, err := st.MetricNames(runID)
	if err != nil {
		return nil, 0, err
	}
	at := -1
	byStep := map[int]map[string]float64{}
	for _, n := range names {
		set, ok := strings.CutPrefix(n, "eval/")
		if !ok {
			continue
		}
		pts, err := st.ReadMetric(runID, n)
		if err != nil {
			return nil, 0, err
		}
		for _, p := range pts {
			if p.Step > step {
				continue
			}
			if byStep[p.Step] == nil {
				byStep[p.Step] = map[string]float64{}
			}
			byStep[p.Step][set] = p.Value
			at = max(at, p.Step)
		}
	}
	if at < 0 {
		return nil, 0, nil
	}
	return byStep[at], at, nil
}

// SpecOf decodes the spec stored as a run's config.
func SpecOf(m kv.RunMeta) (Spec, error) {
	var s Spec
	if err := json.Unmarshal(m.Config, &s); err != nil {
		return Spec{}, fmt.Errorf("run %s: config: %w", m.ID, err)
	}
	return s, nil
}

// Weights returns the model and adapter of a run at a checkpoint (step < 0:
// the latest). For a LoRA run the model is the base and the adapter holds
// the trained A and B; for a full run the model holds the trained weights
// and the adapter is nil. A caller that needs only the adapter calls
// Adapter, which reads no base model.
func Weights(st *kv.Store, runID string, step int) (*model.Model, *lora.Adapter, kv.CheckpointMeta, error) {
	spec, cm, ts, err := checkpointOf(st, runID, step)
	if err != nil {
		return nil, nil, cm, err
	}
	base, err := LoadBase(st, spec)
	if err != nil {
		return nil, nil, kv.CheckpointMeta{}, err
	}
	if spec.LoRA == nil {
		m := base.Clone()
		for _, t := range ts {
			if strings.HasPrefix(t.Name, momentM) || strings.HasPrefix(t.Name, momentV) {
				continue
			}
			w, ok := m.Weights[t.Name]
			if !ok || len(w.Data) != len(t.Data) {
				return nil, nil, cm, fmt.Errorf("run %s checkpoint %d: tensor %s does not fit the model", runID, cm.Step, t.Name)
			}
			copy(w.Data, t.Data)
		}
		return m, nil, cm, nil
	}
	ad, err := adapterOf(spec, base, ts, runID, cm)
	return base, ad, cm, err
}

// Adapter returns a LoRA run's adapter at a checkpoint (step < 0: the
// latest) as Weights does, without the base model: the adapter's shapes
// come from the recorded config, so exporting or comparing the adapter
// of a 1B run reads no base weights. A full run gives a nil adapter.
func Adapter(st *kv.Store, runID string, step int) (*lora.Adapter, kv.CheckpointMeta, error) {
	spec, cm, ts, err := checkpointOf(st, runID, step)
	if err != nil || spec.LoRA == nil {
		return nil, cm, err
	}
	shapes := &model.Model{Config: spec.ModelConfig, Weights: map[string]*model.Tensor{}}
	for n, shape := range spec.ModelConfig.Shapes() {
		shapes.Weights[n] = &model.Tensor{Shape: shape} // lora.New reads shapes only
	}
	ad, err := adapterOf(spec, shapes, ts, runID, cm)
	return ad, cm, err
}

// checkpointOf reads a run's spec and the tensors of its checkpoint at step
// (< 0: the latest).
func checkpointOf(st *kv.Store, runID string, step int) (Spec, kv.CheckpointMeta, []kv.Tensor, error) {
	meta, err := st.GetRun(runID)
	if err != nil {
		return Spec{}, kv.CheckpointMeta{}, nil, err
	}
	spec, err := SpecOf(meta)
	if err != nil {
		return Spec{}, kv.CheckpointMeta{}, nil, err
	}
	var cm kv.CheckpointMeta
	if step < 0 {
		cm, err = st.LatestCheckpoint(runID)
	} else {
		cm, _, err = st.LoadCheckpoint(runID, step)
	}
	if err != nil {
		return Spec{}, kv.CheckpointMeta{}, nil, fmt.Errorf("run %s: %w", runID, err)
	}
	_, ts, err := st.LoadCheckpoint(runID, cm.Step)
	if err != nil {
		return Spec{}, kv.CheckpointMeta{}, nil, err
	}
	return spec, cm, ts, nil
}

// adapterOf is the run's adapter over base with the checkpoint's A and B.
func adapterOf(spec Spec, base *model.Model, ts []kv.Tensor, runID string, cm kv.CheckpointMeta) (*lora.Adapter, error) {
	ad, err := lora.New(base, *spec.LoRA, spec.LoRASeed)
	if err != nil {
		return nil, err
	}
	ad.Base = spec.Base.Dir
	if ad.Base == "" {
		ad.Base = "lens:" + spec.Base.Hash
	}
	found := 0
	for _, t := range ts {
		mod, which, ok := strings.Cut(t.Name, ".lora_")
		if !ok || strings.Contains(t.Name, "/") {
			continue
		}
		dst := ad.A[mod]
		if which == "B" {
			dst = ad.B[mod]
		}
		if dst == nil || len(dst.Data) != len(t.Data) {
			return nil, fmt.Errorf("run %s checkpoint %d: tensor %s does not fit the adapter", runID, cm.Step, t.Name)
		}
		copy(dst.Data, t.Data)
		found++
	}
	if found != 2*len(ad.Modules) {
		return nil, fmt.Errorf("run %s checkpoint %d: %d adapter tensors, want %d", runID, cm.Step, found, 2*len(ad.Modules))
	}
	return ad, nil
}

// Resume continues a run from its latest checkpoint (or from step 0 when
// it died before its first one).
func Resume(ctx context.Context, st *kv.Store, runID string, opt Options) (kv.RunMeta, error) {
	meta, err := st.GetRun(runID)
	if err != nil {
		return kv.RunMeta{}, err
	}
	spec, err := SpecOf(meta)
	if err != nil {
		return kv.RunMeta{}, err
	}
	// A run that died before its first checkpoint starts again from step 0:
	// with the same seed that is the same run, and its metrics are rewritten
	// with the same values.
	cm, err := st.LatestCheckpoint(runID)
	fromScratch := errors.Is(err, kv.ErrNotFound)
	if err != nil && !fromScratch {
		return kv.RunMeta{}, fmt.Errorf("resume %s: %w", runID, err)
	}
	if opt.Device != "" {
		got, note, err := device.Resolve(opt.Device)
		if err != nil {
			return kv.RunMeta{}, fmt.Errorf("resume %s: %w", runID, err)
		}
		if note != "" && opt.Logger != nil {
			opt.Logger.Info(note)
		}
		spec.Device = got
	}
	base, err := LoadTrainingBase(st, spec)
	if err != nil {
		return kv.RunMeta{}, err
	}
	job, err := Prepare(spec, base)
	if err != nil {
		return kv.RunMeta{}, err
	}
	if !fromScratch {
		if err := job.restore(st, runID, cm.Step); err != nil {
			job.Trainer.Close()
			return kv.RunMeta{}, err
		}
	} else if err := job.applyInit(st); err != nil {
		job.Trainer.Close()
		return kv.RunMeta{}, fmt.Errorf("resume %s: %w", runID, err)
	}
	if err := st.UpdateRun(runID, func(m *kv.RunMeta) error {
		m.Status, m.Reason, m.Owner = kv.StatusRunning, "", os.Getpid()
		if job.Spec.Init == nil {
			return nil
		}
		// A run created without training (a sweep trial) pins its init's
		// step and hash here; the rest of its config stays as recorded.
		stored, err := SpecOf(*m)
		if err != nil {
			return err
		}
		stored.Init = job.Spec.Init
		m.Config, err = json.Marshal(stored)
		return err
	}); err != nil {
		return kv.RunMeta{}, err
	}
	meta.Status = kv.StatusRunning
	return job.run(ctx, st, meta, opt)
}
