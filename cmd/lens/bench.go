package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strconv"
	"strings"
	"time"

	"lens/engine/accel"
	"lens/engine/collect"
	"lens/engine/device"
	"lens/engine/gemm"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/train"
	"lens/kv"
	"lens/testdata/torchref"
)

// benchSize is one model size of lens bench.
type benchSize struct {
	Name                         string
	Hidden, Layers, Heads, Inter int
}

var benchSizes = []benchSize{
	{"tiny", 128, 4, 4, 344},
	{"small", 256, 6, 4, 688},
	{"medium", 512, 8, 8, 1376},
}

// benchRow is one line of lens bench's table and JSON.
type benchRow struct {
	Size            string  `json:"size"`
	Params          int     `json:"params"`
	LensTokensPerS  float64 `json:"lens_tokens_per_s"`
	TorchTokensPerS float64 `json:"torch_tokens_per_s"`
	Ratio           float64 `json:"ratio"`
	LensGFlops      float64 `json:"lens_gflops"`
	SgemmGFlops     float64 `json:"sgemm_gflops"`
	// ProductGFlops is the speed of the step's matrix products alone (their
	// flops over the time inside them, CPU only), ProductFrac that time's
	// share of the step; both from the fastest lens round.
	ProductGFlops   float64 `json:"product_gflops,omitempty"`
	ProductFrac     float64 `json:"product_frac,omitempty"`
	CollectOverhead float64 `json:"collector_overhead"`        // inside the collectors' hooks, mean over the rounds
	CollectBlocks   float64 `json:"collector_overhead_blocks"` // whole 10-step blocks with vs without them
	LensPeakRSS     int64   `json:"lens_peak_rss_bytes"`
	TorchPeakRSS    int64   `json:"torch_peak_rss_bytes"`
	GemmKernel      string  `json:"gemm_kernel"`
	TorchBLAS       string  `json:"torch_blas,omitempty"`
	TorchThreads    string  `json:"torch_threads,omitempty"` // the thread split of PyTorch's best run
	TorchError      string  `json:"torch_error,omitempty"`
	Device          string  `json:"device"`                 // cpu, or the accelerator lens trained on
	TorchDevice     string  `json:"torch_device,omitempty"` // the GPU PyTorch ran on
	TorchPeakDevice int64   `json:"torch_peak_device_bytes,omitempty"`
	// Steal is the share of CPU time the hypervisor took from this machine
	// while the size ran (/proc/stat): above a few percent, timings are
	// not to be trusted.
	Steal float64 `json:"cpu_steal"`
}

const benchSeq, benchBatch, benchRank = 256, 4, 8

func (s benchSize) config() model.Config {
	c := model.Tiny()
	c.HiddenSize, c.NumHiddenLayers, c.NumAttentionHeads, c.NumKeyValueHeads, c.IntermediateSize = s.Hidden, s.Layers, s.Heads, s.Heads, s.Inter
	c.MaxPositionEmbeddings = benchSeq
	return c
}

// stepFlops estimates the floating-point work one LoRA step needs per
// token: forward and input-gradient matmuls of every linear layer (2+2
// flops per weight; frozen weights get no weight gradient) and the causal
// half of the attention products (forward 2·T·H, backward twice that).
// lens computes attention in 64-row blocks, so it does about 5/8 of the
// full T×T products at T = 256, a little more than counted here.
func stepFlops(c model.Config, T int) float64 {
	h, in := float64(c.HiddenSize), float64(c.IntermediateSize)
	lin := float64(c.NumHiddenLayers)*(4*h*h+3*h*in) + float64(c.VocabSize)*h
	attn := float64(c.NumHiddenLayers) * 6 * float64(T) * h
	return 4*lin + attn
}

type randTokens struct{ rng *rand.Rand }

func (r *randTokens) Next(in, tg []int32) error {
	for i := range in {
		in[i], tg[i] = int32(r.rng.IntN(256)), int32(r.rng.IntN(256))
	}
	return nil
}
func (r *randTokens) State() (json.RawMessage, error) { return json.RawMessage("{}"), nil }
func (r *randTokens) Restore(json.RawMessage) error   { return nil }

// benchOne times LoRA steps of one size in this process, optionally with
// every collector at its default frequency, and reports tokens/s and the
// process's peak RSS.
//
// With collectors, drift on a shared machine would swamp a few percent
// between two processes, so the overhead is measured in this one: blocks
// of 10 steps (one collection each) alternate with blocks of 10 where the
// same hooks are switched off, and the overhead is the ratio of the two
// blocks' total times; tokens/s is then the blocks with collectors.
func benchOne(s benchSize, steps int, dev string, collectors bool, cpuProfile string) (childResult, error) {
	m, err := model.New(s.config(), 1)
	if err != nil {
		return childResult{}, err
	}
	ad, err := lora.New(m, lora.Config{Rank: benchRank, Alpha: 16, Targets: []string{"q_proj", "k_proj", "v_proj", "o_proj"}}, 1)
	if err != nil {
		return childResult{}, err
	}
	tr, err := train.New(m, ad, &randTokens{rand.New(rand.NewPCG(1, 2))}, nil,
		train.Config{Steps: 1 << 30, BatchSize: benchBatch, SeqLen: benchSeq, LR: 1e-3})
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
		for range 2 * benchSeq {
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
	}
	// Warm up buffers, caches and (with collectors) the probe graph, which
	// is built at the first collection (step 10): overhead is then the
	// steady-state cost at the default frequency.
	for range 10 {
		if _, err := tr.TrainStep(); err != nil {
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
			if _, err := tr.TrainStep(); err != nil {
				return childResult{}, err
			}
		}
		el := time.Since(start).Seconds()
		busy, flops := gemm.StopMeter()
		r := childResult{TokensPerS: float64(steps*benchBatch*benchSeq) / el, PeakRSS: peakRSS()}
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
			if _, err := tr.TrainStep(); err != nil {
				return childResult{}, err
			}
		}
		if on {
			with += time.Since(start)
		} else {
			without += time.Since(start)
		}
	}
	n := max(2, steps/10) * 10
	cost := collectorCost{InHooks: spent.Seconds() / without.Seconds(), Blocks: with.Seconds()/without.Seconds() - 1,
		ByCollector: map[string]float64{}}
	for name, d := range each {
		cost.ByCollector[name] = d.Seconds() / without.Seconds()
	}
	return childResult{TokensPerS: float64(n*benchBatch*benchSeq) / with.Seconds(), Overhead: cost, PeakRSS: peakRSS()}, nil
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

// peakRSS reads VmHWM from /proc/self/status (0 where unavailable).
func peakRSS() int64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	for _, l := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(l, "VmHWM:"); ok {
			kb, _ := strconv.ParseInt(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(v), "kB")), 10, 64)
			return kb * 1024
		}
	}
	return 0
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
	BLAS          string        `json:"blas,omitempty"` // the BLAS library PyTorch loaded
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

func runTorch(ctx context.Context, s benchSize, steps int, split torchSplit, dev string) (childResult, error) {
	dir, err := os.MkdirTemp("", "lens-torchref")
	if err != nil {
		return childResult{}, err
	}
	defer os.RemoveAll(dir)
	script, err := writeTorchRef(dir)
	if err != nil {
		return childResult{}, err
	}
	var out, errb bytes.Buffer
	cmd := exec.CommandContext(ctx, torchPython(), script, "--hidden", fmt.Sprint(s.Hidden), "--layers", fmt.Sprint(s.Layers),
		"--heads", fmt.Sprint(s.Heads), "--inter", fmt.Sprint(s.Inter), "--seq", fmt.Sprint(benchSeq), "--batch", fmt.Sprint(benchBatch),
		"--rank", fmt.Sprint(benchRank), "--steps", fmt.Sprint(steps), "--threads", fmt.Sprint(split.torch), "--device", dev)
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
// bench.py and the llama_ref.py it imports) into dir and returns bench.py's
// path, so that lens bench runs outside the repository too.
func writeTorchRef(dir string) (string, error) {
	for _, name := range []string{"bench.py", "llama_ref.py"} {
		b, err := torchref.FS.ReadFile(name)
		if err == nil {
			err = os.WriteFile(filepath.Join(dir, name), b, 0o644)
		}
		if err != nil {
			return "", fmt.Errorf("write the PyTorch benchmark: %w", err)
		}
	}
	return filepath.Join(dir, "bench.py"), nil
}

func cmdBench(args []string, stdout, stderr io.Writer) error {
	fs := newFlags("bench", "[--sizes tiny,small,medium] [--steps N] [--json] [--no-torch]",
		"Time the same LoRA training step (r=8 on q,k,v,o, batch 4×256) in lens and in PyTorch, alternating, with the sgemm ceiling, collector overhead and peak memory", stderr)
	sizes := fs.String("sizes", "tiny,small,medium", "model sizes: tiny (hidden 128, 4 layers), small (256, 6), medium (512, 8)")
	steps := fs.Int("steps", 30, "timed steps per measurement (collectors fire every 10)")
	rounds := fs.Int("rounds", 3, "alternations of lens and PyTorch per size; each side keeps its best")
	asJSON := fs.Bool("json", false, "print the rows as a JSON list")
	noTorch := fs.Bool("no-torch", false, "skip the PyTorch side")
	one := fs.String("one", "", "internal: time one size in this process and print JSON")
	withCollectors := fs.Bool("collectors", false, "internal: with --one, collectors on")
	dev := fs.String("device", "cpu", "where both sides train: cpu, or cuda (a lens built with -tags lenscuda and PyTorch with CUDA)")
	cpuProfile := fs.String("cpuprofile", "", "with --one: write a CPU profile of the timed steps to this file")
	if _, err := parse(fs, args); err != nil {
		return err
	}
	if *steps <= 0 || *rounds <= 0 {
		return usagef("--steps and --rounds must be positive")
	}
	if *dev != device.CPU && *dev != device.CUDA {
		return usagef("--device %q: want cpu or cuda", *dev)
	}
	if *dev == device.CUDA {
		if _, _, err := device.Resolve(*dev); err != nil {
			return usagef("--device: %v", err)
		}
	}
	if *one != "" {
		for _, s := range benchSizes {
			if s.Name == *one {
				r, err := benchOne(s, *steps, *dev, *withCollectors, *cpuProfile)
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
			return usagef("unknown size %q (tiny, small, medium)", name)
		}
	}
	ctx, stop := interruptible(stderr)
	defer stop()
	var rows []benchRow
	for _, s := range chosen {
		c := s.config()
		row := benchRow{Size: s.Name, Params: c.ParamCount(), GemmKernel: gemm.Kernel(), Device: *dev}
		fmt.Fprintf(stderr, "bench %s: lens, PyTorch, lens with collectors...\n", s.Name)
		steal0, total0 := cpuSteal()
		// Alternate lens and PyTorch and keep each side's best of the
		// rounds (PyTorch: of every thread split in them), so drift on a
		// shared machine hits both alike.
		for range *rounds {
			l, err := runChild(ctx, "bench", "--one", s.Name, "--steps", fmt.Sprint(*steps), "--device", *dev)
			if err != nil {
				return fmt.Errorf("bench %s: %w", s.Name, err)
			}
			if l.TokensPerS > row.LensTokensPerS {
				row.LensTokensPerS, row.ProductGFlops, row.ProductFrac = l.TokensPerS, l.ProductGFlops, l.ProductFrac
			}
			row.LensPeakRSS = max(row.LensPeakRSS, l.PeakRSS)
			row.SgemmGFlops = max(row.SgemmGFlops, l.SgemmGFlops)
			splits := torchSplits()
			if *dev != device.CPU {
				splits = splits[:1] // the GPU does the work; host threads hardly matter
			}
			for _, split := range splits {
				if *noTorch || row.TorchError != "" {
					break
				}
				tr, err := runTorch(ctx, s, *steps, split, *dev)
				if err != nil {
					row.TorchError = err.Error()
					break
				}
				if tr.TokensPerS > row.TorchTokensPerS {
					row.TorchTokensPerS, row.TorchThreads = tr.TokensPerS, split.String()
				}
				row.TorchPeakRSS = max(row.TorchPeakRSS, tr.PeakRSS)
				row.TorchPeakDevice = max(row.TorchPeakDevice, tr.PeakDevice)
				row.TorchBLAS, row.TorchDevice = tr.BLAS, tr.Device
			}
			cl, err := runChild(ctx, "bench", "--one", s.Name, "--steps", fmt.Sprint(*steps), "--device", *dev, "--collectors")
			if err != nil {
				return fmt.Errorf("bench %s with collectors: %w", s.Name, err)
			}
			row.CollectOverhead += cl.Overhead.InHooks / float64(*rounds) // mean over the rounds
			row.CollectBlocks += cl.Overhead.Blocks / float64(*rounds)
		}
		if steal1, total1 := cpuSteal(); total1 > total0 {
			row.Steal = float64(steal1-steal0) / float64(total1-total0)
		}
		if row.TorchTokensPerS > 0 {
			row.Ratio = row.LensTokensPerS / row.TorchTokensPerS
		}
		row.LensGFlops = row.LensTokensPerS * stepFlops(c, benchSeq) / 1e9
		rows = append(rows, row)
	}
	if *asJSON {
		return json.NewEncoder(stdout).Encode(rows)
	}
	var t [][]string
	for _, r := range rows {
		torch, ratio := "-", "-"
		if r.TorchTokensPerS > 0 {
			torch, ratio = fmt.Sprintf("%.0f", r.TorchTokensPerS), fmt.Sprintf("%.2f", r.Ratio)
		} else if r.TorchError != "" {
			torch = "error"
		}
		products := "-"
		if r.ProductGFlops > 0 {
			products = fmt.Sprintf("%.1f (%.0f%% of the step)", r.ProductGFlops, 100*r.ProductFrac)
		}
		t = append(t, []string{r.Size, fmt.Sprintf("%.2fM", float64(r.Params)/1e6), fmt.Sprintf("%.0f", r.LensTokensPerS), torch, ratio,
			fmt.Sprintf("%.1f", r.LensGFlops), fmt.Sprintf("%.1f", r.SgemmGFlops), products, fmt.Sprintf("%.1f%% (%+.1f%%)", 100*r.CollectOverhead, 100*r.CollectBlocks),
			fmt.Sprintf("%.0f MB", float64(r.LensPeakRSS)/1e6), fmt.Sprintf("%.0f MB", float64(r.TorchPeakRSS)/1e6)})
	}
	table(stdout, []string{"size", "params", "lens tok/s", "torch tok/s", "ratio", "lens GFLOP/s", "sgemm GFLOP/s", "in products GFLOP/s", "collectors (blocks)", "lens RSS", "torch RSS"}, t)
	fmt.Fprintf(stdout, "LoRA r=%d on q,k,v,o, batch %d×%d, %d threads, gemm kernel %s\n", benchRank, benchBatch, benchSeq, runtime.GOMAXPROCS(0), gemm.Kernel())
	if *dev != device.CPU && len(rows) > 0 {
		fmt.Fprintf(stdout, "device: lens on %s (the sgemm column is its own matrix kernel, 2048³), PyTorch on %s\n", rows[0].Device, rows[0].TorchDevice)
	} else if len(rows) > 0 && rows[0].TorchBLAS != "" {
		fmt.Fprintf(stdout, "PyTorch BLAS: %s; best of %d thread splits:", rows[0].TorchBLAS, len(torchSplits()))
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
	return nil
}
