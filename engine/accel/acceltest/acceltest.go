// Package acceltest checks an accel.Device: each kernel against the Host
// reference (engine/kern's kernels) on random inputs (odd sizes, every
// transpose, grouped-query attention, ignored targets, repeated token ids),
// and whole training steps, LoRA and full fine-tuning, against the gorgonia
// graph of engine/nn. The CUDA tests and accel's own tests use it.
package acceltest

import (
	"fmt"
	"maps"
	"math"
	"math/rand/v2"
	"slices"
	"sort"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"

	"lens/engine/accel"
	"lens/engine/kern"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/quant"
)

// pair holds one buffer on the device under test and its Host twin.
type pair struct{ d, h accel.Buf }

type bench struct {
	t      testing.TB
	dev    accel.Device
	host   accel.Host
	rng    *rand.Rand
	allocs []accel.Buf
}

func (b *bench) floats(n int, scale float64) pair {
	v := make([]float32, n)
	for i := range v {
		v[i] = float32(b.rng.NormFloat64() * scale)
	}
	return b.upload(v)
}

func (b *bench) upload(v []float32) pair {
	d, err := b.dev.Alloc(len(v))
	require.NoError(b.t, err)
	b.allocs = append(b.allocs, d)
	require.NoError(b.t, b.dev.Upload(d, v))
	h, _ := b.host.Alloc(len(v))
	require.NoError(b.t, b.host.Upload(h, v))
	return pair{d, h}
}

func (b *bench) ints(v []int32) pair {
	d, err := b.dev.AllocInt(len(v))
	require.NoError(b.t, err)
	b.allocs = append(b.allocs, d)
	require.NoError(b.t, b.dev.UploadInt(d, v))
	h, _ := b.host.AllocInt(len(v))
	require.NoError(b.t, b.host.UploadInt(h, v))
	return pair{d, h}
}

// same downloads both sides and compares them: |d−h| ≤ tol·(1+|h|).
func (b *bench) same(what string, p pair, tol float64) {
	b.t.Helper()
	got := make([]float32, p.d.Len())
	want := make([]float32, p.h.Len())
	require.NoError(b.t, b.dev.Download(got, p.d), what)
	require.NoError(b.t, b.host.Download(want, p.h), what)
	worst, at := 0.0, -1
	for i := range got {
		e := math.Abs(float64(got[i]-want[i])) / (1 + math.Abs(float64(want[i])))
		if math.IsNaN(float64(got[i])) != math.IsNaN(float64(want[i])) {
			e = math.Inf(1)
		}
		if e > worst {
			worst, at = e, i
		}
	}
	if worst > tol {
		b.t.Errorf("%s: element %d is %g on %s, %g on the host (error %.3g > %g)", what, at, got[at], b.dev.Name(), want[at], worst, tol)
	}
}

// Kernels runs every kernel of dev and of the Host on the same random
// inputs and compares the outputs within tol (relative to 1+|host value|).
func Kernels(t testing.TB, dev accel.Device, tol float64) {
	b := &bench{t: t, dev: dev, rng: rand.New(rand.NewPCG(1, 2))}
	defer func() {
		for _, a := range b.allocs {
			dev.Free(a)
		}
	}()
	type both = func(k accel.Kernels, x func(pair) accel.Buf) error
	run := func(what string, f both, outs ...pair) {
		t.Helper()
		require.NoError(t, f(dev, func(p pair) accel.Buf { return p.d }), what+" on "+dev.Name())
		require.NoError(t, f(b.host, func(p pair) accel.Buf { return p.h }), what+" on the host")
		for i, o := range outs {
			b.same(fmt.Sprintf("%s output %d", what, i), o, tol)
		}
	}

	// Matrix products: every transpose, odd sizes, strided operands, beta,
	// and long k over few output tiles (a GPU splits those along k).
	for _, sh := range [][3]int{{37, 29, 53}, {1, 130, 7}, {130, 1, 65}, {64, 64, 64}, {200, 8, 300}, {8, 70, 1100}, {150, 130, 256}} {
		m, n, k := sh[0], sh[1], sh[2]
		for _, ta := range []bool{false, true} {
			for _, tb := range []bool{false, true} {
				for _, beta := range []float32{0, 1} {
					ar, ac := m, k
					if ta {
						ar, ac = k, m
					}
					br, bc := k, n
					if tb {
						br, bc = n, k
					}
					lda, ldb, ldc := ac+3, bc+1, n+2
					a, bb, c := b.floats(ar*lda, 1), b.floats(br*ldb, 1), b.floats(m*ldc, 1)
					run(fmt.Sprintf("Gemm ta=%v tb=%v %d×%d×%d beta=%g", ta, tb, m, n, k, beta), func(kk accel.Kernels, x func(pair) accel.Buf) error {
						return kk.Gemm(ta, tb, m, n, k, 0.7, x(a), lda, x(bb), ldb, beta, x(c), ldc)
					}, c)
				}
			}
		}
	}

	const rows, h = 67, 96
	table := b.floats(50*h, 1)
	ids := make([]int32, rows)
	for i := range ids {
		ids[i] = int32(b.rng.IntN(50))
	}
	idp := b.ints(ids)
	emb := b.floats(rows*h, 0)
	run("Embed", func(k accel.Kernels, x func(pair) accel.Buf) error { return k.Embed(x(emb), x(table), x(idp), rows, h) }, emb)

	x, w := b.floats(rows*h, 2), b.floats(h, 1)
	out, rinv := b.floats(rows*h, 0), b.floats(rows, 0)
	dy, dx, dw := b.floats(rows*h, 1), b.floats(rows*h, 0), b.floats(h, 3)
	for _, off := range []float32{0, 1} { // Gemma's (1 + w) norms
		run(fmt.Sprintf("RMSNorm off=%g", off), func(k accel.Kernels, f func(pair) accel.Buf) error {
			return k.RMSNorm(f(out), f(rinv), f(x), f(w), rows, h, 1e-5, off)
		}, out, rinv)
		run(fmt.Sprintf("RMSNormBack off=%g", off), func(k accel.Kernels, f func(pair) accel.Buf) error {
			return k.RMSNormBack(f(dx), f(dw), f(x), f(w), f(rinv), f(dy), rows, h, off)
		}, dx, dw)
		run(fmt.Sprintf("RMSNormBack off=%g without dw", off), func(k accel.Kernels, f func(pair) accel.Buf) error {
			return k.RMSNormBack(f(dx), nil, f(x), f(w), f(rinv), f(dy), rows, h, off)
		}, dx)
	}
	// The embedding's gradient adds into what the table's gradient holds
	// (a tied head's part), and ids repeat (50 ids over 67 rows).
	dtable := b.floats(50*h, 1)
	run("EmbedBack", func(k accel.Kernels, f func(pair) accel.Buf) error {
		return k.EmbedBack(f(dtable), f(idp), f(dy), rows, h)
	}, dtable)

	const seq, hd = 16, 32
	cosT, sinT := kern.RopeTable(seq, hd, 10000)
	cp, sp := b.upload(cosT), b.upload(sinT)
	rx, ry := b.floats(4*seq*3*hd, 1), b.floats(4*seq*3*hd, 0)
	for _, back := range []bool{false, true} {
		run(fmt.Sprintf("RoPE back=%v", back), func(k accel.Kernels, f func(pair) accel.Buf) error {
			return k.RoPE(f(ry), f(rx), f(cp), f(sp), 4*seq, 3*hd, seq, hd, back)
		}, ry)
	}

	// Causal, sliding windows shorter than T (Mistral, Gemma's local
	// layers), an explicit scale (Gemma) and packed rows (segments), alone
	// and together.
	seg := func(B, T int, lens ...int) []int32 {
		s := make([]int32, 0, B*T)
		for b := range B {
			for id, i := int32(0), 0; len(s) < (b+1)*T; i++ {
				for range min(lens[i%len(lens)], (b+1)*T-len(s)) {
					s = append(s, id)
				}
				id++
			}
		}
		return s
	}
	for _, at := range []accel.Attn{
		{B: 2, T: 37, NH: 4, NKV: 2, D: 16}, {B: 1, T: 130, NH: 2, NKV: 2, D: 64}, {B: 2, T: 9, NH: 3, NKV: 1, D: 8},
		{B: 2, T: 37, NH: 4, NKV: 2, D: 16, Window: 5, Scale: 0.3},
		{B: 1, T: 130, NH: 2, NKV: 1, D: 32, Window: 70},
		{B: 2, T: 37, NH: 4, NKV: 2, D: 16, Seg: seg(2, 37, 5, 11, 1, 30)},
		{B: 2, T: 37, NH: 2, NKV: 2, D: 8, Window: 4, Scale: 0.5, Seg: seg(2, 37, 9, 2, 17)},
	} {
		N := at.B * at.T
		q, k, v := b.floats(N*at.NH*at.D, 1), b.floats(N*at.NKV*at.D, 1), b.floats(N*at.NKV*at.D, 1)
		o, p := b.floats(N*at.NH*at.D, 0), b.floats(at.B*at.NH*at.T*at.T, 0)
		run(fmt.Sprintf("Attention %+v", at), func(kk accel.Kernels, f func(pair) accel.Buf) error {
			return kk.Attention(f(o), f(p), f(q), f(k), f(v), at)
		}, o, p)
		do := b.floats(N*at.NH*at.D, 1)
		dq, dk, dv := b.floats(N*at.NH*at.D, 0), b.floats(N*at.NKV*at.D, 3), b.floats(N*at.NKV*at.D, 3)
		ds := b.floats(at.B*at.NH*at.T*at.T, 0)
		run(fmt.Sprintf("AttentionBack %+v", at), func(kk accel.Kernels, f func(pair) accel.Buf) error {
			return kk.AttentionBack(f(dq), f(dk), f(dv), f(ds), f(q), f(k), f(v), f(p), f(o), f(do), at)
		}, dq, dk, dv)
	}

	const n = 10007
	g, u := b.floats(n, 3), b.floats(n, 1)
	y, sig := b.floats(n, 0), b.floats(n, 0)
	run("SwiGLU", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.SwiGLU(f(y), f(sig), f(g), f(u), n) }, y, sig)
	dyy, dg, du := b.floats(n, 1), b.floats(n, 0), b.floats(n, 0)
	run("SwiGLUBack", func(k accel.Kernels, f func(pair) accel.Buf) error {
		return k.SwiGLUBack(f(dg), f(du), f(g), f(u), f(sig), f(dyy), n)
	}, dg, du)
	run("GeGLU", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.GeGLU(f(y), f(sig), f(g), f(u), n) }, y, sig)
	run("GeGLUBack", func(k accel.Kernels, f func(pair) accel.Buf) error {
		return k.GeGLUBack(f(dg), f(du), f(g), f(u), f(sig), f(dyy), n)
	}, dg, du)
	sc := b.floats(n, 0)
	run("Scale", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.Scale(f(sc), f(g), n, 5.656854) }, sc)
	run("Scale in place", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.Scale(f(sc), f(sc), n, -0.75) }, sc)
	sum := b.floats(n, 0)
	run("Add", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.Add(f(sum), f(g), f(u), n) }, sum)
	for _, acc := range []bool{false, true} {
		run(fmt.Sprintf("Mul acc=%v", acc), func(k accel.Kernels, f func(pair) accel.Buf) error { return k.Mul(f(sum), f(g), f(u), n, acc) }, sum)
	}

	const ceRows, vocab = 45, 300
	logits := b.floats(ceRows*vocab, 4)
	tg := make([]int32, ceRows)
	for i := range tg {
		tg[i] = int32(b.rng.IntN(vocab))
		if i%7 == 3 {
			tg[i] = -100
		}
	}
	tp := b.ints(tg)
	dl, rl := b.floats(ceRows*vocab, 5), b.floats(ceRows, 5)
	run("CrossEntropy", func(k accel.Kernels, f func(pair) accel.Buf) error {
		return k.CrossEntropy(f(dl), f(rl), f(logits), f(tp), ceRows, vocab, 1.0/38)
	}, dl, rl)

	big := b.floats(300007, 1)
	tot := b.floats(1, 0)
	run("Sum", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.Sum(f(tot), f(big), 300007) }, tot)

	pp, gg, mm, vv := b.floats(n, 1), b.floats(n, 1), b.floats(n, 0.1), b.upload(squares(b, n))
	hp := accel.AdamParams{Beta1: 0.9, Beta2: 0.999, Eps: 1e-8, Step: 1e-3, Sq: 1.2, Decay: 0.999, GScale: 0.5}
	run("AdamW", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.AdamW(f(pp), f(gg), f(mm), f(vv), n, hp) }, pp, mm, vv)

	// Widening packed weights is exact on every device: the same float32
	// product (NF4) or bit move (bf16) as engine/quant, whatever tol is.
	// An odd count with a partial last block; a block of zeros (absmax 0).
	const nq = 64*40 + 13
	xs := make([]float32, nq)
	for i := range xs {
		xs[i] = float32(b.rng.NormFloat64() * 0.05)
	}
	clear(xs[128:192])
	for _, double := range []bool{false, true} {
		q, err := quant.QuantizeNF4(xs, []int{nq}, double)
		require.NoError(t, err)
		codes, scales, out := b.bytes(q.Codes), b.upload(q.Scales()), b.floats(nq, 1)
		what := fmt.Sprintf("DequantNF4 double=%v", double)
		run(what, func(k accel.Kernels, f func(pair) accel.Buf) error {
			return k.DequantNF4(f(out), f(codes), f(scales), nq)
		}, out)
		b.exact(what, out, q.Widen)
	}
	bf, err := quant.ToBF16(xs, []int{nq})
	require.NoError(t, err)
	bits, wide := b.bytes(accel.BF16Bytes(bf.Bits)), b.floats(nq, 1)
	run("WidenBF16", func(k accel.Kernels, f func(pair) accel.Buf) error { return k.WidenBF16(f(wide), f(bits), nq) }, wide)
	b.exact("WidenBF16", wide, bf.Widen)
}

// bytes uploads v into a byte buffer on both devices.
func (b *bench) bytes(v []byte) pair {
	d, err := b.dev.AllocBytes(len(v))
	require.NoError(b.t, err)
	b.allocs = append(b.allocs, d)
	require.NoError(b.t, b.dev.UploadBytes(d, v))
	h, _ := b.host.AllocBytes(len(v))
	require.NoError(b.t, b.host.UploadBytes(h, v))
	return pair{d, h}
}

// exact requires both sides of p to hold what widen writes, bit for bit.
func (b *bench) exact(what string, p pair, widen func([]float32)) {
	b.t.Helper()
	want := make([]float32, p.h.Len())
	widen(want)
	for _, side := range []struct {
		dev accel.Device
		buf accel.Buf
	}{{b.dev, p.d}, {b.host, p.h}} {
		got := make([]float32, len(want))
		require.NoError(b.t, side.dev.Download(got, side.buf), what)
		for i := range want {
			if math.Float32bits(got[i]) != math.Float32bits(want[i]) {
				b.t.Errorf("%s: value %d is %g on %s, engine/quant widens it to %g", what, i, got[i], side.dev.Name(), want[i])
				break
			}
		}
	}
}

func squares(b *bench, n int) []float32 {
	v := make([]float32, n)
	for i := range v {
		r := b.rng.NormFloat64() * 0.01
		v[i] = float32(r * r)
	}
	return v
}

// Model is a small model with grouped-query attention, an untied head and
// LoRA (r=4, random B so that every gradient is non-zero) on every linear
// module of every layer.
func Model(t testing.TB) (*model.Model, *lora.Adapter) { return modelOf(t, nil) }

// GemmaModel is Model as Gemma 3 (gemma3_text): a local layer (sliding
// window 5, RoPE base 10⁴) and a global one (10⁶), q/k norms,
// query_pre_attn_scalar 12, a tied head, its norms moved away from 0.
func GemmaModel(t testing.TB) (*model.Model, *lora.Adapter) {
	return modelOf(t, func(c *model.Config) {
		c.ModelType, c.HeadDim, c.QueryPreAttnScalar = "gemma3_text", 16, 12
		c.SlidingWindow, c.SlidingWindowPattern, c.TieWordEmbeddings = 5, 2, true
		c.RopeTheta, c.RopeLocalBaseFreq = 1e6, 1e4
	})
}

// ShiftVectors adds noise (σ 0.3, from a PCG seeded with seed, in name
// order so that the model is the same on every run) to every 1-D weight of
// m: biases start at 0 and norms at 1 (Gemma's at 0), values under which a
// wrong bias or norm gradient would go unnoticed.
func ShiftVectors(m *model.Model, seed uint64) {
	rng := rand.New(rand.NewPCG(seed, seed+1))
	for _, name := range slices.Sorted(maps.Keys(m.Weights)) {
		if w := m.Weights[name]; len(w.Shape) == 1 {
			for i := range w.Data {
				w.Data[i] += float32(rng.NormFloat64() * 0.3)
			}
		}
	}
}

func modelOf(t testing.TB, edit func(*model.Config)) (*model.Model, *lora.Adapter) {
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 64, 96, 2
	c.NumAttentionHeads, c.NumKeyValueHeads, c.TieWordEmbeddings = 4, 2, false
	if edit != nil {
		edit(&c)
	}
	m, err := model.New(c, 7)
	require.NoError(t, err)
	if c.Gemma() { // (1 + w) norms start at w = 0: make them matter
		ShiftVectors(m, 7)
	}
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 3)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 6))
	for _, bt := range ad.B {
		for i := range bt.Data {
			bt.Data[i] = float32(rng.NormFloat64() * 0.05)
		}
	}
	return m, ad
}

// Step trains one batch on dev through accel.Step and through the
// engine/nn graph and compares the loss and every adapter gradient
// within tol (relative to the gradient's largest entry), with and
// without dropout masks; then checks Update against AdamW on the host.
func Step(t testing.TB, dev accel.Device, tol float64) {
	m, ad := Model(t)
	const B, T = 2, 24
	rng := rand.New(rand.NewPCG(9, 9))
	inputs, targets := make([]int32, B*T), make([]int32, B*T)
	for i := range inputs {
		inputs[i] = int32(rng.IntN(m.Config.VocabSize))
		targets[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	targets[5], targets[30] = -100, -100
	masks := map[string][]float32{}
	for i, mod := range ad.Modules {
		if i%3 != 0 {
			continue
		}
		in := ad.A[mod].Shape[1]
		mk := make([]float32, B*T*in)
		for j := range mk {
			if rng.Float64() < 0.8 {
				mk[j] = 1 / 0.8
			}
		}
		masks[mod] = mk
	}
	s, err := accel.NewStep(dev, m, ad.GraphAdapters(), B, T)
	require.NoError(t, err)
	defer s.Close()
	for _, withMasks := range []bool{false, true} {
		var mk map[string][]float32
		if withMasks {
			mk = masks
		}
		feed := &nn.Feed{B: B, T: T, Inputs: inputs, Targets: targets, Masks: mk}
		sameStep(t, dev, s, m, ad.GraphAdapters(), feed, tol, fmt.Sprintf("masks %v", withMasks))
	}

	// One AdamW update on the device against the same formula on the host.
	name := s.Params()[0]
	a := ad.A[ad.Modules[0]]
	grad := make([]float32, len(a.Data))
	require.NoError(t, s.Grad(name, grad))
	data := append([]float32(nil), a.Data...)
	mo, vo := make([]float32, len(data)), make([]float32, len(data))
	for i := range mo {
		mo[i], vo[i] = float32(rng.NormFloat64()*1e-3), float32(1e-6*rng.Float64())
	}
	require.NoError(t, s.SetParam(name, data, mo, vo))
	hp := accel.AdamParams{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, Step: 1e-2, Sq: 1.5, Decay: 0.99, GScale: 0.8}
	gd, gm, gv := make([]float32, len(data)), make([]float32, len(data)), make([]float32, len(data))
	require.NoError(t, s.Update(name, grad, hp, gd, gm, gv))
	hb := func(v []float32) accel.Buf {
		b, _ := accel.Host{}.Alloc(len(v))
		_ = accel.Host{}.Upload(b, v)
		return b
	}
	hd, hg, hm, hv := hb(data), hb(grad), hb(mo), hb(vo)
	require.NoError(t, accel.Host{}.AdamW(hd, hg, hm, hv, len(data), hp))
	for _, c := range []struct {
		what      string
		got       []float32
		wantOnDev accel.Buf
	}{{"data", gd, hd}, {"m", gm, hm}, {"v", gv, hv}} {
		want := make([]float32, len(data))
		require.NoError(t, accel.Host{}.Download(want, c.wantOnDev))
		for i := range want {
			require.InDelta(t, want[i], c.got[i], 1e-6*(1+math.Abs(float64(want[i]))), "AdamW %s[%d]", c.what, i)
		}
	}
	require.NotEqual(t, data, gd, "AdamW left the tensor unchanged")
}

// FullStep trains one batch with every weight trainable through
// accel.NewFullStep and through the graph built with trainBase, with an
// untied and a tied head, and compares the loss and every weight's
// gradient within tol (relative to the gradient's largest entry); then
// checks that Update moves a weight as AdamW on the host does and that a
// forward-only step sees the new value.
func FullStep(t testing.TB, dev accel.Device, tol float64) {
	for _, tied := range []bool{false, true} {
		c := model.Tiny()
		c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers = 64, 96, 2
		c.NumAttentionHeads, c.NumKeyValueHeads, c.TieWordEmbeddings = 4, 2, tied
		m, err := model.New(c, 11)
		require.NoError(t, err)
		const B, T = 2, 16
		rng := rand.New(rand.NewPCG(4, 4))
		inputs, targets := make([]int32, B*T), make([]int32, B*T)
		for i := range inputs {
			// Few distinct ids, so that embedding rows collect several
			// positions' gradients.
			inputs[i] = int32(rng.IntN(20))
			targets[i] = int32(rng.IntN(c.VocabSize))
		}
		targets[3] = -100
		s, err := accel.NewFullStep(dev, m, B, T)
		require.NoError(t, err)
		feed := &nn.Feed{B: B, T: T, Inputs: inputs, Targets: targets}
		sameStep(t, dev, s, m, nil, feed, tol, fmt.Sprintf("tied %v", tied))

		// Update a norm weight (a 1-D tensor) and check a forward-only step
		// shares it.
		name := "model.layers.1.input_layernorm.weight"
		grad := make([]float32, c.HiddenSize)
		require.NoError(t, s.Grad(name, grad))
		data := append([]float32(nil), m.Weights[name].Data...)
		hp := accel.AdamParams{Beta1: 0.9, Beta2: 0.99, Eps: 1e-8, Step: 1e-2, Sq: 1.5, Decay: 1, GScale: 1}
		gd, gm, gv := make([]float32, len(data)), make([]float32, len(data)), make([]float32, len(data))
		require.NoError(t, s.Update(name, grad, hp, gd, gm, gv))
		wd, wm, wv := append([]float32(nil), data...), make([]float32, len(data)), make([]float32, len(data))
		kern.AdamW(wd, grad, wm, wv, hp)
		require.InDeltaSlice(t, wd, gd, 1e-6, "AdamW on %s", name)
		require.NotEqual(t, data, gd)
		p, err := s.ForwardOnly(1)
		require.NoError(t, err)
		copy(m.Weights[name].Data, gd)
		feed1 := &nn.Feed{B: 1, T: T, Inputs: inputs[:T], Targets: targets[:T]}
		g1 := nn.NewGraph[float32](feed1)
		net1, err := model.Build(g1, m, nil, false)
		require.NoError(t, err)
		m1, err := g1.Compile(net1.Loss)
		require.NoError(t, err)
		want1, err := m1.Run()
		require.NoError(t, err)
		got1, err := p.Loss(inputs[:T], targets[:T])
		require.NoError(t, err)
		require.InDelta(t, want1, got1, tol*math.Abs(want1), "forward-only loss after Update (tied %v)", tied)
		copy(m.Weights[name].Data, data)
		p.Close()
		s.Close()
	}
}

// Probe checks a forward-only step (Step.ForwardOnly, the collectors'
// probe batch) against the gorgonia graph: the same hook names and shapes,
// every hook's values and each adapter's x·Aᵀ within tol (relative to the
// tensor's largest entry), with a batch size of its own, and with the
// adapters' values as the training step last set them (shared, not copied);
// for the Llama block and for Gemma 3's (local and global layers).
func Probe(t testing.TB, dev accel.Device, tol float64) {
	for _, mk := range []func(testing.TB) (*model.Model, *lora.Adapter){Model, GemmaModel} {
		m, ad := mk(t)
		probe(t, dev, tol, m, ad)
	}
}

func probe(t testing.TB, dev accel.Device, tol float64, m *model.Model, ad *lora.Adapter) {
	const B, T, PB = 2, 16, 3
	s, err := accel.NewStep(dev, m, ad.GraphAdapters(), B, T)
	require.NoError(t, err)
	defer s.Close()
	p, err := s.ForwardOnly(PB)
	require.NoError(t, err)
	defer p.Close()
	_, err = p.Run(make([]int32, PB*T), make([]int32, PB*T), nil)
	require.ErrorContains(t, err, "forward-only")

	// Change one adapter through the training step only.
	mod := ad.Modules[1]
	a := ad.A[mod]
	rng := rand.New(rand.NewPCG(3, 4))
	for i := range a.Data {
		a.Data[i] += float32(rng.NormFloat64() * 0.1)
	}
	zeros := make([]float32, len(a.Data))
	require.NoError(t, s.SetParam(mod+".lora_A", a.Data, zeros, zeros))

	inputs, targets := make([]int32, PB*T), make([]int32, PB*T)
	for i := range inputs {
		inputs[i] = int32(rng.IntN(m.Config.VocabSize))
		targets[i] = int32(rng.IntN(m.Config.VocabSize))
	}
	feed := &nn.Feed{B: PB, T: T, Inputs: inputs, Targets: targets}
	g := nn.NewGraph[float32](feed)
	net, err := model.Build(g, m, ad.GraphAdapters(), false)
	require.NoError(t, err)
	mach, err := g.Compile(net.Loss)
	require.NoError(t, err)
	defer mach.Close()
	want, err := mach.Run()
	require.NoError(t, err)
	got, err := p.Loss(inputs, targets)
	require.NoError(t, err)
	require.InDelta(t, want, got, tol*math.Abs(want), "%s probe loss", m.Config.ModelType)

	var names []string
	for name := range g.Hooks {
		names = append(names, name)
	}
	for layer := range g.Attn {
		names = append(names, fmt.Sprintf("blocks.%d.attn.hook_pattern", layer))
	}
	sort.Strings(names)
	require.Equal(t, names, p.HookNames())
	for _, name := range names {
		b, shape, ok := p.Hook(name)
		require.True(t, ok, name)
		var want []float32
		var wantShape []int
		if n, ok := g.Hooks[name]; ok {
			want, err = nn.Data[float32](n)
			require.NoError(t, err, name)
			wantShape = n.Shape().Clone()
		} else {
			var layer int
			_, err := fmt.Sscanf(name, "blocks.%d.attn.hook_pattern", &layer)
			require.NoError(t, err, name)
			want = g.Attn[layer].Probs()
			wantShape = []int{PB * m.Config.NumAttentionHeads, T, T}
		}
		require.Equal(t, wantShape, shape, name)
		v := make([]float32, b.Len())
		require.NoError(t, dev.Download(v, b))
		sameAsGraph(t, m.Config.ModelType+" "+name, dev, want, v, tol)
	}
	for _, mod := range ad.Modules {
		b, r, ok := p.LoRAHidden(mod)
		require.True(t, ok, mod)
		require.Equal(t, ad.A[mod].Shape[0], r, mod)
		v := make([]float32, b.Len())
		require.NoError(t, dev.Download(v, b))
		sameAsGraph(t, mod+" x·Aᵀ", dev, g.LoRA[mod].Hidden(), v, tol)
	}
	_, _, ok := p.LoRAHidden("model.layers.0.no_such_proj")
	require.False(t, ok)
}

// sameStep runs one pass of s and of the engine/nn graph (trainable: the
// adapters when there are any, else every weight) over feed and compares
// the loss and the gradient of every tensor s trains.
func sameStep(t testing.TB, dev accel.Device, s *accel.Step, m *model.Model, ads map[string]model.Adapter, feed *nn.Feed, tol float64, what string) {
	g := nn.NewGraph[float32](feed)
	net, err := model.Build(g, m, ads, len(ads) == 0)
	require.NoError(t, err)
	var names []string
	for name := range net.Params {
		if n := len(name); len(ads) == 0 || n > 7 && (name[n-7:] == ".lora_A" || name[n-7:] == ".lora_B") {
			names = append(names, name)
		}
	}
	sort.Strings(names)
	require.Equal(t, names, s.Params(), what)
	wrt := make([]*G.Node, 0, len(names))
	for _, name := range names {
		wrt = append(wrt, net.Params[name])
	}
	mach, err := g.Compile(net.Loss, wrt...)
	require.NoError(t, err)
	defer mach.Close()
	want, err := mach.Run()
	require.NoError(t, err)
	got, err := s.Run(feed.Inputs, feed.Targets, feed.Masks)
	require.NoError(t, err)
	require.InDelta(t, want, got, tol*math.Abs(want), "loss (%s)", what)
	for i, name := range names {
		wg, err := mach.Grad(i)
		require.NoError(t, err)
		dg := make([]float32, len(wg))
		require.NoError(t, s.Grad(name, dg))
		sameAsGraph(t, fmt.Sprintf("%s (%s)", name, what), dev, wg, dg, tol)
	}
}

// sameAsGraph requires got (from dev) to match want (from the gorgonia
// graph) within tol of want's largest entry, which must not be zero: a
// check against all zeros would pass anything.
func sameAsGraph(t testing.TB, what string, dev accel.Device, want, got []float32, tol float64) {
	t.Helper()
	require.Equal(t, len(want), len(got), what)
	scale := 0.0
	for _, v := range want {
		scale = math.Max(scale, math.Abs(float64(v)))
	}
	require.Greater(t, scale, 0.0, "%s is all zeros in the graph: the check would be empty", what)
	for j := range want {
		if d := math.Abs(float64(got[j] - want[j])); d > tol*scale {
			t.Fatalf("%s [%d]: %g on %s, %g in the graph (|Δ| %.3g > %g·%.3g)", what, j, got[j], dev.Name(), want[j], d, tol, scale)
		}
	}
}
