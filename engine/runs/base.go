package runs

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"

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
// a base from a directory or a seed is packed weight by weight as it is
// read or drawn (model.LoadQuantized, NewQuantized), so a resume never
// holds the float32 model; one from a blob is quantized after reading.
func LoadTrainingBase(st *kv.Store, spec Spec) (*model.Model, error) {
	return loadBase(st, spec, spec.Train.BaseQuant)
}

func loadBase(st *kv.Store, spec Spec, quant string) (*model.Model, error) {
	ref := spec.Base
	switch {
	case ref.Blob != "":
		ts, meta, err := st.GetBlob(nsModel, ref.Blob)
		if err != nil {
			return nil, fmt.Errorf("base model %s: %w", ref.Blob, err)
		}
		var mb modelBlob
		if err := json.Unmarshal(meta, &mb); err != nil {
			return nil, fmt.Errorf("base model %s: %w", ref.Blob, err)
		}
		m := &model.Model{Config: mb.Config, Weights: map[string]*model.Tensor{}}
		for _, t := range ts {
			m.Weights[t.Name] = &model.Tensor{Shape: t.Shape, Data: t.Data}
		}
		if quant != "" {
			return m.Quantized(quant)
		}
		return m, nil
	case ref.Dir != "":
		// A quantized base is packed tensor by tensor as it is read; the
		// hash is the float32 weights' all the same.
		m, h, err := model.LoadQuantized(ref.Dir, quant)
		if err != nil {
			return nil, err
		}
		if ref.Hash != "" && h != ref.Hash {
			return nil, fmt.Errorf("base model %s changed since the run (hash %s, recorded %s)", ref.Dir, h, ref.Hash)
		}
		return m, nil
	case ref.Init:
		m, _, err := model.NewQuantized(spec.ModelConfig, ref.Seed, quant)
		return m, err
	}
	return nil, fmt.Errorf("run has no base model reference")
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
