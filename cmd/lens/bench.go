package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"hash/crc32"
	"io"
	"maps"
	"math"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"slices"
	"strconv"
	"strings"
	"time"

	"lens/engine/accel"
	"lens/engine/collect"
	"lens/engine/device"
	"lens/engine/gemm"
	"lens/engine/lora"
	"lens/engine/memstat"
	"lens/engine/model"
	"lens/engine/nn"
	lquant "lens/engine/quant"
	"lens/engine/train"
	"lens/kv"
	"lens/testdata/torchref"
)

// benchSize is one model shape of lens bench with the run settings it is
// timed at. tiny, small and medium are the byte-level shapes of the
// performance issue (LoRA r=8 on q,k,v,o, batch 4×256); 135m and 1b are
// SmolLM2-135M's and Llama-3.2-1B's shapes (real vocabularies, grouped
// KV heads, LoRA r=16 on every linear module, batch 1×1024); mini has the
// 1b's features (grouped KV heads, llama3 rope_scaling, every module, one
// long row) at a size a test runs in seconds.
type benchSize struct {
	Name                         string
	Hidden, Layers, Heads, Inter int
	KVHeads, HeadDim, Vocab      int
	MaxPos                       int
	RopeTheta                    float64
	RopeScaling                  *model.RopeScaling
	Batch, Seq, Rank             int
	Alpha                        float64
	Targets                      []string
	// Defaults of --steps, --rounds and warm-up steps; Big shapes also
	// skip the collectors' run and PyTorch's second thread split, which
	// would each cost minutes.
	Steps, Rounds, Warmup int
	Big                   bool
}

var (
	attnTargets = []string{"q_proj", "k_proj", "v_proj", "o_proj"}
	allTargets  = []string{"q_proj", "k_proj", "v_proj", "o_proj", "gate_proj", "up_proj", "down_proj"}
	// Llama-3.2-1B's config.json rope_scaling.
	llama3Rope = &model.RopeScaling{RopeType: "llama3", Factor: 32, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 8192}
)

func smallShape(name string, hidden, layers, heads, inter int) benchSize {
	return benchSize{Name: name, Hidden: hidden, Layers: layers, Heads: heads, KVHeads: heads, Inter: inter, Vocab: 256,
		MaxPos: 256, RopeTheta: 10000, Batch: 4, Seq: 256, Rank: 8, Alpha: 16, Targets: attnTargets, Steps: 30, Rounds: 3, Warmup: 10}
}

var benchSizes = []benchSize{
	smallShape("tiny", 128, 4, 4, 344),
	smallShape("small", 256, 6, 4, 688),
	smallShape("medium", 512, 8, 8, 1376),
	{Name: "mini", Hidden: 64, Layers: 2, Heads: 4, KVHeads: 2, HeadDim: 16, Inter: 160, Vocab: 1000, MaxPos: 16384,
		RopeTheta: 5e5, RopeScaling: &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 32},
		Batch: 1, Seq: 128, Rank: 4, Alpha: 8, Targets: allTargets, Steps: 2, Rounds: 1, Warmup: 1, Big: true},
	// HuggingFaceTB/SmolLM2-135M's config.json.
	{Name: "135m", Hidden: 576, Layers: 30, Heads: 9, KVHeads: 3, HeadDim: 64, Inter: 1536, Vocab: 49152, MaxPos: 8192,
		RopeTheta: 1e5, Batch: 1, Seq: 1024, Rank: 16, Alpha: 32, Targets: allTargets, Steps: 2, Rounds: 1, Warmup: 1, Big: true},
	// meta-llama/Llama-3.2-1B's config.json.
	{Name: "1b", Hidden: 2048, Layers: 16, Heads: 32, KVHeads: 8, HeadDim: 64, Inter: 8192, Vocab: 128256, MaxPos: 131072,
		RopeTheta: 5e5, RopeScaling: llama3Rope, Batch: 1, Seq: 1024, Rank: 16, Alpha: 32, Targets: allTargets, Steps: 2, Rounds: 1, Warmup: 1, Big: true},
}

func sizeNames() string {
	var n []string
	for _, s := range benchSizes {
		n = append(n, s.Name)
	}
	return strings.Join(n, ", ")
}

// benchVariant is the memory options a bench row trains with; PyTorch's
// side does the equivalent (bench.py).
type benchVariant struct {
	Checkpointing bool
	Quant         string // train.Config.BaseQuant: "", bf16, nf4, nf4-dq
	HeadChunk     int
}

func (v benchVariant) String() string {
	var p []string
	if v.Quant != "" {
		p = append(p, v.Quant)
	}
	if v.Checkpointing {
		p = append(p, "checkpointing")
	}
	if v.HeadChunk > 0 {
		p = append(p, fmt.Sprintf("head chunk %d", v.HeadChunk))
	}
	if len(p) == 0 {
		return "float32"
	}
	return strings.Join(p, ", ")
}

// args are the flags that select v, for lens's child and bench.py alike.
func (v benchVariant) args() []string {
	var a []string
	if v.Checkpointing {
		a = append(a, "--checkpointing")
	}
	if v.Quant != "" {
		a = append(a, "--quant", v.Quant)
	}
	if v.HeadChunk > 0 {
		a = append(a, "--head-chunk", fmt.Sprint(v.HeadChunk))
	}
	return a
}

// benchRow is one line of lens bench's table and JSON.
type benchRow struct {
	Size            string  `json:"size"`
	Variant         string  `json:"variant"`
	Params          int     `json:"params"`
	Batch           int     `json:"batch"`
	Seq             int     `json:"seq"`
	Steps           int     `json:"steps"` // timed steps per measurement, after the warm-up
	LensTokensPerS  float64 `json:"lens_tokens_per_s"`
	TorchTokensPerS float64 `json:"torch_tokens_per_s"`
	Ratio           float64 `json:"ratio"`
	LensGFlops      float64 `json:"lens_gflops"`
	SgemmGFlops     float64 `json:"sgemm_gflops"`
	CeilingShare    float64 `json:"ceiling_share"` // lens_gflops / sgemm_gflops
	// ProductGFlops is the speed of the step's matrix products alone (their
	// flops over the time inside them, CPU only), ProductFrac that time's
	// share of the step; both from the fastest lens round.
	ProductGFlops   float64 `json:"product_gflops,omitempty"`
	ProductFrac     float64 `json:"product_frac,omitempty"`
	CollectOverhead float64 `json:"collector_overhead"`        // inside the collectors' hooks, mean over the rounds
	CollectBlocks   float64 `json:"collector_overhead_blocks"` // whole 10-step blocks with vs without them
	LensPeakRSS     int64   `json:"lens_peak_rss_bytes"`
	TorchPeakRSS    int64   `json:"torch_peak_rss_bytes"`
	// The losses of every step of the first lens and PyTorch
	// measurements, warm-up included: both sides build the same weights
	// and tokens (benchFill), so they agree to rounding.
	LensLosses      []float64 `json:"lens_losses,omitempty"`
	TorchLosses     []float64 `json:"torch_losses,omitempty"`
	GemmKernel      string    `json:"gemm_kernel"`
	TorchBLAS       string    `json:"torch_blas,omitempty"`
	TorchThreads    string    `json:"torch_threads,omitempty"` // the thread split of PyTorch's best run
	TorchError      string    `json:"torch_error,omitempty"`
	Device          string    `json:"device"`                 // cpu, or the accelerator lens trained on
	TorchDevice     string    `json:"torch_device,omitempty"` // the GPU PyTorch ran on
	TorchPeakDevice int64     `json:"torch_peak_device_bytes,omitempty"`
	// Steal is the share of CPU time the hypervisor took from this machine
	// while the size ran (/proc/stat): above a few percent, timings are
	// not to be trusted. Load is the 1-minute load average before it ran.
	Steal float64 `json:"cpu_steal"`
	Load  float64 `json:"load_average"`
}

func (s benchSize) config() model.Config {
	c := model.Tiny()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize = s.Hidden, s.Layers, s.Heads, s.KVHeads, s.Inter
	c.HeadDim, c.VocabSize, c.MaxPositionEmbeddings, c.RopeTheta, c.RopeScaling = s.HeadDim, s.Vocab, s.MaxPos, s.RopeTheta, s.RopeScaling
	return c
}

func (s benchSize) lora() lora.Config {
	return lora.Config{Rank: s.Rank, Alpha: s.Alpha, Targets: s.Targets}
}

// stepFlops estimates the floating-point work one LoRA step needs per
// token: forward and input-gradient products of every linear layer (2+2
// flops per weight; frozen weights get no weight gradient), the LoRA
// products (forward, input and weight gradients: 6 per adapter weight),
// and the causal half of the attention products (forward 2·T·q-width,
// backward twice that). lens computes attention in 64-row blocks, so it
// does a little more than counted here. Activation checkpointing's second
// forward is not counted: the flops are the step's, whatever it recomputes.
func stepFlops(s benchSize, T int) float64 {
	c := s.config()
	h, in, d := float64(c.HiddenSize), float64(c.IntermediateSize), float64(c.Head())
	q, kv := float64(c.NumAttentionHeads)*d, float64(c.NumKeyValueHeads)*d
	shapes := map[string][2]float64{"q_proj": {h, q}, "k_proj": {h, kv}, "v_proj": {h, kv}, "o_proj": {q, h},
		"gate_proj": {h, in}, "up_proj": {h, in}, "down_proj": {in, h}}
	var lin, ad float64
	for name, io := range shapes {
		lin += io[0] * io[1]
		if slices.Contains(s.Targets, name) {
			ad += float64(s.Rank) * (io[0] + io[1])
		}
	}
	L := float64(c.NumHiddenLayers)
	return 4*(L*lin+float64(c.VocabSize)*h) + 6*L*ad + L*6*float64(T)*q
}

// mix32 is a 32-bit integer hash (Mueller's), written so that bench.py
// computes it with int64 tensor ops and the same result.
func mix32(x uint32) uint32 {
	x = (x>>16 ^ x) * 0x45d9f3b
	x = (x>>16 ^ x) * 0x45d9f3b
	return x>>16 ^ x
}

// benchFill writes values off..off+len(dst) of the bench's random weight
// name: uniform in ±bound from a hash of (CRC-32 of name, index).
// bench.py's fill is the same function, so lens and PyTorch train the same
// model without either reading the other's files; every step is in
// float64 and exact or correctly rounded, so the two agree bit for bit.
func benchFill(name string, off int, dst []float32, bound float64) {
	seed := crc32.ChecksumIEEE([]byte(name))
	for i := range dst {
		h := mix32(mix32(uint32(off+i)) ^ seed)
		dst[i] = float32(((float64(h)+0.5)/4294967296*2 - 1) * bound)
	}
}

// benchTokens are the ids of stream name ("inputs", "targets"), by the
// same hash as benchFill.
func benchTokens(name string, n, vocab int) []int32 {
	seed := crc32.ChecksumIEEE([]byte(name))
	out := make([]int32, n)
	for i := range out {
		out[i] = int32(mix32(mix32(uint32(i))^seed) % uint32(vocab))
	}
	return out
}

// weightBound makes benchFill's uniform weights as wide as HF's
// normal(0, 0.02) initialisation: the same variance.
var weightBound = 0.02 * math.Sqrt(3)

// benchModel builds the bench's model of config c with its base held as
// quant ("" for float32). Packed weights are made weight by weight, so a
// quantized 1B base never exists in float32: a vocabulary table is
// rounded to bf16 a piece at a time, an NF4 weight is quantized from one
// float32 buffer reused for all. Which weights are packed, and how, is
// Model.Quantized's rule (the embedding and head in bf16, the linear
// modules as quant), checked by TestBenchModelIsQuantized.
// (model.NewQuantized builds the same way from model.New's random
// stream, which bench.py could not reproduce.)
func benchModel(c model.Config, quant string) (*model.Model, error) {
	if err := c.Validate(); err != nil {
		return nil, err
	}
	m := &model.Model{Config: c, Weights: map[string]*model.Tensor{}}
	packed := map[string]bool{}
	if quant != "" {
		if !slices.Contains(model.QuantKinds, quant) {
			return nil, usagef("--quant %q: want one of %s", quant, strings.Join(model.QuantKinds, ", "))
		}
		m.Packed, m.Quant = map[string]nn.Packed{}, quant
		for _, p := range c.LinearModules() {
			packed[p+".weight"] = true
		}
		packed["model.embed_tokens.weight"] = true
		if !c.TieWordEmbeddings {
			packed["lm_head.weight"] = true
		}
	}
	const piece = 1 << 20
	var wide []float32 // one float32 weight or piece at a time
	shapes := c.Shapes()
	for _, name := range slices.Sorted(maps.Keys(shapes)) {
		shape := shapes[name]
		n := model.Size(shape)
		var (
			p   nn.Packed
			err error
		)
		switch {
		case len(shape) == 1: // norm weights (a Llama has no biases)
			t := &model.Tensor{Shape: shape, Data: make([]float32, n)}
			for i := range t.Data {
				t.Data[i] = 1
			}
			m.Weights[name] = t
			continue
		case !packed[name]:
			t := &model.Tensor{Shape: shape, Data: make([]float32, n)}
			benchFill(name, 0, t.Data, weightBound)
			m.Weights[name] = t
			continue
		case quant == model.QuantBF16 || name == "model.embed_tokens.weight" || name == "lm_head.weight":
			bits := make([]uint16, n)
			for off := 0; off < n; off += piece {
				wide = slices.Grow(wide[:0], min(piece, n-off))[:min(piece, n-off)]
				benchFill(name, off, wide, weightBound)
				lquant.RoundBF16(bits[off:], wide)
			}
			p, err = lquant.BF16FromBits(bits, shape)
		default: // nf4, nf4-dq
			wide = slices.Grow(wide[:0], n)[:n]
			benchFill(name, 0, wide, weightBound)
			p, err = lquant.QuantizeNF4(wide, shape, quant == model.QuantNF4DQ)
		}
		if err != nil {
			return nil, fmt.Errorf("bench model: pack %s: %w", name, err)
		}
		m.Packed[name], m.Weights[name] = p, &model.Tensor{Shape: shape}
	}
	return m, nil
}

// benchAdapter is lora.New's adapter with A filled by benchFill (PEFT's
// bound, ±1/√in) so that bench.py starts from the same adapter; B is zero.
func benchAdapter(m *model.Model, c lora.Config) (*lora.Adapter, error) {
	ad, err := lora.New(m, c, 1)
	if err != nil {
		return nil, err
	}
	for _, mod := range ad.Modules {
		a := ad.A[mod]
		benchFill(mod+".lora_A", 0, a.Data, 1/math.Sqrt(float64(a.Shape[1])))
	}
	return ad, nil
}

// fixedTokens feeds the same batch every step: the bench's inputs and
// targets (benchTokens), which bench.py feeds too.
type fixedTokens struct{ in, tg []int32 }

func (r *fixedTokens) Next(in, tg []int32) error {
	copy(in, r.in)
	copy(tg, r.tg)
	return nil
}
func (r *fixedTokens) State() (json.RawMessage, error) { return json.RawMessage("{}"), nil }
func (r *fixedTokens) Restore(json.RawMessage) error   { return nil }

// benchOne times LoRA steps of one size in this process, optionally with
// every collector at its default frequency, and reports tokens/s, the
// losses and the process's peak RSS.
//
// With collectors, drift on a shared machine would swamp a few percent
// between two processes, so the overhead is measured in this one: blocks
// of 10 steps (one collection each) alternate with blocks of 10 where the
// same hooks are switched off, and the overhead is the ratio of the two
// blocks' total times; tokens/s is then the blocks with collectors.
func benchOne(s benchSize, v benchVariant, steps, warmup int, dev string, collectors bool, cpuProfile string) (childResult, error) {
	m, err := benchModel(s.config(), v.Quant)
	if err != nil {
		return childResult{}, err
	}
	ad, err := benchAdapter(m, s.lora())
	if err != nil {
		return childResult{}, err
	}
	n := s.Batch * s.Seq
	data := &fixedTokens{benchTokens("inputs", n, s.Vocab), benchTokens("targets", n, s.Vocab)}
	tr, err := train.New(m, ad, data, nil, train.Config{Steps: 1 << 30, BatchSize: s.Batch, SeqLen: s.Seq, LR: 1e-3,
		Schedule: "constant", BaseQuant: v.Quant, HeadChunk: v.HeadChunk, Checkpointing: v.Checkpointing})
	if err != nil {
		return childResult{}, err
	}
	defer tr.Close()
	if dev != device.CPU {
		d, err := accel.Open(dev)
		if err != nil {
			return childResult{}, err
		}
		if err := tr.UseDevice(d); err != nil {
			return childResult{}, err
		}
	}
	var r childResult
	step := func() error {
		info, err := tr.TrainStep()
		if err != nil {
			return err
		}
		if len(r.Losses) < warmup+steps {
			r.Losses = append(r.Losses, info.Loss)
		}
		return nil
	}
	on := true
	var spent time.Duration             // inside the collectors' hooks
	each := map[string]*time.Duration{} // the same, by collector
	if collectors {
		dir, err := os.MkdirTemp("", "lens-bench")
		if err != nil {
			return childResult{}, err
		}
		defer os.RemoveAll(dir)
		st, err := kv.Open(dir, kv.Options{})
		if err != nil {
			return childResult{}, err
		}
		defer st.Close()
		id := st.NewRunID()
		if err := st.CreateRun(kv.RunMeta{ID: id, Name: "bench"}); err != nil {
			return childResult{}, err
		}
		probe := &collect.Probe{Batch: 2}
		for range 2 * s.Seq {
			probe.Inputs = append(probe.Inputs, 1)
			probe.Targets = append(probe.Targets, 2)
		}
		for _, name := range []string{"adapter_weights", "adapter_grads", "lora_activations", "activations"} {
			c, err := collect.Default.Build(collect.Spec{Name: name, Every: 10})
			if err != nil {
				return childResult{}, err
			}
			each[name] = new(time.Duration)
			tr.AddHooks(switchable(c.Hooks(tr, collect.StoreSink{Store: st, RunID: id}, probe), &on, &spent, each[name]))
		}
		// The probe graph is built at the first collection (step 10):
		// overhead is then the steady-state cost at the default frequency.
		warmup = max(warmup, 10)
	}
	// Warm up buffers and caches.
	for range warmup {
		if err := step(); err != nil {
			return childResult{}, err
		}
	}
	if cpuProfile != "" {
		f, err := os.Create(cpuProfile)
		if err != nil {
			return childResult{}, fmt.Errorf("cpu profile: %w", err)
		}
		defer f.Close()
		if err := pprof.StartCPUProfile(f); err != nil {
			return childResult{}, fmt.Errorf("cpu profile %s: %w", cpuProfile, err)
		}
		defer pprof.StopCPUProfile()
	}
	if !collectors {
		gemm.StartMeter()
		start := time.Now()
		for range steps {
			if err := step(); err != nil {
				return childResult{}, err
			}
		}
		el := time.Since(start).Seconds()
		busy, flops := gemm.StopMeter()
		r.TokensPerS, r.PeakRSS = float64(steps*n)/el, memstat.PeakRSS()
		if busy > 0 && dev == device.CPU {
			r.ProductGFlops, r.ProductFrac = flops/busy.Seconds()/1e9, busy.Seconds()/el
		}
		return r, nil
	}
	var with, without time.Duration
	spent = 0
	for _, d := range each {
		*d = 0
	}
	for b := range 2 * max(2, steps/10) {
		on = b%2 == 1
		start := time.Now()
		for range 10 {
			if err := step(); err != nil {
				return childResult{}, err
			}
		}
		if on {
			with += time.Since(start)
		} else {
			without += time.Since(start)
		}
	}
	blocks := max(2, steps/10) * 10
	cost := collectorCost{InHooks: spent.Seconds() / without.Seconds(), Blocks: with.Seconds()/without.Seconds() - 1,
		ByCollector: map[string]float64{}}
	for name, d := range each {
		cost.ByCollector[name] = d.Seconds() / without.Seconds()
	}
	r.TokensPerS, r.Overhead, r.PeakRSS = float64(blocks*n)/with.Seconds(), cost, memstat.PeakRSS()
	return r, nil
}

// collectorCost is the collectors' cost as a fraction of step time: the
// time spent inside their hooks (what they do themselves: probe forwards,
// statistics, store writes), and the difference between whole blocks with
// and without them, which also catches indirect costs (garbage, the
// store's background work) but carries the machine's drift.
type collectorCost struct {
	InHooks     float64            `json:"in_hooks"`
	Blocks      float64            `json:"blocks"`
	ByCollector map[string]float64 `json:"by_collector,omitempty"` // in_hooks split by collector (the first to ask pays the probe forward)
}

// switchable makes h do nothing while *on is false and adds the time its
// calls take to *spent and *mine.
func switchable(h train.Hooks, on *bool, spent, mine *time.Duration) train.Hooks {
	wrap := func(f func(*train.Trainer, *train.StepInfo) error) func(*train.Trainer, *train.StepInfo) error {
		if f == nil {
			return nil
		}
		return func(t *train.Trainer, s *train.StepInfo) error {
			if !*on {
				return nil
			}
			start := time.Now()
			defer func() {
				d := time.Since(start)
				*spent += d
				*mine += d
			}()
			return f(t, s)
		}
	}
	return train.Hooks{AfterBackward: wrap(h.AfterBackward), AfterStep: wrap(h.AfterStep), AfterEval: h.AfterEval}
}

// cpuSteal reads the steal and total jiffies of all CPUs from /proc/stat
// (0, 0 where unavailable).
func cpuSteal() (steal, total uint64) {
	b, err := os.ReadFile("/proc/stat")
	if err != nil {
		return 0, 0
	}
	line, _, _ := strings.Cut(string(b), "\n")
	f := strings.Fields(line)
	if len(f) < 9 || f[0] != "cpu" {
		return 0, 0
	}
	for i, v := range f[1:] {
		n, _ := strconv.ParseUint(v, 10, 64)
		if i < 8 { // user … steal; guest time is already in user
			total += n
		}
		if i == 7 {
			steal = n
		}
	}
	return steal, total
}

// sgemmGFlops measures the 512³ single-precision matrix product, best of
// 5 rounds of 10. Each lens child measures it right after its timed steps,
// and a row's ceiling is the best of its children, so that the ceiling and
// the step it is compared with see the same load on a shared machine.
func sgemmGFlops() float64 {
	const n, reps = 512, 10
	a, b, c := make([]float32, n*n), make([]float32, n*n), make([]float32, n*n)
	for i := range a {
		a[i], b[i] = float32(i%7)*0.1, float32(i%5)*0.1
	}
	gemm.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
	best := 0.0
	for range 5 {
		start := time.Now()
		for range reps {
			gemm.Sgemm(false, false, n, n, n, 1, a, n, b, n, 0, c, n)
		}
		best = max(best, 2*n*n*n*reps/time.Since(start).Seconds()/1e9)
	}
	return best
}

// ceilingGFlops is the matrix-product ceiling the step is compared with:
// the CPU sgemm at 512³, or on an accelerator its Gemm kernel at 2048³.
func ceilingGFlops(dev string) (float64, error) {
	if dev == device.CPU {
		return sgemmGFlops(), nil
	}
	d, err := accel.Open(dev)
	if err != nil {
		return 0, err
	}
	defer d.Close()
	const n, reps = 2048, 10
	var bufs [3]accel.Buf
	for i := range bufs {
		if bufs[i], err = d.Alloc(n * n); err != nil {
			return 0, err
		}
		defer d.Free(bufs[i])
	}
	// Download waits for the kernels before it; copying one value that
	// depends on the product keeps the 16 MB copy out of the time.
	one, probe := make([]float32, 1), accel.Buf(nil)
	if probe, err = d.Alloc(1); err != nil {
		return 0, err
	}
	defer d.Free(probe)
	best := 0.0
	for round := range 4 {
		start := time.Now()
		for range reps {
			if err := d.Gemm(false, false, n, n, n, 1, bufs[0], n, bufs[1], n, 0, bufs[2], n); err != nil {
				return 0, err
			}
		}
		if err := d.Add(probe, bufs[2], bufs[2], 1); err != nil {
			return 0, err
		}
		if err := d.Download(one, probe); err != nil {
			return 0, err
		}
		if round > 0 { // the first round includes loading the kernels
			best = max(best, 2*n*n*n*reps/time.Since(start).Seconds()/1e9)
		}
	}
	return best, nil
}

type childResult struct {
	TokensPerS  float64 `json:"tokens_per_s"`
	PeakDevice  int64   `json:"peak_device_bytes,omitempty"` // PyTorch on a GPU: max_memory_allocated
	Device      string  `json:"device,omitempty"`            // the device PyTorch ran on
	PeakRSS     int64   `json:"peak_rss_bytes"`
	SgemmGFlops float64 `json:"sgemm_gflops,omitempty"` // measured after the timed steps
	// On the CPU: the flops of the step's matrix products over the time
	// spent inside them (gemm's meter), and that time's share of the step.
	ProductGFlops float64       `json:"product_gflops,omitempty"`
	ProductFrac   float64       `json:"product_frac,omitempty"`
	Overhead      collectorCost `json:"collector_overhead"`
	BLAS          string        `json:"blas,omitempty"`   // the BLAS library PyTorch loaded
	Losses        []float64     `json:"losses,omitempty"` // every step's, warm-up included
}

func runChild(ctx context.Context, args ...string) (childResult, error) {
	self, err := os.Executable()
	if err != nil {
		return childResult{}, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, self, args...)
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return childResult{}, fmt.Errorf("%v: %s", err, strings.TrimSpace(errb.String()))
	}
	var r childResult
	if err := json.Unmarshal(out.Bytes(), &r); err != nil {
		return childResult{}, fmt.Errorf("child output %q: %w", out.String(), err)
	}
	return r, nil
}

// torchSplit is how PyTorch's threads are divided between its own
// (OpenMP, intra-op) pool and the BLAS library's. With OpenBLAS both pools
// default to every core and then compete for them: on 2 cores the tiny
// step runs ~2.9× faster with one BLAS thread. Which split is best depends
// on the size (matmul-heavy steps want BLAS threads), so lens bench runs
// both and keeps PyTorch's best.
type torchSplit struct{ torch, blas int }

func torchSplits() []torchSplit {
	n := runtime.GOMAXPROCS(0)
	if n == 1 {
		return []torchSplit{{1, 1}}
	}
	return []torchSplit{{n, 1}, {1, n}}
}

func (t torchSplit) String() string {
	return fmt.Sprintf("%d torch + %d BLAS threads", t.torch, t.blas)
}

func runTorch(ctx context.Context, s benchSize, v benchVariant, steps, warmup int, split torchSplit, dev string) (childResult, error) {
	dir, err := os.MkdirTemp("", "lens-torchref")
	if err != nil {
		return childResult{}, err
	}
	defer os.RemoveAll(dir)
	script, err := writeTorchRef(dir)
	if err != nil {
		return childResult{}, err
	}
	c := s.config()
	args := []string{script, "--hidden", fmt.Sprint(s.Hidden), "--layers", fmt.Sprint(s.Layers),
		"--heads", fmt.Sprint(s.Heads), "--kv-heads", fmt.Sprint(s.KVHeads), "--head-dim", fmt.Sprint(c.Head()),
		"--inter", fmt.Sprint(s.Inter), "--vocab", fmt.Sprint(s.Vocab), "--rope-theta", fmt.Sprint(s.RopeTheta),
		"--seq", fmt.Sprint(s.Seq), "--batch", fmt.Sprint(s.Batch), "--rank", fmt.Sprint(s.Rank), "--alpha", fmt.Sprint(s.Alpha),
		"--targets", strings.Join(s.Targets, ","), "--steps", fmt.Sprint(steps), "--warmup", fmt.Sprint(warmup),
		"--threads", fmt.Sprint(split.torch), "--device", dev}
	if s.RopeScaling != nil {
		b, err := json.Marshal(s.RopeScaling)
		if err != nil {
			return childResult{}, err
		}
		args = append(args, "--rope-scaling", string(b))
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, torchPython(), append(args, v.args()...)...)
	cmd.Env = append(os.Environ(), fmt.Sprintf("OPENBLAS_NUM_THREADS=%d", split.blas), fmt.Sprintf("OMP_NUM_THREADS=%d", split.torch))
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		return childResult{}, fmt.Errorf("PyTorch benchmark (bench.py): %v: %s", err, strings.TrimSpace(errb.String()))
	}
	var r childResult
	err = json.Unmarshal(out.Bytes(), &r)
	return r, err
}

// torchPython is the Python that runs the PyTorch side: $LENS_PYTHON, or
// Debian's /usr/bin/python3 (python3-torch).
func torchPython() string {
	if p := os.Getenv("LENS_PYTHON"); p != "" {
		return p
	}
	return "/usr/bin/python3"
}

// writeTorchRef writes the embedded PyTorch side (testdata/torchref's
// bench.py, which imports nothing of the repository) into dir and returns
// its path, so that lens bench runs outside the repository too.
func writeTorchRef(dir string) (string, error) {
	b, err := torchref.FS.ReadFile("bench.py")
	path := filepath.Join(dir, "bench.py")
	if err == nil {
		err = os.WriteFile(path, b, 0o644)
	}
	if err != nil {
		return "", fmt.Errorf("write the PyTorch benchmark: %w", err)
	}
	return path, nil
}

// loadAverage is the 1-minute load average (0 where unavailable).
func loadAverage() float64 {
	b, err := os.ReadFile("/proc/loadavg")
	if err != nil {
		return 0
	}
	f := strings.Fields(string(b))
	if len(f) == 0 {
		return 0
	}
	v, _ := strconv.ParseFloat(f[0], 64)
	return v
}

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "[--sizes tiny,small,medium,135m,1b] [--steps N] [--checkpointing] [--quant nf4|nf4-dq|bf16] [--head-chunk N] [--json] [--no-torch]",
		"Time the same LoRA training step in lens and in PyTorch, alternating, with the sgemm ceiling, collector overhead and peak memory", stderr)
	sizes := fs.String("sizes", "tiny,small,medium", "model shapes: tiny (hidden 128, 4 layers), small (256, 6), medium (512, 8): LoRA r=8 on q,k,v,o, batch 4×256; "+
		"135m (SmolLM2-135M), 1b (Llama-3.2-1B): LoRA r=16 on every linear module, batch 1×1024; mini: the 1b's features at hidden 64, 2 layers (r=4, batch 1×128)")
	steps := fs.Int("steps", 0, "timed steps per measurement (default 30 for tiny/small/medium, whose collectors fire every 10; 2 for the real shapes)")
	warmup := fs.Int("warmup", 0, "untimed steps before them (default 10, or 1 for the real shapes)")
	rounds := fs.Int("rounds", 0, "alternations of lens and PyTorch per size; each side keeps its best (default 3, or 1 for the real shapes)")
	var v benchVariant
	fs.BoolVar(&v.Checkpointing, "checkpointing", false, "activation checkpointing (PyTorch: torch.utils.checkpoint per decoder layer)")
	fs.StringVar(&v.Quant, "quant", "", "base weights held as bf16, nf4 or nf4-dq (embedding in bf16), widened per product on both sides")
	fs.IntVar(&v.HeadChunk, "head-chunk", 0, "head and loss this many tokens at a time (PyTorch: each chunk checkpointed)")
	asJSON := fs.Bool("json", false, "print the rows as a JSON list")
	noTorch := fs.Bool("no-torch", false, "skip the PyTorch side")
	one := fs.String("one", "", "internal: time one size in this process and print JSON")
	withCollectors := fs.Bool("collectors", false, "internal: with --one, collectors on")
	dev := fs.String("device", "cpu", "where both sides train: cpu, or cuda (a lens built with -tags lenscuda and PyTorch with CUDA)")
	cpuProfile := fs.String("cpuprofile", "", "with --one: write a CPU profile of the timed steps to this file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *steps < 0 || *rounds < 0 || *warmup < 0 || v.HeadChunk < 0 {
		return usagef("--steps, --warmup, --rounds and --head-chunk must be positive")
	}
	set := map[string]bool{}
	fs.Visit(func(f *flag.Flag) { set[f.Name] = true })
	if (set["steps"] && *steps == 0) || (set["rounds"] && *rounds == 0) {
		return usagef("--steps and --rounds must be positive")
	}
	if v.Quant != "" && !slices.Contains(model.QuantKinds, v.Quant) {
		return usagef("--quant %q: want one of %s", v.Quant, strings.Join(model.QuantKinds, ", "))
	}
	if *dev != device.CPU && *dev != device.CUDA {
		return usagef("--device %q: want cpu or cuda", *dev)
	}
	if *dev == device.CUDA {
		if _, _, err := device.Resolve(*dev); err != nil {
			return usagef("--device: %v", err)
		}
	}
	orDefault := func(flagV, d int) int {
		if flagV > 0 {
			return flagV
		}
		return d
	}
	if *one != "" {
		for _, s := range benchSizes {
			if s.Name == *one {
				r, err := benchOne(s, v, orDefault(*steps, s.Steps), orDefault(*warmup, s.Warmup), *dev, *withCollectors, *cpuProfile)
				if err != nil {
					return err
				}
				if r.SgemmGFlops, err = ceilingGFlops(*dev); err != nil {
					return err
				}
				return json.NewEncoder(stdout).Encode(r)
			}
		}
		return usagef("unknown size %q", *one)
	}
	var chosen []benchSize
	for _, name := range strings.Split(*sizes, ",") {
		found := false
		for _, s := range benchSizes {
			if s.Name == name {
				chosen, found = append(chosen, s), true
			}
		}
		if !found {
			return usagef("unknown size %q (%s)", name, sizeNames())
		}
	}
	ctx, stop := interruptible(stderr)
	defer stop()
	var rows []benchRow
	for _, s := range chosen {
		c := s.config()
		n, w, rs := orDefault(*steps, s.Steps), orDefault(*warmup, s.Warmup), orDefault(*rounds, s.Rounds)
		row := benchRow{Size: s.Name, Variant: v.String(), Params: c.ParamCount(), Batch: s.Batch, Seq: s.Seq, Steps: n,
			GemmKernel: gemm.Kernel(), Device: *dev, Load: loadAverage()}
		collectors := !s.Big
		sides := "lens, PyTorch"
		if *noTorch {
			sides = "lens"
		}
		if collectors {
			sides += ", lens with collectors"
		}
		fmt.Fprintf(stderr, "bench %s (%s): %s...\n", s.Name, row.Variant, sides)
		steal0, total0 := cpuSteal()
		child := append([]string{"bench", "--one", s.Name, "--steps", fmt.Sprint(n), "--warmup", fmt.Sprint(w), "--device", *dev}, v.args()...)
		// Alternate lens and PyTorch and keep each side's best of the
		// rounds (PyTorch: of every thread split in them), so drift on a
		// shared machine hits both alike.
		for range rs {
			l, err := runChild(ctx, child...)
			if err != nil {
				return fmt.Errorf("bench %s: %w", s.Name, err)
			}
			if l.TokensPerS > row.LensTokensPerS {
				row.LensTokensPerS, row.ProductGFlops, row.ProductFrac = l.TokensPerS, l.ProductGFlops, l.ProductFrac
			}
			if row.LensLosses == nil {
				row.LensLosses = l.Losses
			}
			row.LensPeakRSS = max(row.LensPeakRSS, l.PeakRSS)
			row.SgemmGFlops = max(row.SgemmGFlops, l.SgemmGFlops)
			for _, split := range torchSplitsFor(s, *dev) {
				if *noTorch || row.TorchError != "" {
					break
				}
				tr, err := runTorch(ctx, s, v, n, w, split, *dev)
				if err != nil {
					row.TorchError = err.Error()
					break
				}
				if tr.TokensPerS > row.TorchTokensPerS {
					row.TorchTokensPerS, row.TorchThreads = tr.TokensPerS, split.String()
				}
				if row.TorchLosses == nil {
					row.TorchLosses = tr.Losses
				}
				row.TorchPeakRSS = max(row.TorchPeakRSS, tr.PeakRSS)
				row.TorchPeakDevice = max(row.TorchPeakDevice, tr.PeakDevice)
				row.TorchBLAS, row.TorchDevice = tr.BLAS, tr.Device
			}
			if !collectors {
				continue
			}
			cl, err := runChild(ctx, append(child, "--collectors")...)
			if err != nil {
				return fmt.Errorf("bench %s with collectors: %w", s.Name, err)
			}
			row.CollectOverhead += cl.Overhead.InHooks / float64(rs) // mean over the rounds
			row.CollectBlocks += cl.Overhead.Blocks / float64(rs)
		}
		if steal1, total1 := cpuSteal(); total1 > total0 {
			row.Steal = float64(steal1-steal0) / float64(total1-total0)
		}
		if row.TorchTokensPerS > 0 {
			row.Ratio = row.LensTokensPerS / row.TorchTokensPerS
		}
		row.LensGFlops = row.LensTokensPerS * stepFlops(s, s.Seq) / 1e9
		if row.SgemmGFlops > 0 {
			row.CeilingShare = row.LensGFlops / row.SgemmGFlops
		}
		rows = append(rows, row)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	printBench(stdout, rows, *dev)
	return nil
}

// torchSplitsFor is the thread splits PyTorch runs at size s: both on the
// small shapes; on the real ones only 1 torch + all-BLAS threads, the best
// split at every small shape (BENCHMARKS.md) and the one that suits a
// step made of large products, since each PyTorch step there is tens of
// seconds.
func torchSplitsFor(s benchSize, dev string) []torchSplit {
	splits := torchSplits()
	if dev != device.CPU || s.Big {
		return splits[len(splits)-1:] // on a GPU host threads hardly matter
	}
	return splits
}

func printBench(stdout io.Writer, rows []benchRow, dev string) {
	var t [][]string
	mb := func(b int64) string {
		if b == 0 {
			return "-"
		}
		return fmt.Sprintf("%.0f MB", float64(b)/1e6)
	}
	for _, r := range rows {
		torch, ratio := "-", "-"
		if r.TorchTokensPerS > 0 {
			torch, ratio = fmt.Sprintf("%.0f", r.TorchTokensPerS), fmt.Sprintf("%.2f", r.Ratio)
		} else if r.TorchError != "" {
			torch = "error"
		}
		products, collectors := "-", "-"
		if r.ProductGFlops > 0 {
			products = fmt.Sprintf("%.1f (%.0f%% of the step)", r.ProductGFlops, 100*r.ProductFrac)
		}
		if r.CollectOverhead != 0 || r.CollectBlocks != 0 {
			collectors = fmt.Sprintf("%.1f%% (%+.1f%%)", 100*r.CollectOverhead, 100*r.CollectBlocks)
		}
		t = append(t, []string{r.Size, r.Variant, fmt.Sprintf("%.2fM", float64(r.Params)/1e6), fmt.Sprintf("%.0f", r.LensTokensPerS), torch, ratio,
			fmt.Sprintf("%.1f", r.LensGFlops), fmt.Sprintf("%.1f", r.SgemmGFlops), fmt.Sprintf("%.0f%%", 100*r.CeilingShare), products, collectors,
			mb(r.LensPeakRSS), mb(r.TorchPeakRSS)})
	}
	table(stdout, []string{"size", "variant", "params", "lens tok/s", "torch tok/s", "ratio", "lens GFLOP/s", "sgemm GFLOP/s", "share of ceiling",
		"in products GFLOP/s", "collectors (blocks)", "lens RSS", "torch RSS"}, t)
	for _, r := range rows {
		fmt.Fprintf(stdout, "%s: LoRA r=%d on %s, batch %d×%d, %d timed steps; step-1 loss lens %s, PyTorch %s; load average %.2f\n",
			r.Size, sizeByName(r.Size).Rank, strings.Join(sizeByName(r.Size).Targets, ","), r.Batch, r.Seq, r.Steps,
			firstLoss(r.LensLosses), firstLoss(r.TorchLosses), r.Load)
	}
	fmt.Fprintf(stdout, "%d threads, gemm kernel %s\n", runtime.GOMAXPROCS(0), gemm.Kernel())
	if dev != device.CPU && len(rows) > 0 {
		fmt.Fprintf(stdout, "device: lens on %s (the sgemm column is its own matrix kernel, 2048³), PyTorch on %s\n", rows[0].Device, rows[0].TorchDevice)
	} else if len(rows) > 0 && rows[0].TorchBLAS != "" {
		fmt.Fprintf(stdout, "PyTorch BLAS: %s; best thread split:", rows[0].TorchBLAS)
		for _, r := range rows {
			fmt.Fprintf(stdout, " %s %s;", r.Size, r.TorchThreads)
		}
		fmt.Fprintln(stdout)
	}
	fmt.Fprint(stdout, "CPU time stolen by the hypervisor:")
	for _, r := range rows {
		fmt.Fprintf(stdout, " %s %.1f%%;", r.Size, 100*r.Steal)
	}
	fmt.Fprintln(stdout)
	for _, r := range rows {
		if r.TorchError != "" {
			fmt.Fprintf(stdout, "PyTorch failed for %s: %s\n", r.Size, r.TorchError)
		}
	}
}

func sizeByName(name string) benchSize {
	for _, s := range benchSizes {
		if s.Name == name {
			return s
		}
	}
	return benchSize{}
}

func firstLoss(l []float64) string {
	if len(l) == 0 {
		return "-"
	}
	return fmt.Sprintf("%.5f", l[0])
}
