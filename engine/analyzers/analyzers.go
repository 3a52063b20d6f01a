// Package analyzers turns stored runs into findings: each analyzer reads
// a run's metrics and collected records back from the store (post hoc, or
// while it runs), applies the measures of engine/analyze, and returns
// values for scripts and tables plus sentences for people. Analyzers are
// pluggable through a Registry, from Go and from Starlark.
package analyzers

import (
	"fmt"

	"lens/engine/registry"
	"lens/kv"
)

// Result is what an analyzer found.
type Result struct {
	Analyzer string         `json:"analyzer"`
	Values   map[string]any `json:"values"`
	Findings []string       `json:"findings"`
}

func newResult(name string) *Result {
	return &Result{Analyzer: name, Values: map[string]any{}}
}

func (r *Result) say(format string, args ...any) {
	r.Findings = append(r.Findings, fmt.Sprintf(format, args...))
}

// Analyzer examines one run (or, for comparisons, several).
type Analyzer interface {
	Name() string
	Analyze(st *kv.Store, runIDs ...string) (*Result, error)
}

// Func adapts a function to an Analyzer.
type Func struct {
	AName string
	Runs  int // number of runs it takes
	Fn    func(st *kv.Store, runIDs ...string) (*Result, error)
}

// Name is the analyzer's name.
func (f *Func) Name() string { return f.AName }

// Analyze checks the run count and calls Fn.
func (f *Func) Analyze(st *kv.Store, runIDs ...string) (*Result, error) {
	if f.Runs > 0 && len(runIDs) != f.Runs {
		return nil, fmt.Errorf("analyzer %s takes %d run(s), got %d", f.AName, f.Runs, len(runIDs))
	}
	r, err := f.Fn(st, runIDs...)
	if err != nil {
		return nil, fmt.Errorf("analyzer %s: %w", f.AName, err)
	}
	if r.Analyzer == "" {
		r.Analyzer = f.AName
	}
	return r, nil
}

// Registration describes an analyzer kind.
type Registration struct {
	Analyzer Analyzer
	Doc      string
	Consumes string // what it reads: metrics and collector records
}

// Registry maps names to analyzers.
type Registry struct{ m registry.Map[Registration] }

// NewRegistry returns an empty registry.
func NewRegistry() *Registry { return &Registry{} }

// Register adds or replaces an analyzer.
func (r *Registry) Register(reg Registration) { r.m.Set(reg.Analyzer.Name(), reg) }

// Get returns the named analyzer.
func (r *Registry) Get(name string) (Registration, bool) { return r.m.Get(name) }

// Names lists the registered analyzers.
func (r *Registry) Names() []string { return r.m.Names() }

// Run runs the named analyzer.
func (r *Registry) Run(name string, st *kv.Store, runIDs ...string) (*Result, error) {
	reg, ok := r.Get(name)
	if !ok {
		return nil, fmt.Errorf("analyzer %q is not registered (known: %v)", name, r.Names())
	}
	return reg.Analyzer.Analyze(st, runIDs...)
}

// Default holds the built-in analyzers.
var Default = NewRegistry()

func init() {
	for _, reg := range []Registration{
		{&Func{AName: "gradient", Runs: 1, Fn: gradient}, "spikes (rolling median + k·MAD), vanishing steps, consistency (mean successive cosine), gradient noise scale B_simple (McCandlish et al. 2018)", "grad_norm metric; adapter_grads"},
		{&Func{AName: "lora", Runs: 1, Fn: loraWeights}, "per module and layer: effective rank (Roy & Vetterli), stable rank, rank utilisation, condition number, A/B balance, over time", "adapter_weights"},
		{&Func{AName: "convergence", Runs: 1, Fn: convergence}, "bias-corrected EMA, plateau from the series' own noise, fitted L(t) = L∞ + a·t^−b with its uncertainty", "loss metric"},
		{&Func{AName: "checkpoint", Runs: 1, Fn: checkpoints}, "best checkpoint, overfitting (train/eval divergence), Prechelt early-stopping criteria, gradient and weight stability, loss smoothness", "metrics; checkpoints; adapter_grads"},
		{&Func{AName: "activation", Runs: 1, Fn: activation}, "activation norm growth per layer, near-zero units, LoRA contribution ratio over training", "activations; lora_activations"},
		{&Func{AName: "similarity", Runs: 2, Fn: similarity}, "between two runs' final adapters: subspace similarity φ (Hu et al. 2021 §7) against the random baseline, ΔW cosine, per module", "checkpoints"},
	} {
		Default.Register(reg)
	}
}
