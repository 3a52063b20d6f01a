package train

import (
	"errors"
	"fmt"

	"lens/engine/accel"
)

// onDevice is a trainer's accelerator: the training step's forward and
// backward pass and AdamW run there; the host keeps a copy of every
// trainable tensor and its moments (Param.Data, M, V, refreshed after each
// update) and of each step's gradient (Param.Grad), so hooks, collectors,
// clipping and checkpoints work as on the CPU. Only the trainable tensors
// cross the bus each step (with LoRA, the adapters); the frozen weights and
// the activations stay on the device. Evaluation and the collectors' probe forwards (Probe) run on
// the device too.
type onDevice struct {
	dev     accel.Device
	step    *accel.Step
	scratch [][]float32         // per Param: one micro-batch's gradient
	stale   bool                // host tensors changed (Restore): upload before the next step
	probes  map[int]*accel.Step // forward-only steps by probe batch size
}

// UseDevice moves the training step, LoRA or full, onto dev, which the
// trainer then owns (Close closes it). A packed base (base_quant) stays
// packed on the device, each weight widened per product (accel.Step).
func (t *Trainer) UseDevice(dev accel.Device) error {
	var s *accel.Step
	var err error
	if t.Config.Checkpointing { // LoRA only: Validate refuses it with full
		s, err = accel.NewCheckpointedStep(dev, t.Model, t.Adapter.GraphAdapters(), t.Config.BatchSize, t.Config.SeqLen)
	} else if t.Adapter == nil {
		s, err = accel.NewFullStep(dev, t.Model, t.Config.BatchSize, t.Config.SeqLen)
	} else {
		s, err = accel.NewStep(dev, t.Model, t.Adapter.GraphAdapters(), t.Config.BatchSize, t.Config.SeqLen)
	}
	if err != nil {
		return fmt.Errorf("train on %s: %w", dev.Name(), err)
	}
	o := &onDevice{dev: dev, step: s, stale: true}
	for _, p := range t.Params {
		o.scratch = append(o.scratch, make([]float32, len(p.Data)))
	}
	t.device = o
	return nil
}

// DeviceName is where the training step runs: "cpu" or the device's name.
func (t *Trainer) DeviceName() string {
	if t.device == nil {
		return "cpu"
	}
	return t.device.dev.Name()
}

// sync uploads the host's tensors when they changed under the device.
func (o *onDevice) sync(params []*Param) error {
	if !o.stale {
		return nil
	}
	for _, p := range params {
		if err := o.step.SetParam(p.Name, p.Data, p.M, p.V); err != nil {
			return fmt.Errorf("upload %s: %w", p.Name, err)
		}
	}
	o.stale = false
	return nil
}

// micro runs one micro-batch on the device and adds its gradient, scaled
// by inv, into Param.Grad; it returns the loss and the squared norm of the
// unscaled gradient.
func (o *onDevice) micro(t *Trainer, inv float32) (float64, float64, error) {
	if err := o.sync(t.Params); err != nil {
		return 0, 0, err
	}
	if t.feed.Segments != nil {
		if err := o.step.Pack(t.feed.Positions, t.feed.Segments); err != nil {
			return 0, 0, err
		}
		// Evaluation on the same step runs unpacked batches.
		defer o.step.Pack(nil, nil)
	}
	loss, err := o.step.Run(t.feed.Inputs, t.feed.Targets, t.feed.Masks)
	if err != nil {
		return 0, 0, err
	}
	var sq float64
	for i, p := range t.Params {
		g := o.scratch[i]
		if err := o.step.Grad(p.Name, g); err != nil {
			return 0, 0, fmt.Errorf("gradient of %s: %w", p.Name, err)
		}
		for j, v := range g {
			p.Grad[j] += v * inv
			sq += float64(v) * float64(v)
		}
	}
	return loss, sq, nil
}

// adamw is Trainer.adamw on the device.
func (o *onDevice) adamw(t *Trainer, lr, gscale float64) error {
	var errs []error
	for _, p := range t.Params {
		if err := o.step.Update(p.Name, p.Grad, t.adamParams(p, lr, gscale), p.Data, p.M, p.V); err != nil {
			errs = append(errs, fmt.Errorf("update %s: %w", p.Name, err))
		}
	}
	return errors.Join(errs...)
}

// eval is forwardNet.eval on the device, with the training batch shape.
func (o *onDevice) eval(t *Trainer, tokens []int32) (EvalResult, error) {
	if err := o.sync(t.Params); err != nil {
		return EvalResult{}, err
	}
	B, T := t.Config.BatchSize, t.Config.SeqLen
	in, tg := make([]int32, B*T), make([]int32, B*T)
	return evalWindows(tokens, B, T, t.Config.EvalBatches, in, tg, func() (float64, error) { return o.step.Loss(in, tg) })
}

func (o *onDevice) close() error {
	for _, p := range o.probes {
		p.Close()
	}
	o.step.Close()
	return o.dev.Close()
}
