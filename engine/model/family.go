package model

import (
	"encoding/json"
	"fmt"
	"math"
	"sort"
	"strings"

	"lens/engine/kern"
)

// Families are the model_type values lens builds, each with the pieces it
// adds to the Llama block (see the Config methods below).
var Families = []string{"gemma3_text", "llama", "mistral", "qwen2", "qwen3"}

// RopeScaling is config.json's rope_scaling, HF's field names; lens
// computes the types llama3, linear and dynamic as modeling_rope_utils
// does.
type RopeScaling struct {
	RopeType                      string  `json:"rope_type,omitempty"`
	Type                          string  `json:"type,omitempty"` // the older key
	Factor                        float64 `json:"factor,omitempty"`
	LowFreqFactor                 float64 `json:"low_freq_factor,omitempty"`
	HighFreqFactor                float64 `json:"high_freq_factor,omitempty"`
	OriginalMaxPositionEmbeddings int     `json:"original_max_position_embeddings,omitempty"`
}

// Kind is rope_type, or the older type.
func (r *RopeScaling) Kind() string {
	if r == nil {
		return "default"
	}
	if r.RopeType != "" {
		return r.RopeType
	}
	if r.Type != "" {
		return r.Type
	}
	return "default"
}

func (r *RopeScaling) validate() error {
	switch k := r.Kind(); k {
	case "default":
		return nil
	case "linear", "dynamic":
		if r.Factor < 1 {
			return fmt.Errorf("config field rope_scaling.factor = %g: %s scaling needs a factor ≥ 1", r.Factor, k)
		}
	case "llama3":
		if r.Factor <= 0 || r.LowFreqFactor <= 0 || r.HighFreqFactor <= r.LowFreqFactor || r.OriginalMaxPositionEmbeddings <= 0 {
			return fmt.Errorf("config field rope_scaling: llama3 needs factor > 0, 0 < low_freq_factor < high_freq_factor and original_max_position_embeddings > 0 (got %+v)", *r)
		}
	default:
		return fmt.Errorf("config field rope_scaling.rope_type = %q: supported are llama3, linear, dynamic", k)
	}
	return nil
}

// familyDefaults fills what each family's HF config class defaults to.
// present names the keys config.json had (nil when the config did not
// come from JSON): defaults that a bare Go zero cannot tell apart from
// "absent" apply only then.
func (c Config) familyDefaults(present map[string]bool) Config {
	absent := func(k string) bool { return present != nil && !present[k] }
	switch c.ModelType {
	case "qwen3":
		if c.HeadDim == 0 {
			c.HeadDim = 128
		}
	case "mistral":
		if absent("sliding_window") {
			c.SlidingWindow = 4096
		}
	case "gemma3_text":
		if c.HeadDim == 0 {
			c.HeadDim = 256
		}
		if c.HiddenActivation == "" {
			c.HiddenActivation = "gelu_pytorch_tanh"
		}
		if c.QueryPreAttnScalar == 0 {
			c.QueryPreAttnScalar = 256
		}
		if c.RopeLocalBaseFreq == 0 {
			c.RopeLocalBaseFreq = 10000
		}
		if c.SlidingWindowPattern == 0 {
			c.SlidingWindowPattern = 6
		}
		if c.RopeTheta == 0 {
			c.RopeTheta = 1e6
		}
		if absent("tie_word_embeddings") {
			c.TieWordEmbeddings = true
		}
		if absent("sliding_window") {
			c.SlidingWindow = 4096
		}
		if len(c.Architectures) == 0 {
			c.Architectures = []string{"Gemma3ForCausalLM"}
		}
	}
	return c
}

// presentKeys lists the top-level keys of a config.json.
func presentKeys(b []byte) map[string]bool {
	var raw map[string]json.RawMessage
	if json.Unmarshal(b, &raw) != nil {
		return nil
	}
	p := map[string]bool{}
	for k := range raw {
		p[k] = true // null too: HF's default applies only to a missing key
	}
	return p
}

// validateFamily checks model_type and the fields only some families have.
func (c Config) validateFamily() error {
	i := sort.SearchStrings(Families, c.ModelType)
	if i == len(Families) || Families[i] != c.ModelType {
		return fmt.Errorf("config field model_type = %q is not supported; supported model types: %s", c.ModelType, strings.Join(Families, ", "))
	}
	if err := c.RopeScaling.validate(); err != nil {
		return err
	}
	if c.MLPBias {
		return fmt.Errorf("config field mlp_bias = true: biases on the MLP projections are not supported")
	}
	if c.SlidingWindow < 0 {
		return fmt.Errorf("config field sliding_window = %d: must not be negative", c.SlidingWindow)
	}
	if c.UseSlidingWindow {
		return fmt.Errorf("config field use_sliding_window = true (%s): per-layer sliding windows from max_window_layers are not supported", c.ModelType)
	}
	if c.ModelType == "gemma3_text" {
		if c.HiddenActivation != "gelu_pytorch_tanh" {
			return fmt.Errorf("config field hidden_activation = %q: gemma3_text is supported with gelu_pytorch_tanh", c.HiddenActivation)
		}
		if c.AttnLogitSoftcapping != nil || c.FinalLogitSoftcapping != nil {
			return fmt.Errorf("config fields attn_logit_softcapping / final_logit_softcapping: soft-capping is not supported (Gemma 3 has none)")
		}
		if c.QueryPreAttnScalar <= 0 {
			return fmt.Errorf("config field query_pre_attn_scalar = %g: must be positive", c.QueryPreAttnScalar)
		}
		if c.LayerTypes != nil && len(c.LayerTypes) != c.NumHiddenLayers {
			return fmt.Errorf("config field layer_types has %d entries for num_hidden_layers = %d", len(c.LayerTypes), c.NumHiddenLayers)
		}
		for i, t := range c.LayerTypes {
			if t != "sliding_attention" && t != "full_attention" {
				return fmt.Errorf("config field layer_types[%d] = %q: want sliding_attention or full_attention", i, t)
			}
		}
	} else if c.HiddenAct != "silu" {
		return fmt.Errorf("config field hidden_act = %q: only silu is supported for %s", c.HiddenAct, c.ModelType)
	}
	return nil
}

// Gemma reports the Gemma 3 block: embeddings times √hidden, (1 + w)
// norms before and after attention and MLP, GeGLU, per-layer sliding
// windows and local RoPE base, q/k norms, query_pre_attn_scalar.
func (c Config) Gemma() bool { return c.ModelType == "gemma3_text" }

// QKVBias reports biases on q_proj, k_proj and v_proj: always for Qwen2,
// with attention_bias for Llama, Qwen3 and Gemma 3.
func (c Config) QKVBias() bool {
	return c.ModelType == "qwen2" || (c.AttentionBias && c.ModelType != "mistral")
}

// OBias reports a bias on o_proj (attention_bias outside Qwen2 and Mistral).
func (c Config) OBias() bool {
	return c.AttentionBias && c.ModelType != "qwen2" && c.ModelType != "mistral"
}

// QKNorm reports RMSNorm over each q and k head before RoPE (Qwen3, Gemma 3).
func (c Config) QKNorm() bool { return c.ModelType == "qwen3" || c.Gemma() }

// NormOffset is what every norm adds to its weight: 1 for Gemma's (1 + w).
func (c Config) NormOffset() float64 {
	if c.Gemma() {
		return 1
	}
	return 0
}

// EmbedScale multiplies the embeddings (Gemma: √hidden, rounded to the
// float32 weights' dtype as HF does); 0 means none.
func (c Config) EmbedScale() float64 {
	if c.Gemma() {
		return float64(float32(math.Sqrt(float64(c.HiddenSize))))
	}
	return 0
}

// AttnScale is the factor of q·kᵀ: query_pre_attn_scalar^-½ for Gemma,
// else head_dim^-½.
func (c Config) AttnScale() float64 {
	if c.Gemma() {
		return math.Pow(c.QueryPreAttnScalar, -0.5)
	}
	return 1 / math.Sqrt(float64(c.Head()))
}

// LayerWindow is layer i's sliding window (a query sees itself and the
// window−1 keys before it), 0 for full attention.
func (c Config) LayerWindow(i int) int {
	switch {
	case c.ModelType == "mistral":
		return c.SlidingWindow
	case c.Gemma() && c.layerSliding(i):
		return c.SlidingWindow
	}
	return 0
}

func (c Config) layerSliding(i int) bool {
	if c.LayerTypes != nil {
		return c.LayerTypes[i] == "sliding_attention"
	}
	return c.SlidingWindowPattern > 0 && (i+1)%c.SlidingWindowPattern != 0
}

// LayerRope returns the cos and sin tables (seqLen×head_dim) of layer i:
// Gemma's sliding layers use rope_local_base_freq unscaled, every other
// layer rope_theta with rope_scaling.
func (c Config) LayerRope(i, seqLen int) (cos, sin []float32) {
	return kern.RopeTableFreq(seqLen, c.Head(), c.layerInvFreq(i, seqLen))
}

// LayerRopeKey names layer i's table, so that callers build each distinct
// table once.
func (c Config) LayerRopeKey(i int) string {
	if c.Gemma() && c.layerSliding(i) {
		return "local"
	}
	return "global"
}

func (c Config) layerInvFreq(i, seqLen int) []float32 {
	d := c.Head()
	if c.Gemma() && c.layerSliding(i) {
		return kern.RopeInvFreq(d, c.RopeLocalBaseFreq)
	}
	return RopeInvFreq(d, c.RopeTheta, c.MaxPositionEmbeddings, c.RopeScaling, seqLen)
}

// RopeInvFreq returns the inverse frequencies of head size d for base
// theta under rope_scaling, as transformers' modeling_rope_utils computes
// them in float32: linear divides them by factor; dynamic raises the base
// to θ·(factor·L/max − (factor−1))^(d/(d−2)) once the sequence length L
// passes max_position_embeddings; llama3 divides the low frequencies
// (wavelength > original_max/low_freq_factor) by factor and blends the
// band up to original_max/high_freq_factor.
func RopeInvFreq(d int, theta float64, maxPos int, s *RopeScaling, seqLen int) []float32 {
	switch s.Kind() {
	case "linear":
		inv := kern.RopeInvFreq(d, theta)
		for j := range inv {
			inv[j] /= float32(s.Factor)
		}
		return inv
	case "dynamic":
		if seqLen > maxPos {
			f := float32(s.Factor)
			r := f*float32(seqLen)/float32(maxPos) - (f - 1)
			base := float32(theta) * float32(math.Pow(float64(r), float64(d)/float64(d-2)))
			return kern.RopeInvFreq(d, float64(base))
		}
		return kern.RopeInvFreq(d, theta)
	case "llama3":
		inv := kern.RopeInvFreq(d, theta)
		f := float32(s.Factor)
		lo, hi := float32(s.LowFreqFactor), float32(s.HighFreqFactor)
		old := float32(s.OriginalMaxPositionEmbeddings)
		lowWave, highWave := old/lo, old/hi
		for j, v := range inv {
			wave := float32(2*math.Pi) / v
			scaled := v
			if wave > lowWave {
				scaled = v / f
			}
			if !(wave < highWave) && !(wave > lowWave) {
				smooth := (old/wave - lo) / (hi - lo)
				scaled = (1-smooth)*scaled/f + smooth*scaled
			}
			inv[j] = scaled
		}
		return inv
	}
	return kern.RopeInvFreq(d, theta)
}

// MarshalJSON writes config.json. A family whose HF config defaults
// sliding_window to 4096 gets an explicit null when it has none, so the
// file reads back the same here and in transformers.
func (c Config) MarshalJSON() ([]byte, error) {
	type plain Config
	b, err := json.Marshal(plain(c))
	if err != nil || c.SlidingWindow != 0 || (c.ModelType != "mistral" && !c.Gemma()) {
		return b, err
	}
	return append(b[:len(b)-1], []byte(`,"sliding_window":null}`)...), nil
}
