package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"slices"

	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// Blob namespaces: "model" holds base models by content hash, "pretrain"
// maps the hash of a pretraining recipe to the model it produced.
const (
	nsModel    = "model"
	nsPretrain = "pretrain"
)

type modelBlob struct {
	Config model.Config `json:"config"`
}

// StoreBase keeps m in the store under its content hash (once) and returns
// the reference a run records.
func StoreBase(st *kv.Store, m *model.Model) (BaseRef, error) {
	h := HashModel(m)
	if _, _, err := st.GetBlob(nsModel, h); err == nil {
		return BaseRef{Blob: h, Hash: h}, nil
	} else if !errors.Is(err, kv.ErrNotFound) {
		return BaseRef{}, err
	}
	meta, _ := json.Marshal(modelBlob{Config: m.Config})
	var ts []kv.Tensor
	for _, n := range m.Names() {
		t := m.Weights[n]
		ts = append(ts, kv.Tensor{Name: n, Shape: t.Shape, Data: t.Data})
	}
	if err := st.PutBlob(nsModel, h, ts, meta); err != nil {
		return BaseRef{}, fmt.Errorf("store base model: %w", err)
	}
	return BaseRef{Blob: h, Hash: h}, nil
}

// LoadBase rebuilds a run's base model from its reference, in float32.
func LoadBase(st *kv.Store, spec Spec) (*model.Model, error) { return loadBase(st, spec, "") }

// LoadTrainingBase is LoadBase held as the run trains it: with base_quant,
// the base is packed weight by weight as it is read from its directory
// (model.LoadQuantized) or the store, or drawn from its seed
// (NewQuantized), so a resume never holds the float32 model.
func LoadTrainingBase(st *kv.Store, spec Spec) (*model.Model, error) {
	return loadBase(st, spec, spec.Train.BaseQuant)
}

func loadBase(st *kv.Store, spec Spec, quant string) (*model.Model, error) {
	ref := spec.Base
	var (
		m    *model.Model
		h    string
		err  error
		what string
	)
	switch {
	case ref.Blob != "":
		what = "base model " + ref.Blob
		m, h, err = blobBase(st, ref.Blob, quant)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	case ref.Dir != "":
		// The hash is the float32 weights' whatever the form.
		what = "base model " + ref.Dir
		if m, h, err = model.LoadQuantized(ref.Dir, quant); err != nil {
			return nil, err
		}
	case ref.Init:
		what = fmt.Sprintf("base model drawn from seed %d", ref.Seed)
		if m, h, err = model.NewQuantized(spec.ModelConfig, ref.Seed, quant); err != nil {
			return nil, fmt.Errorf("%s: %w", what, err)
		}
	default:
		return nil, fmt.Errorf("run has no base model reference")
	}
	if ref.Hash != "" && h != ref.Hash {
		return nil, fmt.Errorf("%s changed since the run (hash %s, recorded %s)", what, h, ref.Hash)
	}
	return m, nil
}

// blobBase reads a base model stored by StoreBase one tensor at a time,
// each packed as quant as it is read (model.Assemble): the float32 model
// is never whole in memory when quant is set.
func blobBase(st *kv.Store, key, quant string) (*model.Model, string, error) {
	names, meta, err := st.BlobInfo(nsModel, key)
	if err != nil {
		return nil, "", err
	}
	var mb modelBlob
	if err := json.Unmarshal(meta, &mb); err != nil {
		return nil, "", err
	}
	shapes := mb.Config.Shapes()
	if len(names) != len(shapes) {
		return nil, "", fmt.Errorf("%d tensors, the config has %d weights", len(names), len(shapes))
	}
	var cur kv.Tensor // the weight being read
	return model.Assemble(mb.Config, quant, func(name string, off int, dst []float32) error {
		if cur.Name != name {
			cur = kv.Tensor{} // let the last one go before reading the next
			t, err := st.BlobTensor(nsModel, key, name)
			if err != nil {
				return err
			}
			if !slices.Equal(t.Shape, shapes[name]) {
				return fmt.Errorf("weight %s has shape %v, config wants %v", name, t.Shape, shapes[name])
			}
			cur = t
		}
		copy(dst, cur.Data[off:off+len(dst)])
		return nil
	})
}

// PretrainSpec is a recipe for a base model: a fresh model of Config
// trained in full on Data. Its hash keys the cache.
type PretrainSpec struct {
	Name   string       `json:"name"`
	Config model.Config `json:"config"`
	Seed   uint64       `json:"seed"`
	Data   DataRef      `json:"data"`
	Train  train.Config `json:"train"`
}

type pretrainBlob struct {
	Model string `json:"model"`
	Run   string `json:"run"`
}

// Pretrain returns the model the recipe produces, from the store's cache
// when it was made before (cached is then true), else by training it as a
// recorded run.
func Pretrain(ctx context.Context, st *kv.Store, ps PretrainSpec, opt Options) (m *model.Model, ref BaseRef, cached bool, err error) {
	ps.Train = ps.Train.WithDefaults()
	ps.Train.Full = true
	key := hashJSON(ps)
	if _, meta, err := st.GetBlob(nsPretrain, key); err == nil {
		var pb pretrainBlob
		if err := json.Unmarshal(meta, &pb); err == nil {
			ref := BaseRef{Blob: pb.Model, Hash: pb.Model}
			if m, err := LoadBase(st, Spec{Base: ref}); err == nil {
				return m, ref, true, nil
			}
		}
	} else if !errors.Is(err, kv.ErrNotFound) {
		return nil, BaseRef{}, false, err
	}
	init, err := model.New(ps.Config, ps.Seed)
	if err != nil {
		return nil, BaseRef{}, false, err
	}
	spec := Spec{Name: ps.Name, Base: BaseRef{Init: true, Seed: ps.Seed, Hash: HashModel(init)},
		Train: ps.Train, Data: ps.Data, Tags: []string{"pretrain"}}
	if spec.Name == "" {
		spec.Name = "pretrain"
	}
	job, err := Prepare(spec, init)
	if err != nil {
		return nil, BaseRef{}, false, err
	}
	meta, err := job.Run(ctx, st, opt)
	if err != nil {
		return nil, BaseRef{}, false, err
	}
	if meta.Status != kv.StatusDone {
		return nil, BaseRef{}, false, fmt.Errorf("pretraining run %s ended %s: %s", meta.ID, meta.Status, meta.Reason)
	}
	trained := job.Trainer.Model
	ref, err = StoreBase(st, trained)
	if err != nil {
		return nil, BaseRef{}, false, err
	}
	pb, _ := json.Marshal(pretrainBlob{Model: ref.Blob, Run: meta.ID})
	if err := st.PutBlob(nsPretrain, key, nil, pb); err != nil {
		return nil, BaseRef{}, false, err
	}
	return trained, ref, false, nil
}
