package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"

	"lens/engine/safetensors"
)

// Load reads an HF model directory: config.json and model.safetensors, or
// the shards listed in model.safetensors.index.json. Weights in F16 or
// BF16 are converted to float32, a tensor at a time (LoadQuantized).
func Load(dir string) (*Model, error) {
	m, _, err := LoadQuantized(dir, "")
	return m, err
}

func weightFiles(dir string) ([]string, error) {
	single := filepath.Join(dir, "model.safetensors")
	if _, err := os.Stat(single); err == nil {
		return []string{single}, nil
	}
	index := filepath.Join(dir, "model.safetensors.index.json")
	b, err := os.ReadFile(index)
	if err != nil {
		return nil, fmt.Errorf("load model %s: neither model.safetensors nor model.safetensors.index.json found", dir)
	}
	var idx struct {
		WeightMap map[string]string `json:"weight_map"`
	}
	if err := json.Unmarshal(b, &idx); err != nil {
		return nil, fmt.Errorf("%s: %w", index, err)
	}
	seen := map[string]bool{}
	var files []string
	for _, f := range idx.WeightMap {
		if filepath.Base(f) != f {
			return nil, fmt.Errorf("%s: shard name %q must be a plain file name", index, f)
		}
		if !seen[f] {
			seen[f] = true
			files = append(files, filepath.Join(dir, f))
		}
	}
	if len(files) == 0 {
		return nil, fmt.Errorf("%s: weight_map is empty", index)
	}
	return files, nil
}

// Save writes the model as an HF directory: config.json and
// model.safetensors (float32).
func (m *Model) Save(dir string) error {
	if err := m.check(); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	b, err := json.MarshalIndent(m.Config, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "config.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	var ts []safetensors.Tensor
	for _, n := range m.Names() {
		t := m.Weights[n]
		ts = append(ts, safetensors.F32Tensor(n, t.Shape, t.Data))
	}
	if err := safetensors.Write(filepath.Join(dir, "model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("save model: %w", err)
	}
	return nil
}
