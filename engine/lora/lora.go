// Package lora holds LoRA adapters: their configuration (PEFT's field
// names), initialisation as PEFT does it (A uniform in ±1/√in, B zero),
// the choice of target modules by name or pattern, and saving and loading
// in PEFT's format (adapter_config.json + adapter_model.safetensors).
package lora

import (
	"fmt"
	"math"
	"math/rand/v2"
	"regexp"
	"sort"
	"strings"

	"lens/engine/model"
)

// Config is a LoRA configuration with PEFT's meaning for every field.
type Config struct {
	Rank    int      `json:"r"`
	Alpha   float64  `json:"lora_alpha"`
	Dropout float64  `json:"lora_dropout"`
	Targets []string `json:"target_modules"`
	RSLoRA  bool     `json:"use_rslora"`
}

// DefaultConfig is PEFT's default rank and alpha on the attention query and
// value projections.
func DefaultConfig() Config {
	return Config{Rank: 8, Alpha: 8, Targets: []string{"q_proj", "v_proj"}}
}

// Scale is α/r, or α/√r with rsLoRA.
func (c Config) Scale() float64 {
	if c.RSLoRA {
		return c.Alpha / math.Sqrt(float64(c.Rank))
	}
	return c.Alpha / float64(c.Rank)
}

// Validate checks the fields that do not depend on a model.
func (c Config) Validate() error {
	if c.Rank <= 0 {
		return fmt.Errorf("lora field r = %d: must be positive", c.Rank)
	}
	if c.Alpha <= 0 || math.IsNaN(c.Alpha) || math.IsInf(c.Alpha, 0) {
		return fmt.Errorf("lora field lora_alpha = %g: must be positive", c.Alpha)
	}
	if c.Dropout < 0 || c.Dropout >= 1 || math.IsNaN(c.Dropout) {
		return fmt.Errorf("lora field lora_dropout = %g: must be in [0, 1)", c.Dropout)
	}
	if len(c.Targets) == 0 {
		return fmt.Errorf("lora field target_modules is empty")
	}
	return nil
}

// Modules resolves the target list against a model's linear modules as
// PEFT does: a name matches a module whose path ends in ".name"; a single
// entry containing regexp syntax must match the whole path; "all-linear"
// takes every linear layer (never lm_head). An entry that matches nothing
// is an error naming it.
func (c Config) Modules(cfg model.Config) ([]string, error) {
	all := cfg.LinearModules()
	picked := map[string]bool{}
	for _, t := range c.Targets {
		n := 0
		switch {
		case t == "all-linear":
			for _, m := range all {
				picked[m] = true
			}
			n = len(all)
		case strings.ContainsAny(t, `.*+?[]()|\^$`):
			re, err := regexp.Compile("^(?:" + t + ")$")
			if err != nil {
				return nil, fmt.Errorf("lora field target_modules: pattern %q: %w", t, err)
			}
			for _, m := range all {
				if re.MatchString(m) {
					picked[m] = true
					n++
				}
			}
		default:
			for _, m := range all {
				if strings.HasSuffix(m, "."+t) {
					picked[m] = true
					n++
				}
			}
		}
		if n == 0 {
			return nil, fmt.Errorf("lora field target_modules: %q matches no linear module (known: %s)", t,
				strings.Join(append(append([]string{}, model.AttnModules...), model.MLPModules...), ", "))
		}
	}
	out := make([]string, 0, len(picked))
	for m := range picked {
		out = append(out, m)
	}
	sort.Strings(out)
	return out, nil
}

// Adapter is a set of LoRA modules for one base model.
type Adapter struct {
	Config  Config
	Base    string // base_model_name_or_path
	Modules []string
	A, B    map[string]*model.Tensor
}

// New creates an adapter for m: for each target module, A (r×in) uniform
// in ±1/√in (PEFT's kaiming_uniform_(a=√5)) and B (out×r) zero. Each module
// draws from its own stream seeded by (seed, module), so adapters of
// different ranks never share their first rows.
func New(m *model.Model, c Config, seed uint64) (*Adapter, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	mods, err := c.Modules(m.Config)
	if err != nil {
		return nil, err
	}
	ad := &Adapter{Config: c, Modules: mods, A: map[string]*model.Tensor{}, B: map[string]*model.Tensor{}}
	for _, mod := range mods {
		w := m.Weights[mod+".weight"]
		out, in := w.Shape[0], w.Shape[1]
		if c.Rank > min(out, in) {
			return nil, fmt.Errorf("lora field r = %d is larger than module %s (%d×%d)", c.Rank, mod, out, in)
		}
		rng := rand.New(rand.NewPCG(seed, streamOf(mod, c.Rank)))
		a := &model.Tensor{Shape: []int{c.Rank, in}, Data: make([]float32, c.Rank*in)}
		bound := 1 / math.Sqrt(float64(in))
		for i := range a.Data {
			a.Data[i] = float32((rng.Float64()*2 - 1) * bound)
		}
		ad.A[mod] = a
		ad.B[mod] = &model.Tensor{Shape: []int{out, c.Rank}, Data: make([]float32, out*c.Rank)}
	}
	return ad, nil
}

func streamOf(module string, rank int) uint64 {
	h := uint64(14695981039346656037)
	for _, b := range []byte(fmt.Sprintf("%s/r%d", module, rank)) {
		h ^= uint64(b)
		h *= 1099511628211
	}
	return h
}

// GraphAdapters returns the modules in the form model.Build takes.
func (a *Adapter) GraphAdapters() map[string]model.Adapter {
	out := make(map[string]model.Adapter, len(a.Modules))
	s := a.Config.Scale()
	for _, m := range a.Modules {
		out[m] = model.Adapter{A: a.A[m], B: a.B[m], Scale: s}
	}
	return out
}

// Clone returns a deep copy.
func (a *Adapter) Clone() *Adapter {
	c := &Adapter{Config: a.Config, Base: a.Base, Modules: append([]string(nil), a.Modules...),
		A: map[string]*model.Tensor{}, B: map[string]*model.Tensor{}}
	c.Config.Targets = append([]string(nil), a.Config.Targets...)
	for _, m := range a.Modules {
		c.A[m] = &model.Tensor{Shape: append([]int(nil), a.A[m].Shape...), Data: append([]float32(nil), a.A[m].Data...)}
		c.B[m] = &model.Tensor{Shape: append([]int(nil), a.B[m].Shape...), Data: append([]float32(nil), a.B[m].Data...)}
	}
	return c
}

// Merge returns a copy of base with every adapted weight replaced by
// W + s·B·A.
func (a *Adapter) Merge(base *model.Model) *model.Model {
	m := base.Clone()
	s := float32(a.Config.Scale())
	for _, mod := range a.Modules {
		w := m.Weights[mod+".weight"]
		out, in := w.Shape[0], w.Shape[1]
		A, B, r := a.A[mod].Data, a.B[mod].Data, a.Config.Rank
		for i := range out {
			for k := range r {
				bik := s * B[i*r+k]
				if bik == 0 {
					continue
				}
				row, arow := w.Data[i*in:(i+1)*in], A[k*in:(k+1)*in]
				for j := range row {
					row[j] += bik * arow[j]
				}
			}
		}
	}
	return m
}
