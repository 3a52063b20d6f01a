package acceltest

import (
	"context"
	"fmt"
	"math"
	"math/rand/v2"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/generate"
	"lens/engine/lora"
	"lens/engine/model"
)

// DecodeKernels checks dev's accel.Decoder kernels. CachedAttention is
// compared with the training attention (Host.Attention over the whole
// sequence, the reference the device kernels are held to): the rows of
// the queries at Pos… of a full causal attention, for a prefill (Pos 0), a
// chunk after a prefix and single decode rows, with grouped and shared
// key/value heads. The cache's rows past Pos+M are NaN, so reading them
// would show. Copy is checked against Go's copy, and out-of-range copies
// fail.
func DecodeKernels(t testing.TB, dev accel.Device, tol float64) {
	dec, ok := dev.(accel.Decoder)
	require.True(t, ok, "%s does not implement accel.Decoder", dev.Name())
	rng := rand.New(rand.NewPCG(4, 4))
	randn := func(n int) []float32 {
		v := make([]float32, n)
		for i := range v {
			v[i] = float32(rng.NormFloat64())
		}
		return v
	}
	var bufs []accel.Buf
	defer func() {
		for _, b := range bufs {
			dev.Free(b)
		}
	}()
	put := func(v []float32) accel.Buf {
		b, err := dev.Alloc(len(v))
		require.NoError(t, err)
		bufs = append(bufs, b)
		require.NoError(t, dev.Upload(b, v))
		return b
	}
	get := func(b accel.Buf) []float32 {
		v := make([]float32, b.Len())
		require.NoError(t, dev.Download(v, b))
		return v
	}

	src, dst := randn(70), randn(50)
	want := slices.Clone(dst)
	copy(want[7:7+33], src[20:20+33])
	db := put(dst)
	require.NoError(t, dec.Copy(db, 7, put(src), 20, 33))
	require.Equal(t, want, get(db), "copy of 33 floats from offset 20 to offset 7")
	require.Error(t, dec.Copy(db, 40, put(src), 0, 11), "a copy past dst's end")
	require.Error(t, dec.Copy(db, 0, put(src), 60, 11), "a copy past src's end")
	require.NoError(t, dec.Copy(db, 50, put(src), 70, 0), "an empty copy at the ends")

	host := accel.Host{}
	for _, c := range []struct {
		T, Pos, NH, NKV, D, Window int
		Scale                      float64
	}{
		{9, 0, 4, 2, 8, 0, 0},      // prefill, GQA
		{9, 5, 4, 2, 8, 0, 0},      // a chunk after a prefix
		{9, 8, 4, 2, 8, 0, 0},      // one decode row
		{70, 69, 6, 1, 12, 0, 0},   // MQA, more positions than a 64-wide tile
		{70, 3, 3, 3, 16, 0, 0},    // many rows
		{9, 0, 4, 2, 8, 3, 0},      // prefill through a sliding window
		{70, 40, 4, 2, 8, 9, 0.2},  // a chunk, window and explicit scale (Gemma)
		{70, 69, 6, 1, 12, 70, 0},  // a window as long as the sequence
		{70, 69, 6, 3, 12, 5, 0.3}, // one decode row in a window
	} {
		what := fmt.Sprintf("cached attention T %d Pos %d NH %d NKV %d D %d Window %d Scale %g", c.T, c.Pos, c.NH, c.NKV, c.D, c.Window, c.Scale)
		qw, kw, M := c.NH*c.D, c.NKV*c.D, c.T-c.Pos
		q, k, v := randn(c.T*qw), randn(c.T*kw), randn(c.T*kw)
		hq, _ := host.Alloc(len(q))
		hk, _ := host.Alloc(len(k))
		hv, _ := host.Alloc(len(v))
		require.NoError(t, host.Upload(hq, q))
		require.NoError(t, host.Upload(hk, k))
		require.NoError(t, host.Upload(hv, v))
		hout, _ := host.Alloc(len(q))
		hp, _ := host.Alloc(c.NH * c.T * c.T)
		require.NoError(t, host.Attention(hout, hp, hq, hk, hv, accel.Attn{B: 1, T: c.T, NH: c.NH, NKV: c.NKV, D: c.D, Window: c.Window, Scale: c.Scale}))
		ref := make([]float32, len(q))
		require.NoError(t, host.Download(ref, hout))

		// A cache with room for 5 more positions, NaN there.
		nan := make([]float32, 5*kw)
		for i := range nan {
			nan[i] = float32(math.NaN())
		}
		kc, vc := put(append(slices.Clone(k), nan...)), put(append(slices.Clone(v), nan...))
		out, p := put(make([]float32, M*qw)), put(make([]float32, c.NH*M*c.T))
		a := accel.CacheAttn{M: M, Pos: c.Pos, NH: c.NH, NKV: c.NKV, D: c.D, Window: c.Window, Scale: c.Scale}
		require.NoError(t, dec.CachedAttention(out, p, put(q[c.Pos*qw:]), kc, vc, a), what)
		got := get(out)
		for i, w := range ref[c.Pos*qw:] {
			if e := math.Abs(float64(got[i]-w)) / (1 + math.Abs(float64(w))); !(e <= tol) {
				t.Fatalf("%s: element %d is %g on %s, %g in the full attention (error %.3g > %g)", what, i, got[i], dev.Name(), w, e, tol)
			}
		}
	}
	small := put(make([]float32, 10))
	require.Error(t, dec.CachedAttention(small, small, small, small, small, accel.CacheAttn{M: 1, Pos: 3, NH: 2, NKV: 1, D: 8}), "operands too small")
	require.Error(t, dec.CachedAttention(small, small, small, small, small, accel.CacheAttn{M: 1, Pos: 0, NH: 3, NKV: 2, D: 1}), "NH not a multiple of NKV")
}

// DecodeModel is a random model small enough for the CUDA emulator, with
// an adapter whose B is not zero (nil when rank is 0).
func DecodeModel(t testing.TB, c model.Config, rank int, targets []string, seed uint64) (*model.Model, *lora.Adapter) {
	c.RMSNormEps, c.RopeTheta, c.InitializerRange = 1e-5, 10000, 0.2
	m, err := model.New(c, seed)
	require.NoError(t, err)
	if rank == 0 {
		return m, nil
	}
	ad, err := lora.New(m, lora.Config{Rank: rank, Alpha: float64(2 * rank), Targets: targets}, seed)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(seed, 5))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.1)
		}
	}
	return m, ad
}

// Decode generates greedily on dev and on the CPU (engine/generate's
// plain-Go path, itself checked against PyTorch) from the same prompts:
// the tokens must be identical and every step's logits within tol. Models:
// GQA with an untied head and an adapter on every linear module, MQA with
// a tied head and an adapter on q and v, and GQA without an adapter and
// with linear rope_scaling. It
// also appends a prompt to a device session in chunks (a prefill after a
// prefix), which must give the logits of the whole prompt at once.
// newTokens and the prompt lengths size the run (the CUDA emulator takes
// milliseconds a launch).
func Decode(t testing.TB, dev accel.Device, tol float64, newTokens int, promptLens ...int) {
	for i, c := range []struct {
		name    string
		cfg     model.Config
		rank    int
		targets []string
	}{
		{"gqa untied, adapter on every linear", model.Config{VocabSize: 97, HiddenSize: 48, IntermediateSize: 80, NumHiddenLayers: 2,
			NumAttentionHeads: 6, NumKeyValueHeads: 2, MaxPositionEmbeddings: 96}, 4, []string{"all-linear"}},
		{"mqa tied, adapter on q and v", model.Config{VocabSize: 61, HiddenSize: 32, IntermediateSize: 40, NumHiddenLayers: 2,
			NumAttentionHeads: 4, NumKeyValueHeads: 1, MaxPositionEmbeddings: 80, TieWordEmbeddings: true}, 2, []string{"q_proj", "v_proj"}},
		{"gqa, no adapter, linear rope_scaling", model.Config{VocabSize: 80, HiddenSize: 32, IntermediateSize: 48, NumHiddenLayers: 1,
			NumAttentionHeads: 4, NumKeyValueHeads: 2, MaxPositionEmbeddings: 80,
			RopeScaling: &model.RopeScaling{RopeType: "linear", Factor: 2}}, 0, nil},
	} {
		m, ad := DecodeModel(t, c.cfg, c.rank, c.targets, uint64(20+i))
		cpu, err := generate.New(m, ad)
		require.NoError(t, err)
		on, err := generate.NewOn(dev, m, ad)
		require.NoError(t, err, c.name)
		rng := rand.New(rand.NewPCG(uint64(i), 9))
		for _, n := range promptLens {
			p := make([]int32, n)
			for j := range p {
				p[j] = int32(rng.IntN(c.cfg.VocabSize))
			}
			run := func(g *generate.Generator) ([]int32, [][]float32) {
				var steps [][]float32
				out, err := g.Generate(context.Background(), p, generate.Options{MaxNewTokens: newTokens, Observe: func(_ int, l []float32) {
					steps = append(steps, slices.Clone(l))
				}}, nil)
				require.NoError(t, err, "%s on %s", c.name, g.Device())
				return out, steps
			}
			want, wantL := run(cpu)
			got, gotL := run(on)
			require.Equal(t, want, got, "%s, prompt of %d: tokens on %s and on the CPU", c.name, n, dev.Name())
			for s := range wantL {
				d := maxDiff(wantL[s], gotL[s])
				require.Less(t, d, tol, "%s, prompt of %d, step %d: logits on %s and on the CPU differ by %g", c.name, n, s, dev.Name(), d)
			}
		}
		// The whole prompt at once, then in chunks of 7, 1 and the rest.
		p := make([]int32, 20)
		for j := range p {
			p[j] = int32(rng.IntN(c.cfg.VocabSize))
		}
		s, err := cpu.NewSession(len(p))
		require.NoError(t, err)
		want, err := s.Append(p)
		require.NoError(t, err)
		ds, err := on.NewSession(len(p))
		require.NoError(t, err)
		var chunked []float32
		for _, r := range [][2]int{{0, 7}, {7, 8}, {8, 20}} {
			chunked, err = ds.Append(p[r[0]:r[1]])
			require.NoError(t, err)
		}
		d := maxDiff(want, chunked)
		require.Less(t, d, tol, "%s: the prompt in chunks on %s and at once on the CPU differ by %g", c.name, dev.Name(), d)
		_, err = ds.Append(p[:1])
		require.ErrorContains(t, err, "exceed the session's 20 positions")
		ds.Close()
		require.NoError(t, on.Close())
	}
}

// DecodeFamilies decodes every family the device step trains on dev and
// on the CPU (engine/generate's Session, the reference) with an adapter on
// every linear module and without one, greedily and sampled: the tokens
// must be identical and every step's logits within tol. The families:
// llama with llama3 rope_scaling, mistral with a window shorter than the
// prompt, qwen2 (q/k/v biases), qwen3 (q/k norms), gemma3_text with local
// and global layers, and llama and qwen2 bases held packed (every kind of
// model.QuantKinds). 1-D weights are shifted, so that biases and norms
// matter. Small enough for the CUDA emulator.
func DecodeFamilies(t testing.TB, dev accel.Device, tol float64) {
	type fam struct {
		name string
		edit func(*model.Config)
		kind string // base_quant, "" for float32
	}
	fams := []fam{
		{"llama rope_scaling llama3", func(c *model.Config) {
			c.RopeScaling = &model.RopeScaling{RopeType: "llama3", Factor: 8, LowFreqFactor: 1, HighFreqFactor: 4, OriginalMaxPositionEmbeddings: 16}
		}, ""},
		{"mistral sliding_window 5", func(c *model.Config) { c.ModelType, c.SlidingWindow = "mistral", 5 }, ""},
		{"qwen2", func(c *model.Config) { c.ModelType = "qwen2" }, ""},
		{"qwen3", func(c *model.Config) { c.ModelType, c.HeadDim = "qwen3", 16 }, ""},
		{"gemma3_text local/global", func(c *model.Config) {
			c.ModelType, c.HeadDim, c.HiddenAct, c.NumHiddenLayers = "gemma3_text", 16, "", 3
			c.QueryPreAttnScalar, c.SlidingWindow, c.SlidingWindowPattern = 24, 6, 2
			c.RopeScaling = &model.RopeScaling{RopeType: "linear", Factor: 8}
		}, ""},
	}
	for _, kind := range model.QuantKinds {
		fams = append(fams, fam{"llama " + kind, func(c *model.Config) {}, kind},
			fam{"qwen2 untied " + kind, func(c *model.Config) { c.ModelType, c.TieWordEmbeddings = "qwen2", false }, kind})
	}
	for i, f := range fams {
		c := model.Tiny()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.VocabSize = 64, 96, 2, 70
		c.NumAttentionHeads, c.NumKeyValueHeads, c.MaxPositionEmbeddings = 4, 2, 64
		f.edit(&c)
		m, ad := DecodeModel(t, c, 4, []string{"all-linear"}, uint64(40+i))
		if f.name == "gemma3_text local/global" {
			m.Config.RopeTheta = 1e6 // the global layers' table differs from the local one
		}
		ShiftVectors(m, uint64(i))
		if f.kind != "" {
			var err error
			m, err = m.Quantized(f.kind)
			require.NoError(t, err, f.name)
		}
		for _, a := range []*lora.Adapter{ad, nil} {
			what := fmt.Sprintf("%s, adapter %t", f.name, a != nil)
			cpu, err := generate.New(m, a)
			require.NoError(t, err, what)
			on, err := generate.NewOn(dev, m, a)
			require.NoError(t, err, what)
			p := []int32{3, 60, 17, 8, 41, 22, 9, 5, 33}
			for _, opts := range []generate.Options{{MaxNewTokens: 12}, {MaxNewTokens: 12, Temperature: 1, Seed: 7}} {
				run := func(g *generate.Generator) ([]int32, [][]float32) {
					var steps [][]float32
					opts.Observe = func(_ int, l []float32) { steps = append(steps, slices.Clone(l)) }
					out, err := g.Generate(context.Background(), p, opts, nil)
					require.NoError(t, err, "%s on %s", what, g.Device())
					return out, steps
				}
				want, wantL := run(cpu)
				got, gotL := run(on)
				require.Equal(t, want, got, "%s, temperature %g: tokens on %s and on the CPU", what, opts.Temperature, dev.Name())
				require.Len(t, gotL, len(wantL))
				for s := range wantL {
					d := maxDiff(wantL[s], gotL[s])
					require.Less(t, d, tol, "%s, temperature %g, step %d: logits on %s and on the CPU differ by %g", what, opts.Temperature, s, dev.Name(), d)
				}
			}
			require.NoError(t, on.Close())
		}
	}
}

func maxDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		e := math.Abs(float64(a[i]) - float64(b[i]))
		if math.IsNaN(e) {
			return math.Inf(1)
		}
		d = max(d, e)
	}
	return d
}
