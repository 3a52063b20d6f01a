package hf

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"lens/engine/lora"
	"lens/engine/runs"
	"lens/engine/safetensors"
	"lens/kv"
)

// PEFT's file names.
const (
	AdapterConfigFile  = "adapter_config.json"
	AdapterWeightsFile = "adapter_model.safetensors"
)

// ExportAdapter writes the adapter of a stored LoRA run at a checkpoint
// (step < 0: the latest) to dir in PEFT's format, exactly as `lens export`
// does, and returns the checkpoint it came from.
func ExportAdapter(st *kv.Store, runID string, step int, dir string) (kv.CheckpointMeta, error) {
	ad, cm, err := runs.Adapter(st, runID, step)
	if err != nil {
		return kv.CheckpointMeta{}, fmt.Errorf("export adapter of run %s: %w", runID, err)
	}
	if ad == nil {
		return kv.CheckpointMeta{}, fmt.Errorf("run %s is a full fine-tune and has no adapter (`lens export` writes its model)", runID)
	}
	if err := ad.Save(dir); err != nil {
		return kv.CheckpointMeta{}, fmt.Errorf("export adapter of run %s: %w", runID, err)
	}
	return cm, nil
}

// adapterFiles exports the adapter at step into a temporary directory and
// returns its two files' bytes.
func adapterFiles(st *kv.Store, runID string, step int) ([]File, error) {
	dir, err := os.MkdirTemp("", "lens-hf-")
	if err != nil {
		return nil, fmt.Errorf("export adapter: %w", err)
	}
	defer os.RemoveAll(dir)
	if _, err := ExportAdapter(st, runID, step, dir); err != nil {
		return nil, err
	}
	var files []File
	for _, name := range []string{AdapterConfigFile, AdapterWeightsFile} {
		b, err := os.ReadFile(filepath.Join(dir, name))
		if err != nil {
			return nil, fmt.Errorf("export adapter: %w", err)
		}
		files = append(files, File{Path: name, Content: b})
	}
	return files, nil
}

// AdapterInfo is what a PEFT LoRA directory holds, read without a base
// model to check it against.
type AdapterInfo struct {
	Config    lora.Config
	BaseModel string           // base_model_name_or_path
	Tensors   map[string][]int // safetensors key -> shape
}

// ReadAdapter reads a PEFT LoRA adapter directory: its configuration and
// the names and shapes of its tensors. lora.Load does the full check
// against a base model; this is for when there is none at hand.
func ReadAdapter(dir string) (AdapterInfo, error) {
	path := filepath.Join(dir, AdapterConfigFile)
	b, err := os.ReadFile(path)
	if err != nil {
		return AdapterInfo{}, fmt.Errorf("read adapter: %w", err)
	}
	var pc struct {
		PeftType  string `json:"peft_type"`
		BaseModel string `json:"base_model_name_or_path"`
		lora.Config
	}
	if err := json.Unmarshal(b, &pc); err != nil {
		return AdapterInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	if pc.PeftType != "LORA" {
		return AdapterInfo{}, fmt.Errorf("%s: peft_type %q is not LORA", path, pc.PeftType)
	}
	if err := pc.Config.Validate(); err != nil {
		return AdapterInfo{}, fmt.Errorf("%s: %w", path, err)
	}
	wpath := filepath.Join(dir, AdapterWeightsFile)
	f, err := safetensors.ReadFile(wpath)
	if err != nil {
		return AdapterInfo{}, fmt.Errorf("read adapter: %w", err)
	}
	info := AdapterInfo{Config: pc.Config, BaseModel: pc.BaseModel, Tensors: map[string][]int{}}
	for _, t := range f.Tensors() {
		if !strings.HasSuffix(t.Name, ".lora_A.weight") && !strings.HasSuffix(t.Name, ".lora_B.weight") {
			return AdapterInfo{}, fmt.Errorf("%s: tensor %s is neither lora_A nor lora_B", wpath, t.Name)
		}
		info.Tensors[t.Name] = append([]int(nil), t.Shape...)
	}
	if len(info.Tensors) == 0 {
		return AdapterInfo{}, fmt.Errorf("%s: no tensors", wpath)
	}
	return info, nil
}
