package train

import (
	"fmt"

	"lens/engine/data"
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

// forwardNet is a forward-only graph for one batch shape over shared weights.
type forwardNet struct {
	feed *nn.Feed
	net  *model.Net[float32]
	mach *nn.Machine[float32]
}

func newForwardNet(m *model.Model, ad *lora.Adapter, batch, seqLen int) (*forwardNet, error) {
	feed := &nn.Feed{B: batch, T: seqLen}
	g := nn.NewGraph[float32](feed)
	var ads map[string]model.Adapter
	if ad != nil {
		ads = ad.GraphAdapters()
	}
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

// eval runs windows through the net, maxBatches batches at most (0: all).
func (f *forwardNet) eval(tokens []int32, maxBatches int) (EvalResult, error) {
	B, T := f.feed.B, f.feed.T
	f.feed.Inputs = make([]int32, B*T)
	f.feed.Targets = make([]int32, B*T)
	return evalWindows(tokens, B, T, maxBatches, f.feed.Inputs, f.feed.Targets, f.mach.Run)
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
	f, err := newForwardNet(m, ad, batch, seqLen)
	if err != nil {
		return EvalResult{}, err
	}
	defer f.mach.Close()
	return f.eval(tokens, 0)
}
