package train

import (
	"fmt"
	"runtime"

	"lens/engine/data"
	"lens/engine/gemm"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// EvalResult is the mean next-token loss (nats per token) over windows.
type EvalResult struct {
	Loss    float64 `json:"loss"`
	Tokens  int     `json:"tokens"`
	Windows int     `json:"windows"`
}

// forwardNet is a forward-only graph for one batch shape over shared
// weights, or with checkpointing its layer-at-a-time form (then net is
// nil: it has no hook points).
type forwardNet struct {
	feed *nn.Feed
	net  *model.Net[float32]
	mach interface {
		Run() (float64, error)
		Close() error
	}
}

// newForwardNet builds it; its ops split work over cores goroutines (0:
// GOMAXPROCS); headChunk is Config.HeadChunk (the loss is the same, the
// batch×vocabulary logits are never whole: 525 MB at 1024 tokens of a 128k
// vocabulary).
func newForwardNet(m *model.Model, ad *lora.Adapter, batch, seqLen, cores int, ckpt bool, headChunk int) (*forwardNet, error) {
	feed := &nn.Feed{B: batch, T: seqLen}
	var ads map[string]model.Adapter
	if ad != nil {
		ads = ad.GraphAdapters()
	}
	if ckpt {
		s, err := newCkptStep(m, ads, feed, cores, headChunk, false)
		if err != nil {
			return nil, fmt.Errorf("checkpointed forward: %w", err)
		}
		return &forwardNet{feed: feed, mach: s}, nil
	}
	g := nn.NewGraph[float32](feed)
	g.Cores, g.HeadChunk = cores, headChunk
	net, err := model.Build(g, m, ads, false)
	if err != nil {
		return nil, err
	}
	mach, err := g.Compile(net.Loss)
	if err != nil {
		return nil, err
	}
	return &forwardNet{feed: feed, net: net, mach: mach}, nil
}

// forwardShards are forward-only graphs over consecutive shards of one
// batch, run concurrently like the training step's shards.
type forwardShards []*forwardNet

// With ckpt they run a layer at a time (Config.Checkpointing).
func newForwardShards(m *model.Model, ad *lora.Adapter, batch, seqLen int, ckpt bool, headChunk int) (forwardShards, error) {
	n := numShards(batch)
	cores := (runtime.GOMAXPROCS(0) + n - 1) / n
	fs := make(forwardShards, 0, n)
	for range n {
		f, err := newForwardNet(m, ad, batch/n, seqLen, cores, ckpt, headChunk)
		if err != nil {
			return nil, err
		}
		fs = append(fs, f)
	}
	return fs, nil
}

func (fs forwardShards) close() {
	for _, f := range fs {
		f.mach.Close()
	}
}

// run points the shards' feeds at their rows of inputs and targets (the
// whole batch) and runs them. It returns the mean loss over the batch's
// counted targets: each shard's mean weighs by its share of them.
func (fs forwardShards) run(inputs, targets []int32) (float64, error) {
	per := len(inputs) / len(fs)
	for i, f := range fs {
		f.feed.Inputs, f.feed.Targets = inputs[i*per:(i+1)*per], targets[i*per:(i+1)*per]
	}
	losses, errs := make([]float64, len(fs)), make([]error, len(fs))
	gemm.ParallelFor(len(fs), 1, len(fs), func(_, lo, hi int) {
		for i := lo; i < hi; i++ {
			losses[i], errs[i] = fs[i].mach.Run()
		}
	})
	if len(fs) == 1 {
		return losses[0], errs[0]
	}
	var sum float64
	total := 0
	for i, f := range fs {
		if errs[i] != nil {
			return 0, errs[i]
		}
		c := counted(f.feed.Targets)
		sum += losses[i] * float64(c)
		total += c
	}
	if total == 0 {
		return 0, nil
	}
	return sum / float64(total), nil
}

// eval runs windows through the shards, maxBatches batches at most (0: all).
func (fs forwardShards) eval(tokens []int32, maxBatches int) (EvalResult, error) {
	B, T := fs[0].feed.B*len(fs), fs[0].feed.T
	inputs, targets := make([]int32, B*T), make([]int32, B*T)
	return evalWindows(tokens, B, T, maxBatches, inputs, targets, func() (float64, error) { return fs.run(inputs, targets) })
}

// evalWindows is the mean loss over consecutive non-overlapping windows of
// T+1 tokens, B at a time (at most maxBatches batches when positive): it
// fills inputs and targets (B×T) with each batch, padding a last partial
// batch with ignored targets, and calls loss, which returns the batch's
// mean over its counted targets.
func evalWindows(tokens []int32, B, T, maxBatches int, inputs, targets []int32, loss func() (float64, error)) (EvalResult, error) {
	// Consecutive non-overlapping windows; a trailing partial one is dropped.
	nw := data.NumWindows(len(tokens), T)
	if nw == 0 {
		return EvalResult{}, fmt.Errorf("eval: %d tokens do not fill one window of %d", len(tokens), T)
	}
	if maxBatches > 0 {
		nw = min(nw, maxBatches*B)
	}
	var sum float64
	var count int
	for w0 := 0; w0 < nw; w0 += B {
		valid := 0
		for b := range B {
			in, tg := inputs[b*T:(b+1)*T], targets[b*T:(b+1)*T]
			if w := w0 + b; w < nw {
				copy(in, tokens[w*T:w*T+T])
				copy(tg, tokens[w*T+1:w*T+T+1])
				valid += T
			} else {
				clear(in)
				for i := range tg {
					tg[i] = -1
				}
			}
		}
		l, err := loss()
		if err != nil {
			return EvalResult{}, fmt.Errorf("eval: %w", err)
		}
		sum += l * float64(valid)
		count += valid
	}
	return EvalResult{Loss: sum / float64(count), Tokens: count, Windows: nw}, nil
}

// Evaluate is the mean next-token loss of the model (with the adapter, if
// any) over consecutive non-overlapping windows of seqLen tokens.
func Evaluate(m *model.Model, ad *lora.Adapter, tokens []int32, seqLen, batch int) (EvalResult, error) {
	if seqLen <= 0 || batch <= 0 {
		return EvalResult{}, fmt.Errorf("eval: seq_len %d and batch %d must be positive", seqLen, batch)
	}
	fs, err := newForwardShards(m, ad, batch, seqLen, false, 0)
	if err != nil {
		return EvalResult{}, err
	}
	defer fs.close()
	return fs.eval(tokens, 0)
}

// evalSet evaluates one eval set where the step runs: its pre-built
// batches when it has them, else windows of its token stream.
func (t *Trainer) evalSet(e EvalSet) (EvalResult, error) {
	if len(e.Batches) == 0 {
		if t.device != nil {
			return t.device.eval(t, e.Tokens)
		}
		return t.evalNet.eval(e.Tokens, t.Config.EvalBatches)
	}
	loss := func(in, tg []int32) (float64, error) { return t.evalNet.run(in, tg) }
	if t.device != nil {
		if err := t.device.sync(t.Params); err != nil {
			return EvalResult{}, err
		}
		loss = t.device.step.Loss
	}
	return evalBatches(e.Batches, t.Config.BatchSize, t.Config.SeqLen, t.Config.EvalBatches, loss)
}

// evalBatches is the mean loss over every counted target of pre-built
// B×T batches (at most maxBatches when positive), each batch weighed by
// its counted targets, so the result is the mean over all of them
// however they fall into batches.
func evalBatches(bs []data.Batch, B, T, maxBatches int, loss func(inputs, targets []int32) (float64, error)) (EvalResult, error) {
	if maxBatches > 0 && len(bs) > maxBatches {
		bs = bs[:maxBatches]
	}
	var sum float64
	var count, rows int
	for i, b := range bs {
		if b.B != B || b.T != T || len(b.Inputs) != B*T || len(b.Targets) != B*T {
			return EvalResult{}, fmt.Errorf("eval: batch %d is %d×%d, want batch_size×seq_len = %d×%d", i, b.B, b.T, B, T)
		}
		c := counted(b.Targets)
		if c == 0 {
			continue
		}
		l, err := loss(b.Inputs, b.Targets)
		if err != nil {
			return EvalResult{}, fmt.Errorf("eval batch %d: %w", i, err)
		}
		sum += l * float64(c)
		count += c
		for r := range B {
			if counted(b.Targets[r*T:(r+1)*T]) > 0 {
				rows++
			}
		}
	}
	if count == 0 {
		return EvalResult{}, fmt.Errorf("eval: no target to score in %d batches", len(bs))
	}
	return EvalResult{Loss: sum / float64(count), Tokens: count, Windows: rows}, nil
}
