package runs

import (
	"errors"
	"fmt"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// SpecOptions are a training run's settings as plain Go values, as
// lens.train receives them; zero fields take the defaults NewSpec applies.
type SpecOptions struct {
	Model *model.Model
	// Base is where Model comes from; when it names no blob, directory or
	// seed (Init), NewSpec stores Model in the store. A seeded base is
	// drawn again from its seed (loadBase), never stored: Model may then
	// be held packed (model.NewQuantized) and the float32 model never
	// exist.
	Base  BaseRef
	Data  DataRef
	Evals map[string]DataRef // extra held-out sets by name
	// LoRA is the adapter; nil means lora.DefaultConfig(), unless
	// Train.Full asks for full fine-tuning (giving both is an error).
	LoRA     *lora.Config
	LoRASeed uint64
	// Train's zero fields mean train.Defaults() (kept zero in the spec, so
	// records and cache keys do not change when a default is spelled out).
	Train           train.Config
	Init            *InitRef
	Name            string // "": DefaultName
	Tags            []string
	Collect         []collect.Spec
	CheckpointEvery int
	KeepLast        int
	ProbeBatch      int
	Device          string // a resolved device (engine/device)
	Script          string
	ScriptHash      string
	Args            map[string]string
}

// ErrLoRAAndFull is NewSpec's error for a LoRA config given with full
// fine-tuning.
var ErrLoRAAndFull = errors.New("give either lora= or full=True, not both")

// NewSpec builds and checks a run's spec: the default adapter and name,
// the training settings' ranges, and the base model's place in the store
// (stored once under its hash unless it comes from a directory or a seed).
func NewSpec(st *kv.Store, o SpecOptions) (Spec, error) {
	if o.Model == nil {
		return Spec{}, fmt.Errorf("new run: no base model")
	}
	if err := o.Train.WithDefaults().Validate(); err != nil {
		return Spec{}, err
	}
	if o.Train.Full && o.LoRA != nil {
		return Spec{}, ErrLoRAAndFull
	}
	spec := Spec{
		Name: o.Name, Tags: o.Tags, Script: o.Script, ScriptHash: o.ScriptHash, Args: o.Args,
		Base: o.Base, LoRA: o.LoRA, LoRASeed: o.LoRASeed, Init: o.Init, Train: o.Train,
		Data: o.Data, Evals: o.Evals, CheckpointEvery: o.CheckpointEvery, Device: o.Device,
		KeepLast: o.KeepLast, Collect: o.Collect, ProbeBatch: o.ProbeBatch,
	}
	if !o.Train.Full && spec.LoRA == nil {
		c := lora.DefaultConfig()
		spec.LoRA = &c
	}
	if spec.Name == "" {
		spec.Name = DefaultName(spec)
	}
	if spec.Base.Init && spec.Base.Hash == "" {
		return Spec{}, fmt.Errorf("new run: a base drawn from seed %d without its hash", spec.Base.Seed)
	}
	if spec.Base.Blob == "" && spec.Base.Dir == "" && !spec.Base.Init {
		ref, err := StoreBase(st, o.Model)
		if err != nil {
			return Spec{}, err
		}
		spec.Base = ref
	}
	return spec, nil
}

// DefaultName is a run's name when none is given: lora-r<R>-<data> or
// full-<data>.
func DefaultName(s Spec) string {
	if s.LoRA == nil {
		return "full-" + s.Data.Source
	}
	return fmt.Sprintf("lora-r%d-%s", s.LoRA.Rank, s.Data.Source)
}
