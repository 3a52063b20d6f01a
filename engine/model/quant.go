package model

import (
	"fmt"
	"slices"
	"strings"

	"lens/engine/nn"
	"lens/engine/quant"
)

// Base weight forms Quantized accepts.
const (
	QuantNF4   = "nf4"    // 4-bit NormalFloat, blocks of 64 (bitsandbytes)
	QuantNF4DQ = "nf4-dq" // NF4 with double-quantized block scales
	QuantBF16  = "bf16"   // bfloat16, float32 compute
)

// QuantKinds lists the accepted forms, for error messages.
var QuantKinds = []string{QuantNF4, QuantNF4DQ, QuantBF16}

// Quantized returns a model sharing m's other weights whose linear-module
// weights (the q/k/v/o and MLP projections, what QLoRA quantizes) are held
// in the compact form kind and widened to float32 per use by the graph,
// and whose token embedding and untied head are held in bfloat16 whatever
// kind is (as QLoRA keeps them in 16 bits: bitsandbytes quantizes linear
// layers only), widened a row or a vocabulary block at a time. Norms and
// biases stay float32. m is left as it was. The form is a pure function of
// the float32 weights and kind, so a run that records kind (base_quant)
// rebuilds the same base on resume.
func (m *Model) Quantized(kind string) (*Model, error) {
	if m.Quant != "" {
		return nil, fmt.Errorf("quantize %s: the model is already held as %s", kind, m.Quant)
	}
	if !slices.Contains(QuantKinds, kind) {
		return nil, fmt.Errorf("base_quant %q: want one of %s", kind, strings.Join(QuantKinds, ", "))
	}
	q := &Model{Config: m.Config, Weights: make(map[string]*Tensor, len(m.Weights)), Packed: map[string]nn.Packed{}, Quant: kind}
	for n, t := range m.Weights {
		q.Weights[n] = t
	}
	for _, name := range quantNames(m.Config) {
		t, ok := m.Weights[name]
		if !ok {
			return nil, fmt.Errorf("quantize %s: weight %s is missing", kind, name)
		}
		var (
			p   nn.Packed
			err error
		)
		switch {
		case name == EmbedName || name == HeadName:
			p, err = quant.ToBF16(t.Data, t.Shape)
		case kind == QuantNF4, kind == QuantNF4DQ:
			p, err = quant.QuantizeNF4(t.Data, t.Shape, kind == QuantNF4DQ)
		case kind == QuantBF16:
			p, err = quant.ToBF16(t.Data, t.Shape)
		default:
			return nil, fmt.Errorf("base_quant %q: want one of %s", kind, strings.Join(QuantKinds, ", "))
		}
		if err != nil {
			return nil, fmt.Errorf("quantize %s: %w", name, err)
		}
		q.Packed[name] = p
		q.Weights[name] = &Tensor{Shape: t.Shape}
	}
	return q, nil
}

// quantNames lists the weights a quantized base holds packed: the linear
// modules' and the vocabulary tables.
func quantNames(c Config) []string {
	names := []string{EmbedName}
	if !c.TieWordEmbeddings {
		names = append(names, HeadName)
	}
	for _, path := range c.LinearModules() {
		names = append(names, path+".weight")
	}
	return names
}
