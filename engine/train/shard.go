package train

import (
	"fmt"
	"runtime"
	"sort"
	"strings"

	gorgonia "gorgonia.org/gorgonia"

	"lens/engine/gemm"
	"lens/engine/model"
	"lens/engine/nn"
)

// A micro-batch is split by sequence into shards, each run by its own
// graph on its share of the CPUs, concurrently; their gradients are then
// summed. Splitting every op of one graph over the cores instead makes
// each op wait for the slowest core, and the element-wise ops (norms,
// RoPE, SwiGLU, residual adds) gain little from it: on 2 cores the tiny
// bench model's step runs about 1.5× faster as two half-batch graphs on
// one core each than as one graph on both.
//
// The number of shards depends on the batch size only, never on the
// machine, so a run gives bit-identical results on any number of cores
// (each graph's kernels are themselves independent of their core count).

// shard is one graph over a contiguous slice of the micro-batch's
// sequences.
type shard struct {
	feed  *nn.Feed
	net   *model.Net[float32] // nil when checkpointed
	ck    *ckptStep           // the checkpointed step, or nil
	mach  stepMachine
	names []string // trainable parameters, sorted: the order of mach's gradients
	loss  float64
	count int // targets counted in the loss (not ignored)
	err   error
}

// stepMachine runs a shard's forward and backward pass: the whole-model
// graph's machine, or a checkpointed step.
type stepMachine interface {
	Run() (float64, error)
	Grad(i int) ([]float32, error)
	Close() error
}

// param returns a trainable parameter's shape and the data the shard's
// graphs read (the adapter's or model's own memory).
func (s *shard) param(name string) ([]int, []float32) {
	if s.ck != nil {
		return s.ck.shapes[name], s.ck.data[name]
	}
	return s.net.Params[name].Shape().Clone(), s.net.Data[name]
}

// numShards is how many shards a micro-batch of batch sequences is split
// into: two halves when it splits evenly. Two keep a 2-core machine busy
// without idle waits; on larger machines each half still splits its ops
// over its share of the cores.
func numShards(batch int) int {
	if batch%2 == 0 {
		return 2
	}
	return 1
}

// buildShards builds and compiles one training graph per shard over views
// of t.feed, each using its share of GOMAXPROCS.
func (t *Trainer) buildShards() error {
	cfg := t.Config
	n := numShards(cfg.BatchSize)
	cores := (runtime.GOMAXPROCS(0) + n - 1) / n
	var ads map[string]model.Adapter
	if t.Adapter != nil {
		ads = t.Adapter.GraphAdapters()
	}
	b := cfg.BatchSize / n
	per := b * cfg.SeqLen
	for i := range n {
		f := &nn.Feed{B: b, T: cfg.SeqLen,
			Inputs: t.feed.Inputs[i*per : (i+1)*per], Targets: t.feed.Targets[i*per : (i+1)*per]}
		if t.feed.Segments != nil {
			f.Positions, f.Segments = t.feed.Positions[i*per:(i+1)*per], t.feed.Segments[i*per:(i+1)*per]
		}
		if cfg.Checkpointing {
			ck, err := newCkptStep(t.Model, ads, f, cores, cfg.HeadChunk, true)
			if err != nil {
				return fmt.Errorf("checkpointed step: %w", err)
			}
			if t.Adapter != nil && t.Adapter.Config.Dropout > 0 {
				row0 := i * b * cfg.SeqLen
				ck.mask = func(mod string, dst []float32) bool {
					if t.device != nil {
						return false
					}
					return t.maskFor(mod, dst, row0)
				}
			}
			t.shards = append(t.shards, &shard{feed: f, ck: ck, mach: ck, names: ck.names})
			continue
		}
		g := nn.NewGraph[float32](f)
		g.Cores = cores
		g.HeadChunk = cfg.HeadChunk
		net, err := model.Build(g, t.Model, ads, cfg.Full)
		if err != nil {
			return err
		}
		s := &shard{feed: f, net: net}
		for name := range net.Params {
			if cfg.Full || strings.HasSuffix(name, ".lora_A") || strings.HasSuffix(name, ".lora_B") {
				s.names = append(s.names, name)
			}
		}
		sort.Strings(s.names)
		wrt := make([]*gorgonia.Node, len(s.names))
		for j, name := range s.names {
			wrt[j] = net.Params[name]
		}
		if s.mach, err = g.Compile(net.Loss, wrt...); err != nil {
			return err
		}
		t.shards = append(t.shards, s)
	}
	t.gs, t.w = make([][]float32, n), make([]float32, n)
	t.runPart = func(_, lo, hi int) {
		for _, s := range t.shards[lo:hi] {
			s.loss, s.err = s.mach.Run()
		}
	}
	return nil
}

// shardMasks points every shard's feed at its rows of the dropout mask m
// (N×in) of module mod.
func (t *Trainer) shardMasks(mod string, m []float32) {
	per := len(m) / len(t.shards)
	for i, s := range t.shards {
		if s.feed.Masks == nil {
			s.feed.Masks = map[string][]float32{}
		}
		s.feed.Masks[mod] = m[i*per : (i+1)*per]
	}
}

// microShards runs every shard's forward and backward pass on the current
// batch and adds the batch's gradient, scaled by inv, into Param.Grad. The
// batch's loss is the mean over all counted targets, so each shard's mean
// loss and gradient weigh by its share of them. It returns the loss and
// the squared norm of the unscaled gradient.
func (t *Trainer) microShards(inv float32) (float64, float64, error) {
	gemm.ParallelFor(len(t.shards), 1, len(t.shards), t.runPart)
	total := 0
	for i, s := range t.shards {
		if s.err != nil {
			return 0, 0, fmt.Errorf("shard %d of the batch: %w", i, s.err)
		}
		s.count = counted(s.feed.Targets)
		total += s.count
	}
	var loss float64
	for k, s := range t.shards {
		t.w[k] = 0
		if s.count > 0 {
			loss += s.loss * float64(s.count) / float64(total)
			t.w[k] = float32(s.count) / float32(total)
		}
	}
	var sq float64
	for i, p := range t.Params {
		for k, s := range t.shards {
			g, err := s.mach.Grad(i)
			if err != nil {
				return 0, 0, fmt.Errorf("gradient of %s: %w", p.Name, err)
			}
			t.gs[k] = g
		}
		sq += t.addGrad(p.Grad, inv)
	}
	return loss, sq, nil
}

// addGrad adds inv·Σ_k w_k·gs[k] into dst, with w_k shard k's share of the
// counted targets, and returns ‖Σ_k w_k·gs[k]‖². With one shard the sum is
// its gradient exactly.
func (t *Trainer) addGrad(dst []float32, inv float32) float64 {
	var sq float64
	if len(t.shards) == 1 {
		for j, v := range t.gs[0] {
			dst[j] += v * inv
			sq += float64(v) * float64(v)
		}
		return sq
	}
	for j := range dst {
		var v float32
		for k, g := range t.gs {
			v += t.w[k] * g[j]
		}
		dst[j] += v * inv
		sq += float64(v) * float64(v)
	}
	return sq
}

// counted is the number of targets the loss counts (the others, negative,
// are ignored).
func counted(targets []int32) int {
	n := 0
	for _, tg := range targets {
		if tg >= 0 {
			n++
		}
	}
	return n
}
