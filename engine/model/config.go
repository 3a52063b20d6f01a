// Package model is the Llama-layout decoder: its configuration (LlamaConfig
// field names), its weights under Hugging Face tensor names, random
// initialisation, loading and saving as an HF model directory
// (config.json + model.safetensors), and building its forward graph with
// optional LoRA adapters on any linear module.
package model

import (
	"encoding/json"
	"fmt"
	"os"
	"path/filepath"
)

// Config uses the field names of transformers' LlamaConfig, so config.json
// of a Llama-family checkpoint decodes into it.
type Config struct {
	Architectures         []string `json:"architectures,omitempty"`
	ModelType             string   `json:"model_type"`
	VocabSize             int      `json:"vocab_size"`
	HiddenSize            int      `json:"hidden_size"`
	IntermediateSize      int      `json:"intermediate_size"`
	NumHiddenLayers       int      `json:"num_hidden_layers"`
	NumAttentionHeads     int      `json:"num_attention_heads"`
	NumKeyValueHeads      int      `json:"num_key_value_heads"`
	HeadDim               int      `json:"head_dim,omitempty"`
	MaxPositionEmbeddings int      `json:"max_position_embeddings"`
	RMSNormEps            float64  `json:"rms_norm_eps"`
	RopeTheta             float64  `json:"rope_theta"`
	TieWordEmbeddings     bool     `json:"tie_word_embeddings"`
	HiddenAct             string   `json:"hidden_act,omitempty"`
	InitializerRange      float64  `json:"initializer_range,omitempty"`
	TorchDtype            string   `json:"torch_dtype,omitempty"`

	// Family fields (family.go), each under its HF name.
	AttentionBias         bool         `json:"attention_bias,omitempty"`
	MLPBias               bool         `json:"mlp_bias,omitempty"`
	RopeScaling           *RopeScaling `json:"rope_scaling,omitempty"`
	SlidingWindow         int          `json:"sliding_window,omitempty"`
	UseSlidingWindow      bool         `json:"use_sliding_window,omitempty"`
	HiddenActivation      string       `json:"hidden_activation,omitempty"`
	QueryPreAttnScalar    float64      `json:"query_pre_attn_scalar,omitempty"`
	RopeLocalBaseFreq     float64      `json:"rope_local_base_freq,omitempty"`
	LayerTypes            []string     `json:"layer_types,omitempty"`
	SlidingWindowPattern  int          `json:"sliding_window_pattern,omitempty"`
	AttnLogitSoftcapping  *float64     `json:"attn_logit_softcapping,omitempty"`
	FinalLogitSoftcapping *float64     `json:"final_logit_softcapping,omitempty"`
}

// Tiny is the embedded default: a byte-level model small enough to pretrain
// on two CPU cores in a couple of minutes.
func Tiny() Config {
	return Config{
		Architectures: []string{"LlamaForCausalLM"}, ModelType: "llama",
		VocabSize: 256, HiddenSize: 128, IntermediateSize: 344, NumHiddenLayers: 4,
		NumAttentionHeads: 4, NumKeyValueHeads: 4, MaxPositionEmbeddings: 128,
		RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: true, HiddenAct: "silu",
		InitializerRange: 0.02, TorchDtype: "float32",
	}
}

// withDefaults fills the fields HF treats as optional.
func (c Config) withDefaults() Config { return c.withDefaultsFrom(nil) }

// withDefaultsFrom is withDefaults knowing which keys config.json had.
func (c Config) withDefaultsFrom(present map[string]bool) Config {
	if c.ModelType == "" {
		c.ModelType = "llama"
	}
	c = c.familyDefaults(present)
	if c.NumKeyValueHeads == 0 {
		c.NumKeyValueHeads = c.NumAttentionHeads
	}
	if c.RopeTheta == 0 {
		c.RopeTheta = 10000
	}
	if c.RMSNormEps == 0 {
		c.RMSNormEps = 1e-6
	}
	if c.InitializerRange == 0 {
		c.InitializerRange = 0.02
	}
	if c.ModelType == "" {
		c.ModelType = "llama"
	}
	if c.HiddenAct == "" && !c.Gemma() {
		c.HiddenAct = "silu"
	}
	if len(c.Architectures) == 0 {
		c.Architectures = []string{"LlamaForCausalLM"}
	}
	return c
}

// Head returns the size of one attention head.
func (c Config) Head() int {
	if c.HeadDim > 0 {
		return c.HeadDim
	}
	if c.NumAttentionHeads == 0 {
		return 0
	}
	return c.HiddenSize / c.NumAttentionHeads
}

// Validate reports the first field out of range, by its config.json name.
func (c Config) Validate() error {
	pos := []struct {
		name string
		v    int
	}{
		{"vocab_size", c.VocabSize}, {"hidden_size", c.HiddenSize}, {"intermediate_size", c.IntermediateSize},
		{"num_hidden_layers", c.NumHiddenLayers}, {"num_attention_heads", c.NumAttentionHeads},
		{"num_key_value_heads", c.NumKeyValueHeads}, {"max_position_embeddings", c.MaxPositionEmbeddings},
	}
	for _, f := range pos {
		if f.v <= 0 {
			return fmt.Errorf("config field %s = %d: must be positive", f.name, f.v)
		}
	}
	// Guard allocations against absurd declared sizes (a typo, a hostile
	// config.json): beyond 2^33 fp32 parameters (32 GiB) nothing here fits.
	if n := c.paramEstimate(); n > 1<<33 {
		return fmt.Errorf("config declares about %.3g parameters: more than lens can hold in memory (check hidden_size, intermediate_size, vocab_size, num_hidden_layers)", n)
	}
	if c.HeadDim == 0 && c.HiddenSize%c.NumAttentionHeads != 0 {
		return fmt.Errorf("config field num_attention_heads = %d does not divide hidden_size = %d", c.NumAttentionHeads, c.HiddenSize)
	}
	if c.Head()%2 != 0 {
		return fmt.Errorf("config field head_dim = %d: rotary embeddings need an even head size", c.Head())
	}
	if c.NumAttentionHeads%c.NumKeyValueHeads != 0 {
		return fmt.Errorf("config field num_key_value_heads = %d does not divide num_attention_heads = %d", c.NumKeyValueHeads, c.NumAttentionHeads)
	}
	if c.RMSNormEps <= 0 || c.RMSNormEps >= 1 {
		return fmt.Errorf("config field rms_norm_eps = %g: must be in (0, 1)", c.RMSNormEps)
	}
	if c.RopeTheta <= 0 {
		return fmt.Errorf("config field rope_theta = %g: must be positive", c.RopeTheta)
	}
	return c.validateFamily()
}

// paramEstimate counts parameters in float64 (no overflow), roughly: the
// embeddings and every layer's projections.
func (c Config) paramEstimate() float64 {
	h, i, v, l := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.VocabSize), float64(c.NumHiddenLayers)
	hd := float64(c.HeadDim)
	if hd == 0 {
		hd = h / float64(c.NumAttentionHeads)
	}
	attn := h*hd*float64(c.NumAttentionHeads)*2 + h*hd*float64(c.NumKeyValueHeads)*2
	return 2*v*h + l*(attn+3*h*i)
}

// ReadConfig reads and validates dir/config.json.
func ReadConfig(dir string) (Config, error) {
	path := filepath.Join(dir, "config.json")
	b, err := os.ReadFile(path)
	if err != nil {
		return Config{}, fmt.Errorf("read model config: %w", err)
	}
	c, err := ParseConfig(b)
	if err != nil {
		return Config{}, fmt.Errorf("%s: %w", path, err)
	}
	return c, nil
}

// ParseConfig decodes and validates config.json contents, filling the
// fields HF treats as optional.
func ParseConfig(b []byte) (Config, error) {
	var c Config
	if err := json.Unmarshal(b, &c); err != nil {
		return Config{}, err
	}
	c = c.withDefaultsFrom(presentKeys(b))
	if err := c.Validate(); err != nil {
		return Config{}, err
	}
	if c.ParamCount() < 0 || c.VocabSize > 1<<24 || c.HiddenSize > 1<<16 || c.NumHiddenLayers > 1<<10 || c.IntermediateSize > 1<<18 || c.MaxPositionEmbeddings > 1<<24 {
		return Config{}, fmt.Errorf("config sizes are beyond what lens can hold (hidden_size %d, layers %d, vocab_size %d)", c.HiddenSize, c.NumHiddenLayers, c.VocabSize)
	}
	return c, nil
}

// ParamCount is the number of distinct parameters.
func (c Config) ParamCount() int {
	h, kv := c.HiddenSize, c.NumKeyValueHeads*c.Head()
	q := c.NumAttentionHeads * c.Head()
	layer := 2*h + h*q + 2*h*kv + q*h + 3*h*c.IntermediateSize
	if c.QKVBias() {
		layer += q + 2*kv
	}
	if c.OBias() {
		layer += h
	}
	if c.QKNorm() {
		layer += 2 * c.Head()
	}
	if c.Gemma() {
		layer += 2 * h
	}
	n := c.VocabSize*h + c.NumHiddenLayers*layer + h
	if !c.TieWordEmbeddings {
		n += c.VocabSize * h
	}
	return n
}
