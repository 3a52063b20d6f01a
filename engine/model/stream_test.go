package model_test

import (
	"encoding/json"
	"fmt"
	"math"
	"os"
	"path/filepath"
	"runtime"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/model"
	"lens/engine/quant"
	"lens/engine/runs"
	"lens/engine/safetensors"
)

// streamConfigs are the shapes the streaming tests build: tied, untied
// with Qwen2's biases, and Gemma's (1 + w) norms.
func streamConfigs() map[string]model.Config {
	tied := model.Tiny()
	tied.HiddenSize, tied.IntermediateSize, tied.NumHiddenLayers = 64, 96, 2
	qwen := tied
	qwen.ModelType, qwen.TieWordEmbeddings, qwen.NumKeyValueHeads = "qwen2", false, 2
	gemma := tied
	gemma.ModelType, gemma.HeadDim = "gemma3_text", 16
	return map[string]model.Config{"tied": tied, "qwen2": qwen, "gemma3": gemma}
}

// requireSameModel requires got to hold exactly want's weights and packed
// forms (codes, scales, bits).
func requireSameModel(t *testing.T, want, got *model.Model) {
	t.Helper()
	require.Equal(t, want.Config, got.Config)
	require.Equal(t, want.Quant, got.Quant)
	require.Equal(t, want.Names(), got.Names())
	for n, w := range want.Weights {
		require.Equal(t, w.Shape, got.Weights[n].Shape, n)
		require.True(t, bitEqual(w.Data, got.Weights[n].Data), "weight %s", n)
	}
	require.Equal(t, len(want.Packed), len(got.Packed))
	for n, p := range want.Packed {
		require.Equal(t, p, got.Packed[n], "packed %s", n)
	}
}

// TestNewQuantizedIsQuantized: NewQuantized makes, weight by weight, the
// very model New(...).Quantized(kind) makes from the float32 one, and
// returns the float32 model's run hash.
func TestNewQuantizedIsQuantized(t *testing.T) {
	for name, cfg := range streamConfigs() {
		for _, kind := range append([]string{""}, model.QuantKinds...) {
			t.Run(fmt.Sprintf("%s/%q", name, kind), func(t *testing.T) {
				dense, err := model.New(cfg, 5)
				require.NoError(t, err)
				want := dense
				if kind != "" {
					want, err = dense.Quantized(kind)
					require.NoError(t, err)
				}
				got, hash, err := model.NewQuantized(cfg, 5, kind)
				require.NoError(t, err)
				requireSameModel(t, want, got)
				require.Equal(t, runs.HashModel(dense), hash)
				require.Equal(t, model.Hash(dense), hash)
			})
		}
	}
	_, _, err := model.NewQuantized(model.Tiny(), 1, "int3")
	require.ErrorContains(t, err, "nf4, nf4-dq, bf16")
}

// writeShards saves m's weights in dtype over two shards with an index, as
// HF writes large checkpoints.
func writeShards(t *testing.T, m *model.Model, dir string, dtype safetensors.DType) {
	t.Helper()
	require.NoError(t, os.MkdirAll(dir, 0o755))
	b, err := json.Marshal(m.Config)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "config.json"), b, 0o644))
	shards := [2][]safetensors.Tensor{}
	index := map[string]string{}
	for i, n := range m.Names() {
		w := m.Weights[n]
		ts := safetensors.F32Tensor(n, w.Shape, w.Data)
		if dtype == safetensors.BF16 {
			bits, err := quant.ToBF16(w.Data, w.Shape)
			require.NoError(t, err)
			raw := make([]byte, 2*len(bits.Bits))
			for j, v := range bits.Bits {
				raw[2*j], raw[2*j+1] = byte(v), byte(v>>8)
			}
			ts = safetensors.Tensor{Name: n, DType: safetensors.BF16, Shape: w.Shape, Data: raw}
		}
		shards[i%2] = append(shards[i%2], ts)
		index[n] = fmt.Sprintf("model-%05d-of-00002.safetensors", i%2+1)
	}
	for i, ts := range shards {
		require.NoError(t, safetensors.Write(filepath.Join(dir, fmt.Sprintf("model-%05d-of-00002.safetensors", i+1)), ts, nil))
	}
	b, err = json.Marshal(map[string]any{"weight_map": index})
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "model.safetensors.index.json"), b, 0o644))
}

// readWhole is the reference reading: every shard whole, every tensor
// decoded to float32 by safetensors.File.
func readWhole(t *testing.T, dir string, cfg model.Config) *model.Model {
	t.Helper()
	m := &model.Model{Config: cfg, Weights: map[string]*model.Tensor{}}
	paths, err := filepath.Glob(filepath.Join(dir, "*.safetensors"))
	require.NoError(t, err)
	for _, p := range paths {
		f, err := safetensors.ReadFile(p)
		require.NoError(t, err)
		for _, n := range f.Names() {
			d, shape, err := f.Float32(n)
			require.NoError(t, err)
			m.Weights[n] = &model.Tensor{Shape: shape, Data: d}
		}
	}
	return m
}

// TestLoadQuantizedIsQuantized: LoadQuantized of a sharded directory (F32
// and BF16) holds what Quantized makes of the whole float32 model read
// the plain way, and hashes what that model holds.
func TestLoadQuantizedIsQuantized(t *testing.T) {
	for name, cfg := range streamConfigs() {
		src, err := model.New(cfg, 9)
		require.NoError(t, err)
		for _, dt := range []safetensors.DType{safetensors.F32, safetensors.BF16} {
			dir := filepath.Join(t.TempDir(), name)
			writeShards(t, src, dir, dt)
			cfg, err := model.ReadConfig(dir)
			require.NoError(t, err)
			dense := readWhole(t, dir, cfg)
			for _, kind := range append([]string{""}, model.QuantKinds...) {
				t.Run(fmt.Sprintf("%s/%s/%q", name, dt, kind), func(t *testing.T) {
					want := dense
					if kind != "" {
						want, err = dense.Quantized(kind)
						require.NoError(t, err)
					}
					got, hash, err := model.LoadQuantized(dir, kind)
					require.NoError(t, err)
					requireSameModel(t, want, got)
					require.Equal(t, runs.HashModel(dense), hash)
				})
			}
		}
	}
}

// TestLoadQuantizedRefuses: what Load refuses, LoadQuantized refuses
// before packing anything, naming the weight and file.
func TestLoadQuantizedRefuses(t *testing.T) {
	cfg := streamConfigs()["qwen2"]
	src, err := model.New(cfg, 2)
	require.NoError(t, err)
	for _, tc := range []struct {
		name string
		edit func(m *model.Model)
		want string
	}{
		{"nan", func(m *model.Model) { m.Weights["model.layers.1.mlp.up_proj.weight"].Data[7] = float32(math.NaN()) }, "weight model.layers.1.mlp.up_proj.weight has a non-finite value at 7"},
		{"inf in a table", func(m *model.Model) { m.Weights[model.EmbedName].Data[3] = float32(math.Inf(1)) }, "weight model.embed_tokens.weight has a non-finite value at 3"},
		{"extra", func(m *model.Model) {
			m.Weights["model.layers.9.mlp.up_proj.weight"] = &model.Tensor{Shape: []int{1}, Data: []float32{1}}
		}, "weight model.layers.9.mlp.up_proj.weight is not part of a 2-layer model"},
		{"missing", func(m *model.Model) { delete(m.Weights, model.HeadName) }, "weight lm_head.weight is missing"},
		{"shape", func(m *model.Model) { m.Weights["model.norm.weight"].Shape = []int{8, 8} }, "weight model.norm.weight has shape [8 8], config wants [64]"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			m := src.Clone()
			tc.edit(m)
			dir := t.TempDir()
			writeShards(t, m, dir, safetensors.F32)
			_, _, err := model.LoadQuantized(dir, model.QuantNF4)
			require.ErrorContains(t, err, tc.want)
			require.ErrorContains(t, err, dir)
		})
	}
}

// TestStreamingAllocates: building or loading a quantized model allocates
// far less than its float32 weights (the whole point: a 1B base is 5 GB
// in float32), while the float32 path allocates them.
func TestStreamingAllocates(t *testing.T) {
	cfg := model.Tiny()
	cfg.VocabSize, cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers, cfg.TieWordEmbeddings = 16384, 256, 768, 4, false
	f32 := 4 * cfg.ParamCount()
	allocated := func(f func()) int {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		f()
		runtime.ReadMemStats(&b)
		return int(b.TotalAlloc - a.TotalAlloc)
	}
	src, err := model.New(cfg, 1)
	require.NoError(t, err)
	dir := t.TempDir()
	writeShards(t, src, dir, safetensors.BF16)
	src = nil
	for _, tc := range []struct {
		name string
		run  func() error
		max  float64 // of the float32 weights' bytes
	}{
		{"new nf4", func() error { _, _, err := model.NewQuantized(cfg, 1, model.QuantNF4); return err }, 0.65},
		{"load nf4", func() error { _, _, err := model.LoadQuantized(dir, model.QuantNF4); return err }, 0.65},
		{"load bf16", func() error { _, _, err := model.LoadQuantized(dir, model.QuantBF16); return err }, 0.75},
		{"load float32", func() error { _, _, err := model.LoadQuantized(dir, ""); return err }, 1.2},
	} {
		var err error
		n := allocated(func() { err = tc.run() })
		require.NoError(t, err, tc.name)
		t.Logf("%s: allocated %.1f MB, float32 weights %.1f MB", tc.name, float64(n)/1e6, float64(f32)/1e6)
		require.Less(t, float64(n), tc.max*float64(f32), tc.name)
	}
}
