package runs

import "encoding/json"

// FlatConfig is a run's spec as the flat dict scripts filter on
// (run.config) and lens ui shows: training and LoRA settings (r, alpha,
// ...), lora_seed, data (its source), checkpoint_every, init, device, and
// the model config under "model". Numbers are float64, as JSON gives them.
func FlatConfig(spec Spec) map[string]any {
	flat := map[string]any{}
	merge := func(v any) {
		b, _ := json.Marshal(v)
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		for k, x := range m {
			flat[k] = x
		}
	}
	merge(spec.Train)
	if spec.LoRA != nil {
		merge(spec.LoRA)
		flat["lora_seed"] = float64(spec.LoRASeed)
	}
	flat["data"] = spec.Data.Source
	flat["checkpoint_every"] = float64(spec.CheckpointEvery)
	if spec.Init != nil {
		init := map[string]any{"hash": spec.Init.Hash}
		if spec.Init.Run != "" {
			init["run"], init["step"] = spec.Init.Run, float64(spec.Init.Step)
		} else {
			init["dir"] = spec.Init.Dir
		}
		flat["init"] = init
	}
	flat["device"] = spec.Device
	if spec.Device == "" {
		flat["device"] = "cpu" // runs from before devices were recorded
	}
	b, _ := json.Marshal(spec.ModelConfig)
	var mc map[string]any
	_ = json.Unmarshal(b, &mc)
	flat["model"] = mc
	return flat
}
