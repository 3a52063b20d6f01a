package sweep

import (
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/memstat"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

// TestCreateRunHoldsTrainingBase: createRun prepares a trial's run with
// its base held as the run trains it. A base drawn from a seed with
// base_quant "nf4" is drawn packed, so the process's resident set grows by
// well under the float32 model's size; without base_quant it holds the
// float32 model and grows by at least that size, which shows the measure
// sees a float32 copy when there is one.
func TestCreateRunHoldsTrainingBase(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("peak RSS is read from Linux's /proc")
	}
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.MaxPositionEmbeddings = 512, 2048, 8, 32
	float32Bytes := int64(4 * cfg.ParamCount()) // 134 MB
	_, hash, err := model.NewQuantized(cfg, 3, model.QuantNF4)
	require.NoError(t, err)
	for _, tc := range []struct {
		quant  string
		packed bool
	}{{model.QuantNF4, true}, {"", false}} {
		t.Run("base_quant="+tc.quant, func(t *testing.T) {
			shard, err := kv.Open(filepath.Join(t.TempDir(), "shard"), kv.Options{})
			require.NoError(t, err)
			defer shard.Close()
			spec := runs.Spec{Name: "trial", Base: runs.BaseRef{Init: true, Seed: 3, Hash: hash}, ModelConfig: cfg,
				LoRA:  &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}},
				Train: train.Config{Steps: 2, BatchSize: 1, SeqLen: 16, BaseQuant: tc.quant}, Data: runs.DataRef{Source: "opticks"}}
			debug.FreeOSMemory()
			if err := memstat.ResetPeak(); err != nil {
				t.Skipf("cannot reset the peak RSS here: %v", err)
			}
			before := memstat.RSS()
			id, err := createRun(shard, &TrialFile{ID: "t1", Sweep: "s", Spec: spec})
			grew := memstat.PeakRSS() - before
			require.NoError(t, err)
			t.Logf("peak RSS grew by %d MB preparing the run (the float32 base is %d MB)", grew>>20, float32Bytes>>20)
			meta, err := shard.GetRun(id)
			require.NoError(t, err)
			got, err := runs.SpecOf(meta)
			require.NoError(t, err)
			require.Equal(t, tc.quant, got.Train.BaseQuant)
			require.Equal(t, spec.Base, got.Base)
			if tc.packed {
				require.Less(t, grew, float32Bytes/2)
			} else {
				require.GreaterOrEqual(t, grew, float32Bytes)
			}
		})
	}
}
