package lora

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"

	"lens/engine/model"
	"lens/engine/safetensors"
)

// peftConfig is adapter_config.json as PEFT writes it for LoRA.
type peftConfig struct {
	PeftType      string   `json:"peft_type"`
	TaskType      string   `json:"task_type"`
	BaseModel     string   `json:"base_model_name_or_path"`
	R             int      `json:"r"`
	LoraAlpha     float64  `json:"lora_alpha"`
	LoraDropout   float64  `json:"lora_dropout"`
	TargetModules []string `json:"target_modules"`
	UseRSLoRA     bool     `json:"use_rslora"`
	Bias          string   `json:"bias"`
	FanInFanOut   bool     `json:"fan_in_fan_out"`
	InferenceMode bool     `json:"inference_mode"`
	InitLoraWts   bool     `json:"init_lora_weights"`
}

// peftKey is the safetensors key PEFT uses for a module's A or B.
func peftKey(module, which string) string {
	return "base_model.model." + module + ".lora_" + which + ".weight"
}

// Save writes the adapter in PEFT's format.
func (a *Adapter) Save(dir string) error {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	pc := peftConfig{
		PeftType: "LORA", TaskType: "CAUSAL_LM", BaseModel: a.Base, R: a.Config.Rank,
		LoraAlpha: a.Config.Alpha, LoraDropout: a.Config.Dropout, TargetModules: a.Config.Targets,
		UseRSLoRA: a.Config.RSLoRA, Bias: "none", InferenceMode: true, InitLoraWts: true,
	}
	b, err := json.MarshalIndent(pc, "", "  ")
	if err != nil {
		return err
	}
	if err := os.WriteFile(filepath.Join(dir, "adapter_config.json"), append(b, '\n'), 0o644); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	var ts []safetensors.Tensor
	for _, m := range a.Modules {
		ts = append(ts, safetensors.F32Tensor(peftKey(m, "A"), a.A[m].Shape, a.A[m].Data))
		ts = append(ts, safetensors.F32Tensor(peftKey(m, "B"), a.B[m].Shape, a.B[m].Data))
	}
	if err := safetensors.Write(filepath.Join(dir, "adapter_model.safetensors"), ts, map[string]string{"format": "pt"}); err != nil {
		return fmt.Errorf("save adapter: %w", err)
	}
	return nil
}

// Load reads a PEFT LoRA adapter and checks it against base: every module
// must exist with matching shapes.
func Load(dir string, base *model.Model) (*Adapter, error) {
	path := filepath.Join(dir, "adapter_config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return nil, fmt.Errorf("load adapter: %w", err)
	}
	var pc peftConfig
	if err := json.Unmarshal(b, &pc); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	if pc.PeftType != "LORA" {
		return nil, fmt.Errorf("%s: peft_type %q is not LORA", path, pc.PeftType)
	}
	if pc.Bias != "" && pc.Bias != "none" {
		return nil, fmt.Errorf("%s: bias %q is not supported (only none)", path, pc.Bias)
	}
	if pc.FanInFanOut {
		return nil, fmt.Errorf("%s: fan_in_fan_out is not supported", path)
	}
	c := Config{Rank: pc.R, Alpha: pc.LoraAlpha, Dropout: pc.LoraDropout, Targets: pc.TargetModules, RSLoRA: pc.UseRSLoRA}
	if err := c.Validate(); err != nil {
		return nil, fmt.Errorf("%s: %w", path, err)
	}
	wpath := filepath.Join(dir, "adapter_model.safetensors")
	f, err := safetensors.ReadFile(wpath)
	if err != nil {
		return nil, fmt.Errorf("load adapter: %w", err)
	}
	ad := &Adapter{Config: c, Base: pc.BaseModel, A: map[string]*model.Tensor{}, B: map[string]*model.Tensor{}}
	for _, name := range f.Names() {
		rest, ok := strings.CutPrefix(name, "base_model.model.")
		if !ok {
			return nil, fmt.Errorf("%s: tensor %s does not start with base_model.model.", wpath, name)
		}
		var mod, which string
		switch {
		case strings.HasSuffix(rest, ".lora_A.weight"):
			mod, which = strings.TrimSuffix(rest, ".lora_A.weight"), "A"
		case strings.HasSuffix(rest, ".lora_B.weight"):
			mod, which = strings.TrimSuffix(rest, ".lora_B.weight"), "B"
		default:
			return nil, fmt.Errorf("%s: tensor %s is neither lora_A nor lora_B", wpath, name)
		}
		data, shape, err := f.Float32(name)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", wpath, err)
		}
		t := &model.Tensor{Shape: shape, Data: data}
		if which == "A" {
			ad.A[mod] = t
		} else {
			ad.B[mod] = t
		}
	}
	for mod := range ad.A {
		ad.Modules = append(ad.Modules, mod)
	}
	sort.Strings(ad.Modules)
	if err := ad.check(base); err != nil {
		return nil, fmt.Errorf("load adapter %s: %w", dir, err)
	}
	return ad, nil
}

func (a *Adapter) check(base *model.Model) error {
	if len(a.Modules) == 0 {
		return fmt.Errorf("no lora_A tensors")
	}
	if len(a.B) != len(a.A) {
		return fmt.Errorf("%d lora_A tensors but %d lora_B", len(a.A), len(a.B))
	}
	r := a.Config.Rank
	for _, m := range a.Modules {
		w, ok := base.Weights[m+".weight"]
		if !ok {
			return fmt.Errorf("module %s is not a linear module of the base model", m)
		}
		A, B := a.A[m], a.B[m]
		if B == nil {
			return fmt.Errorf("module %s has lora_A but no lora_B", m)
		}
		if len(A.Shape) != 2 || A.Shape[0] != r || A.Shape[1] != w.Shape[1] {
			return fmt.Errorf("module %s: lora_A has shape %v, want [%d %d]", m, A.Shape, r, w.Shape[1])
		}
		if len(B.Shape) != 2 || B.Shape[0] != w.Shape[0] || B.Shape[1] != r {
			return fmt.Errorf("module %s: lora_B has shape %v, want [%d %d]", m, B.Shape, w.Shape[0], r)
		}
	}
	return nil
}
