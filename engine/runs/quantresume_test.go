package runs

import (
	"context"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
)

// TestQuantizedResumeIsExact: a LoRA run on a quantized base drawn from a
// seed (the bench's case), cancelled after its step-3 checkpoint and
// resumed, ends with the adapter of a run that went straight through; the
// resume rebuilds the packed base weight by weight (LoadTrainingBase), and
// LoadBase still gives the float32 one; Adapter gives Weights' adapter
// without reading the base.
func TestQuantizedResumeIsExact(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.TieWordEmbeddings = 64, 128, 2, false
	for _, kind := range []string{model.QuantNF4, model.QuantBF16} {
		t.Run(kind, func(t *testing.T) {
			base, hash, err := model.NewQuantized(cfg, 4, kind)
			require.NoError(t, err)
			st := openStore(t)
			spec := Spec{Name: "q", Base: BaseRef{Init: true, Seed: 4, Hash: hash}, ModelConfig: base.Config,
				LoRA:  &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}},
				Train: train.Config{Steps: 6, BatchSize: 2, SeqLen: 16, LR: 1e-2, Seed: 5, BaseQuant: kind, HeadChunk: 8},
				Data:  DataRef{Source: "opticks"}, CheckpointEvery: 3}
			straight, err := Prepare(spec, base)
			require.NoError(t, err)
			m1, err := straight.Run(context.Background(), st, Options{})
			require.NoError(t, err)

			ctx, cancel := context.WithCancel(context.Background())
			cut, err := Prepare(spec, base)
			require.NoError(t, err)
			m2, err := cut.Run(ctx, st, Options{Hooks: []train.Hooks{{AfterStep: func(_ *train.Trainer, s *train.StepInfo) error {
				if s.Step == 3 {
					cancel()
				}
				return nil
			}}}})
			require.NoError(t, err)
			require.Equal(t, kv.StatusCancelled, m2.Status)
			m2, err = Resume(context.Background(), st, m2.ID, Options{})
			require.NoError(t, err)
			require.Equal(t, kv.StatusDone, m2.Status)
			_, a1, _, err := Weights(st, m1.ID, -1)
			require.NoError(t, err)
			_, a2, _, err := Weights(st, m2.ID, -1)
			require.NoError(t, err)
			only, _, err := Adapter(st, m2.ID, -1) // reads no base
			require.NoError(t, err)
			require.Equal(t, a2, only)
			for _, mod := range a1.Modules {
				require.Equal(t, a1.A[mod].Data, a2.A[mod].Data, mod)
				require.Equal(t, a1.B[mod].Data, a2.B[mod].Data, mod)
			}
			rb, err := LoadTrainingBase(st, spec)
			require.NoError(t, err)
			require.Equal(t, kind, rb.Quant)
			require.Equal(t, base.Packed, rb.Packed)
			fb, err := LoadBase(st, spec)
			require.NoError(t, err)
			require.Empty(t, fb.Packed)
			require.Equal(t, hash, HashModel(fb))
		})
	}
}

// TestLoadBaseForms: a base kept as a blob, read back tensor by tensor,
// packs to exactly what drawing it packed gives, and reads back in float32
// as stored; a base from a blob or a seed whose recorded hash differs is
// refused, naming it.
func TestLoadBaseForms(t *testing.T) {
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 64, 128, 2
	fm, err := model.New(cfg, 7)
	require.NoError(t, err)
	st := openStore(t)
	blob, err := StoreBase(st, fm)
	require.NoError(t, err)
	seeded := BaseRef{Init: true, Seed: 7, Hash: blob.Hash}
	for _, tc := range []struct {
		name  string
		ref   BaseRef
		quant string
		err   string
	}{
		{"blob nf4", blob, model.QuantNF4, ""},
		{"blob bf16", blob, model.QuantBF16, ""},
		{"blob float32", blob, "", ""},
		{"seed nf4", seeded, model.QuantNF4, ""},
		{"blob, other hash", BaseRef{Blob: blob.Blob, Hash: "0123"}, model.QuantNF4, "base model " + blob.Blob + " changed since the run"},
		{"seed, other hash", BaseRef{Init: true, Seed: 8, Hash: blob.Hash}, "", "drawn from seed 8 changed since the run"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			spec := Spec{Base: tc.ref, ModelConfig: fm.Config, Train: train.Config{BaseQuant: tc.quant}}
			m, err := LoadTrainingBase(st, spec)
			if tc.err != "" {
				require.ErrorContains(t, err, tc.err)
				return
			}
			require.NoError(t, err)
			want, hash, err := model.NewQuantized(cfg, 7, tc.quant)
			require.NoError(t, err)
			require.Equal(t, blob.Hash, hash)
			require.Equal(t, want.Quant, m.Quant)
			require.Equal(t, want.Packed, m.Packed)
			require.Equal(t, want.Weights, m.Weights)
		})
	}
}
