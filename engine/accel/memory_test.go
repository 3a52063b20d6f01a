package accel_test

import (
	"fmt"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/quant"
)

// sizer is a Device that only counts what a step allocates: its buffers
// hold nothing and its uploads copy nothing, so a 1B-shaped step can be
// laid out without the memory. Its kernels (Host's) are never run.
type sizer struct {
	accel.Host
	floats, ints, bytes int
}

type sized int

func (s sized) Len() int { return int(s) }

func (z *sizer) Alloc(n int) (accel.Buf, error)      { z.floats += n; return sized(n), nil }
func (z *sizer) AllocInt(n int) (accel.Buf, error)   { z.ints += n; return sized(n), nil }
func (z *sizer) AllocBytes(n int) (accel.Buf, error) { z.bytes += n; return sized(n), nil }
func (z *sizer) Upload(accel.Buf, []float32) error   { return nil }
func (z *sizer) UploadInt(accel.Buf, []int32) error  { return nil }
func (z *sizer) UploadBytes(accel.Buf, []byte) error { return nil }

// total is the device memory held, in bytes.
func (z *sizer) total() int { return 4*(z.floats+z.ints) + z.bytes }

// TestStepMemory1B lays LoRA steps (r=16 on every linear module, batch
// 1×1024) over Llama-3.2-1B's shape out on a sizer and logs the device
// memory they hold, float32 base against nf4 (the embedding, tied head,
// bf16), with and without checkpointing. The nf4 step holds the packed
// base (codes, float32 scales, bf16 table), one float32 scratch the size of
// the largest packed weight (the 128k×2048 table) and the same activations
// as the float32 step. The weights' values are never touched: every tensor
// views one shared, never written buffer.
func TestStepMemory1B(t *testing.T) {
	c := model.Tiny()
	c.VocabSize, c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 128256, 2048, 8192, 16
	c.NumAttentionHeads, c.NumKeyValueHeads, c.HeadDim, c.TieWordEmbeddings = 32, 8, 64, true
	c.MaxPositionEmbeddings, c.RopeTheta = 1024, 500000
	const B, T, r = 1, 1024, 16
	shapes := c.Shapes()
	most := 0
	for _, s := range shapes {
		most = max(most, model.Size(s))
	}
	f32 := make([]float32, most) // views only: nothing reads or writes it
	codes, bits := make([]byte, most/2), make([]uint16, most)
	dense := &model.Model{Config: c, Weights: map[string]*model.Tensor{}}
	nf4 := &model.Model{Config: c, Weights: map[string]*model.Tensor{}, Packed: map[string]nn.Packed{}, Quant: model.QuantNF4}
	for name, s := range shapes {
		n := model.Size(s)
		dense.Weights[name] = &model.Tensor{Shape: s, Data: f32[:n]}
		nf4.Weights[name] = dense.Weights[name]
		switch {
		case name == model.EmbedName:
			nf4.Packed[name] = &quant.BF16Tensor{Shape: s, Bits: bits[:n]}
		case len(s) == 2:
			nf4.Packed[name] = &quant.NF4Tensor{Shape: s, Codes: codes[:n/2], Absmax: f32[:n/quant.BlockSize]}
		}
		if nf4.Packed[name] != nil {
			nf4.Weights[name] = &model.Tensor{Shape: s}
		}
	}
	require.Len(t, nf4.Packed, 1+7*c.NumHiddenLayers)
	ads := map[string]model.Adapter{}
	for _, path := range c.LinearModules() {
		s := shapes[path+".weight"]
		ads[path] = model.Adapter{A: &model.Tensor{Shape: []int{r, s[1]}, Data: f32[:r*s[1]]},
			B: &model.Tensor{Shape: []int{s[0], r}, Data: f32[:s[0]*r]}, Scale: 2}
	}
	gib := func(b int) string { return fmt.Sprintf("%.2f GiB", float64(b)/(1<<30)) }
	held := map[string]int{}
	for _, ckpt := range []bool{false, true} {
		for _, m := range []*model.Model{dense, nf4} {
			z := &sizer{}
			var s *accel.Step
			var err error
			if ckpt {
				s, err = accel.NewCheckpointedStep(z, m, ads, B, T)
			} else {
				s, err = accel.NewStep(z, m, ads, B, T)
			}
			require.NoError(t, err)
			s.Close()
			base := "float32"
			if m.Quant != "" {
				base = m.Quant
			}
			what := fmt.Sprintf("%s base, checkpointing %v", base, ckpt)
			held[what] = z.total()
			t.Logf("%-34s %s held: %s in byte buffers (codes, bf16 bits), %s float32, %s int32",
				what, gib(z.total()), gib(z.bytes), gib(4*z.floats), gib(4*z.ints))
		}
	}
	// The difference is the base: float32 weights against codes, scales,
	// the bf16 table and the scratch (V·H floats).
	for _, ckpt := range []string{"false", "true"} {
		d, q := held["float32 base, checkpointing "+ckpt], held["nf4 base, checkpointing "+ckpt]
		require.Less(t, q, d-2<<30, "nf4 saves more than 2 GiB (checkpointing %s)", ckpt)
	}
}
