package acceltest

import (
	"fmt"
	"math"
	"math/rand/v2"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
)

// QuantStep checks LoRA over a packed base (QLoRA: base_quant nf4, nf4-dq,
// bf16) on dev, for Llama with an untied and a tied head, Qwen2 (q/k/v
// biases), Qwen3 (q/k norms) and Gemma 3 (local and global layers): the step's loss and every adapter
// gradient, with and without dropout masks, within tol of the gorgonia
// graph over the same packed model (model.Build widens the same codes);
// the checkpointed step's loss and gradients equal the plain step's bit for
// bit; a forward-only step's loss matches the graph's; full fine-tuning
// over a packed base is refused. Without all, each family runs one kind in
// turn (every kind, every family, fewer steps: for the CUDA emulator).
func QuantStep(t *testing.T, dev accel.Device, tol float64, all bool) {
	const B, T = 2, 16
	for fi, fam := range []struct {
		name string
		edit func(*model.Config)
	}{
		{"llama untied", func(*model.Config) {}},
		{"llama tied", func(c *model.Config) { c.TieWordEmbeddings = true }},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }},
		{"qwen3", func(c *model.Config) { c.ModelType = "qwen3"; c.HeadDim = 16 }},
		{"gemma3", func(c *model.Config) {
			// Layer 0 local (window 5 < T), layer 1 global; tied bf16 table.
			c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 8, 12
			c.SlidingWindow, c.SlidingWindowPattern, c.TieWordEmbeddings = 5, 2, true
			c.RopeTheta, c.RopeLocalBaseFreq = 1e6, 1e4
		}},
	} {
		m := familyModel(t, fam.edit)
		ShiftVectors(m, 1) // biases start at 0 and norms at 1
		rng := rand.New(rand.NewPCG(1, 2))
		ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 3)
		require.NoError(t, err)
		for _, bt := range ad.B {
			for i := range bt.Data {
				bt.Data[i] = float32(rng.NormFloat64() * 0.1)
			}
		}
		ads := ad.GraphAdapters()
		feed := &nn.Feed{B: B, T: T, Masks: map[string][]float32{}}
		for i := range B * T {
			feed.Inputs = append(feed.Inputs, int32(i*7%64))
			feed.Targets = append(feed.Targets, int32(i*5%64))
		}
		feed.Targets[3] = -100
		for i, mod := range ad.Modules {
			if i%3 != 1 {
				continue
			}
			mk := make([]float32, B*T*ad.A[mod].Shape[1])
			for j := range mk {
				if rng.Float64() < 0.8 {
					mk[j] = 1 / 0.8
				}
			}
			feed.Masks[mod] = mk
		}
		for ki, kind := range model.QuantKinds {
			if !all && ki != fi%len(model.QuantKinds) {
				continue
			}
			t.Run(fam.name+" "+kind, func(t *testing.T) {
				q, err := m.Quantized(kind)
				require.NoError(t, err)
				s, err := accel.NewStep(dev, q, ads, B, T)
				require.NoError(t, err)
				defer s.Close()
				ck, err := accel.NewCheckpointedStep(dev, q, ads, B, T)
				require.NoError(t, err)
				defer ck.Close()
				for _, masks := range []map[string][]float32{nil, feed.Masks} {
					f := *feed
					f.Masks = masks
					what := fmt.Sprintf("masks %v", masks != nil)
					sameStep(t, dev, s, q, ads, &f, tol, what)
					sameBits(t, s, ck, ads, &f, what)
				}

				p, err := s.ForwardOnly(1)
				require.NoError(t, err)
				defer p.Close()
				f1 := &nn.Feed{B: 1, T: T, Inputs: feed.Inputs[:T], Targets: feed.Targets[:T]}
				g := nn.NewGraph[float32](f1)
				net, err := model.Build(g, q, ads, false)
				require.NoError(t, err)
				mach, err := g.Compile(net.Loss)
				require.NoError(t, err)
				defer mach.Close()
				want, err := mach.Run()
				require.NoError(t, err)
				got, err := p.Loss(f1.Inputs, f1.Targets)
				require.NoError(t, err)
				require.InDelta(t, want, got, tol*math.Abs(want), "forward-only loss")

				_, err = accel.NewFullStep(dev, q, B, T)
				require.ErrorContains(t, err, "full training needs float32")
			})
		}
	}
}

// sameBits runs one pass of the plain step s and the checkpointed step ck
// over the adapters ads and requires the same loss and gradients bit for
// bit.
func sameBits(t *testing.T, s, ck *accel.Step, ads map[string]model.Adapter, f *nn.Feed, what string) {
	t.Helper()
	want, err := s.Run(f.Inputs, f.Targets, f.Masks)
	require.NoError(t, err)
	got, err := ck.Run(f.Inputs, f.Targets, f.Masks)
	require.NoError(t, err)
	require.Equal(t, math.Float64bits(want), math.Float64bits(got), "checkpointed loss %v, plain %v (%s)", got, want, what)
	require.Equal(t, s.Params(), ck.Params())
	for _, name := range s.Params() {
		path, side := strings.TrimSuffix(name, ".lora_A"), ads[strings.TrimSuffix(name, ".lora_A")].A
		if path == name {
			path = strings.TrimSuffix(name, ".lora_B")
			side = ads[path].B
		}
		wg, cg := make([]float32, len(side.Data)), make([]float32, len(side.Data))
		require.NoError(t, s.Grad(name, wg))
		require.NoError(t, ck.Grad(name, cg))
		for j := range wg {
			if math.Float32bits(wg[j]) != math.Float32bits(cg[j]) {
				t.Fatalf("%s [%d]: %v checkpointed, %v plain (%s)", name, j, cg[j], wg[j], what)
			}
		}
	}
}
