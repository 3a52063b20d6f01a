package generate

import (
	"context"
	"encoding/json"
	"errors"
	"math"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/accel"
	"lens/engine/lora"
	"lens/engine/model"
)

const python = "/usr/bin/python3"

func torchDir() string {
	_, file, _, _ := runtime.Caller(0)
	return filepath.Join(filepath.Dir(file), "..", "..", "testdata", "torchref")
}

func needTorch(t testing.TB) {
	if err := exec.Command(python, "-c", "import torch, numpy").Run(); err != nil {
		if os.Getenv("CI") != "" {
			t.Fatalf("PyTorch reference unavailable in CI: %v (install python3-torch python3-numpy)", err)
		}
		t.Skipf("PyTorch reference unavailable (%v): apt-get install python3-torch python3-numpy libopenblas0-pthread", err)
	}
}

func pyRun(t testing.TB, script string, args ...string) {
	t.Helper()
	out, err := exec.Command(python, append([]string{filepath.Join(torchDir(), script)}, args...)...).CombinedOutput()
	if err != nil {
		t.Fatalf("%s %s: %v\n%s", script, strings.Join(args, " "), err, out)
	}
}

// makeCase writes a random model (and adapter) with make_case.py.
func makeCase(t testing.TB, seed int, args ...string) string {
	dir := t.TempDir()
	pyRun(t, "make_case.py", append([]string{"--out", dir, "--seed", strconv.Itoa(seed)}, args...)...)
	return dir
}

func loadCase(t testing.TB, dir string, adapter bool) *Generator {
	g, err := New(loadModel(t, dir, adapter))
	require.NoError(t, err)
	return g
}

func loadModel(t testing.TB, dir string, adapter bool) (*model.Model, *lora.Adapter) {
	m, err := model.Load(filepath.Join(dir, "model"))
	require.NoError(t, err)
	var ad *lora.Adapter
	if adapter {
		ad, err = lora.Load(filepath.Join(dir, "adapter"), m)
		require.NoError(t, err)
	}
	return m, ad
}

func prompts(seed uint64, vocab int, lens ...int) [][]int32 {
	rng := rand.New(rand.NewPCG(seed, 1))
	var out [][]int32
	for _, n := range lens {
		p := make([]int32, n)
		for i := range p {
			p[i] = int32(rng.IntN(vocab))
		}
		out = append(out, p)
	}
	return out
}

// TestGreedyMatchesPyTorch decodes greedily with the KV cache, on the CPU
// and through the device path on accel.Host, and compares
// with PyTorch recomputing the whole prefix at every step: the same tokens,
// and the first steps' logits within 1e-4.
func TestGreedyMatchesPyTorch(t *testing.T) {
	needTorch(t)
	const newTokens, logitSteps = 64, 3
	all := "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
	cases := []struct {
		name    string
		args    []string
		adapter bool
	}{
		{"gqa untied, adapter on every linear", []string{"--untied", "--heads", "4", "--kv-heads", "2", "--targets", all}, true},
		{"gqa untied, no adapter", []string{"--untied", "--heads", "4", "--kv-heads", "2", "--no-adapter"}, false},
		{"tied mqa head_dim 24, rslora q,v", []string{"--tied", "--heads", "4", "--kv-heads", "1", "--head-dim", "24", "--rslora", "--rank", "8", "--targets", "q_proj,v_proj"}, true},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"--vocab", "300", "--hidden", "64", "--inter", "96", "--layers", "3", "--max-pos", "160"}, tc.args...)
			dir := makeCase(t, 10+i, args...)
			ps := prompts(uint64(i), 300, 1, 5, 17, 40)
			b, err := json.Marshal(ps)
			require.NoError(t, err)
			pf, out := filepath.Join(dir, "prompts.json"), filepath.Join(dir, "ref.json")
			require.NoError(t, os.WriteFile(pf, b, 0o644))
			rargs := []string{"--model", filepath.Join(dir, "model"), "--prompts", pf, "--new", strconv.Itoa(newTokens),
				"--logit-steps", strconv.Itoa(logitSteps), "--out", out}
			if tc.adapter {
				rargs = append(rargs, "--adapter", filepath.Join(dir, "adapter"))
			}
			pyRun(t, "generate_ref.py", rargs...)
			var ref struct {
				Cases []struct {
					Tokens []int32
					Logits [][]float32
				}
			}
			b, err = os.ReadFile(out)
			require.NoError(t, err)
			require.NoError(t, json.Unmarshal(b, &ref))
			require.Len(t, ref.Cases, len(ps))

			// The CPU path, and the device path on the host device.
			m, ad := loadModel(t, dir, tc.adapter)
			cpu, err := New(m, ad)
			require.NoError(t, err)
			onHost, err := NewOn(accel.Host{}, m, ad)
			require.NoError(t, err)
			for j, p := range ps {
				for _, g := range []*Generator{cpu, onHost} {
					var first [][]float32
					opts := Options{MaxNewTokens: newTokens, Observe: func(step int, l []float32) {
						if step < logitSteps {
							first = append(first, slices.Clone(l))
						}
					}}
					var emitted []int32
					got, err := g.Generate(context.Background(), p, opts, func(id int32) error { emitted = append(emitted, id); return nil })
					require.NoError(t, err)
					require.Equal(t, ref.Cases[j].Tokens, got, "prompt %d (%d tokens) on %s: tokens", j, len(p), g.Device())
					require.Equal(t, got, emitted, "emit saw every token in order")
					for s := range logitSteps {
						d := maxAbsDiff(first[s], ref.Cases[j].Logits[s])
						require.Less(t, d, 1e-4, "prompt %d step %d on %s: logits differ by %g", j, s, g.Device(), d)
					}
				}
			}
		})
	}
}

func maxAbsDiff(a, b []float32) float64 {
	if len(a) != len(b) {
		return math.Inf(1)
	}
	d := 0.0
	for i := range a {
		d = max(d, math.Abs(float64(a[i])-float64(b[i])))
	}
	return d
}

// randomGen is a random model made in Go (no PyTorch needed) with an
// adapter whose B is not zero.
func randomGen(t testing.TB, tied bool) *Generator {
	c := model.Config{VocabSize: 97, HiddenSize: 48, IntermediateSize: 80, NumHiddenLayers: 2, NumAttentionHeads: 6,
		NumKeyValueHeads: 2, MaxPositionEmbeddings: 96, RMSNormEps: 1e-5, RopeTheta: 10000, TieWordEmbeddings: tied}
	c.InitializerRange = 0.2
	m, err := model.New(c, 7)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"all-linear"}}, 3)
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(5, 5))
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = float32(rng.NormFloat64() * 0.1)
		}
	}
	g, err := New(m, ad)
	require.NoError(t, err)
	return g
}

// TestCacheMatchesRecompute checks every decode step against a fresh
// session fed the whole prefix at once: same tokens, logits close.
func TestCacheMatchesRecompute(t *testing.T) {
	for _, tied := range []bool{false, true} {
		g := randomGen(t, tied)
		for _, p := range prompts(9, 97, 1, 6, 20) {
			var steps [][]float32
			got, err := g.Generate(context.Background(), p, Options{MaxNewTokens: 40, Observe: func(_ int, l []float32) {
				steps = append(steps, slices.Clone(l))
			}}, nil)
			require.NoError(t, err)
			require.Len(t, got, 40)
			for s := range got {
				prefix := append(slices.Clone(p), got[:s]...)
				sess, err := g.NewSession(len(prefix))
				require.NoError(t, err)
				want, err := sess.Append(prefix)
				require.NoError(t, err)
				require.Equal(t, Argmax(want), got[s], "step %d", s)
				d := maxAbsDiff(steps[s], want)
				require.Less(t, d, 1e-4, "tied=%v prompt %d step %d: cached and recomputed logits differ by %g", tied, len(p), s, d)
			}
		}
	}
}

// TestAdapterChangesOutput makes sure the adapter is applied: with B ≠ 0
// the logits move, and a merged copy of the weights gives the same logits.
func TestAdapterChangesOutput(t *testing.T) {
	c := model.Config{VocabSize: 50, HiddenSize: 32, IntermediateSize: 40, NumHiddenLayers: 2, NumAttentionHeads: 4,
		NumKeyValueHeads: 2, MaxPositionEmbeddings: 32, RMSNormEps: 1e-5, RopeTheta: 10000, InitializerRange: 0.2}
	m, err := model.New(c, 1)
	require.NoError(t, err)
	ad, err := lora.New(m, lora.Config{Rank: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj", "down_proj"}}, 1)
	require.NoError(t, err)
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = 0.3 * float32(i%5-2)
		}
	}
	logits := func(m *model.Model, ad *lora.Adapter) []float32 {
		g, err := New(m, ad)
		require.NoError(t, err)
		s, err := g.NewSession(8)
		require.NoError(t, err)
		l, err := s.Append([]int32{3, 1, 4, 1, 5, 9, 2, 6})
		require.NoError(t, err)
		return slices.Clone(l)
	}
	base, adapted, merged := logits(m, nil), logits(m, ad), logits(ad.Merge(m), nil)
	require.Greater(t, maxAbsDiff(base, adapted), 1e-2)
	require.Less(t, maxAbsDiff(adapted, merged), 1e-4)
}

// TestSamplingSeeded: a seed repeats exactly, other seeds differ, and
// top_k = 1 is greedy whatever the temperature.
func TestSamplingSeeded(t *testing.T) {
	g := randomGen(t, false)
	p := []int32{1, 2, 3}
	gen := func(o Options) []int32 {
		o.MaxNewTokens = 48
		out, err := g.Generate(context.Background(), p, o, nil)
		require.NoError(t, err)
		return out
	}
	greedy := gen(Options{})
	for _, o := range []Options{{Temperature: 1, Seed: 42}, {Temperature: 0.8, TopK: 20, TopP: 0.9, Seed: 42}} {
		a, b := gen(o), gen(o)
		require.Equal(t, a, b, "same seed, same tokens: %+v", o)
		o2 := o
		o2.Seed = 43
		require.NotEqual(t, a, gen(o2), "another seed, other tokens: %+v", o)
		require.NotEqual(t, greedy, a, "sampling is not greedy: %+v", o)
	}
	for _, temp := range []float64{0.5, 1, 3} {
		require.Equal(t, greedy, gen(Options{Temperature: temp, TopK: 1, Seed: 9}), "top_k=1 at temperature %g", temp)
	}
}

// TestFilterMatchesTransformers compares the tokens temperature, top-k and
// top-p leave, and their probabilities, with transformers' warpers.
func TestFilterMatchesTransformers(t *testing.T) {
	needTorch(t)
	rng := rand.New(rand.NewPCG(3, 3))
	rows := make([][]float32, 6)
	for r := range rows {
		rows[r] = make([]float32, 200)
		for i := range rows[r] {
			rows[r][i] = float32(rng.NormFloat64() * float64(1+r))
		}
	}
	rows[0][10], rows[0][20] = 9, 9 // a tie at the top
	cases := []struct {
		temp float64
		k    int
		p    float64
	}{{1, 0, 1}, {0.7, 5, 1}, {1.3, 0, 0.9}, {0.5, 40, 0.8}, {1, 1, 1}, {2, 0, 0.3}}
	var in []map[string]any
	for _, tc := range cases {
		in = append(in, map[string]any{"logits": rows, "temperature": tc.temp, "top_k": tc.k, "top_p": tc.p})
	}
	dir := t.TempDir()
	b, err := json.Marshal(in)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "in.json"), b, 0o644))
	pyRun(t, "generate_ref.py", "--warp", filepath.Join(dir, "in.json"), "--out", filepath.Join(dir, "out.json"))
	var refs []struct {
		Rows []struct {
			IDs   []int32
			Probs []float64
		}
	}
	b, err = os.ReadFile(filepath.Join(dir, "out.json"))
	require.NoError(t, err)
	require.NoError(t, json.Unmarshal(b, &refs))
	require.Len(t, refs, len(cases))
	for n, tc := range cases {
		ref := refs[n]
		var buf []cand
		for r, row := range rows {
			c, p, sum := filter(row, tc.temp, tc.k, tc.p, &buf)
			got := map[int32]float64{}
			for i := range c {
				got[c[i].id] = p[i] / sum
			}
			require.Len(t, got, len(ref.Rows[r].IDs), "%+v row %d: tokens kept", tc, r)
			for i, id := range ref.Rows[r].IDs {
				require.Contains(t, got, id, "%+v row %d", tc, r)
				require.InDelta(t, ref.Rows[r].Probs[i], got[id], 1e-6, "%+v row %d token %d", tc, r, id)
			}
		}
	}
}

// TestSampleFrequencies: draws follow the filtered distribution.
func TestSampleFrequencies(t *testing.T) {
	logits := []float32{float32(math.Log(0.5)), float32(math.Log(0.3)), float32(math.Log(0.15)), float32(math.Log(0.05))}
	rng := rand.New(rand.NewPCG(1, 2))
	var buf []cand
	count := make([]int, 4)
	const n = 20000
	for range n {
		count[sample(logits, 1, 0, 0.7, rng, &buf)]++
	}
	// top_p 0.7 keeps {0, 1}: probabilities 0.625 and 0.375.
	require.Zero(t, count[2]+count[3])
	require.InDelta(t, 0.625, float64(count[0])/n, 0.015)
}

func TestStops(t *testing.T) {
	g := randomGen(t, false)
	p := []int32{4, 5, 6}
	full, err := g.Generate(context.Background(), p, Options{MaxNewTokens: 30}, nil)
	require.NoError(t, err)
	stop := full[7]
	want := full[:slices.Index(full, stop)+1]
	got, err := g.Generate(context.Background(), p, Options{MaxNewTokens: 30, StopIDs: []int32{stop}}, nil)
	require.NoError(t, err)
	require.Equal(t, want, got, "stops after the first stop id, which is kept")

	n := 0
	got, err = g.Generate(context.Background(), p, Options{MaxNewTokens: 30}, func(int32) error {
		if n++; n == 5 {
			return ErrStop
		}
		return nil
	})
	require.NoError(t, err)
	require.Equal(t, full[:5], got)

	boom := errors.New("boom")
	_, err = g.Generate(context.Background(), p, Options{MaxNewTokens: 30}, func(int32) error { return boom })
	require.ErrorIs(t, err, boom)

	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	_, err = g.Generate(ctx, p, Options{MaxNewTokens: 30}, nil)
	require.ErrorIs(t, err, context.Canceled)
}

func TestBadInput(t *testing.T) {
	g := randomGen(t, false) // vocab 97, max positions 96
	cases := []struct {
		name   string
		prompt []int32
		opts   Options
		want   string
	}{
		{"empty prompt", nil, Options{MaxNewTokens: 1}, "prompt is empty"},
		{"id out of range", []int32{1, 97}, Options{MaxNewTokens: 1}, "prompt token 1 is id 97"},
		{"negative id", []int32{-1}, Options{MaxNewTokens: 1}, "prompt token 0 is id -1"},
		{"too long", make([]int32, 90), Options{MaxNewTokens: 7}, "prompt of 90 tokens + max_new_tokens 7 = 97 positions, more than the model's max_position_embeddings 96"},
		{"negative max", []int32{1}, Options{MaxNewTokens: -1}, "max_new_tokens = -1"},
		{"negative temperature", []int32{1}, Options{MaxNewTokens: 1, Temperature: -1}, "temperature = -1"},
		{"top_p above 1", []int32{1}, Options{MaxNewTokens: 1, Temperature: 1, TopP: 1.5}, "top_p = 1.5"},
		{"negative top_k", []int32{1}, Options{MaxNewTokens: 1, TopK: -2}, "top_k = -2"},
	}
	for _, tc := range cases {
		_, err := g.Generate(context.Background(), tc.prompt, tc.opts, nil)
		require.ErrorContains(t, err, tc.want, tc.name)
	}
	out, err := g.Generate(context.Background(), make([]int32, 90), Options{MaxNewTokens: 6}, nil)
	require.NoError(t, err, "exactly max_position_embeddings positions fit")
	require.Len(t, out, 6)
}

// TestMatVecSplit: splitting a product's rows over cores changes no bit.
func TestMatVecSplit(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 1))
	rows, cols := 1001, 300
	w, x := make([]float32, rows*cols), make([]float32, cols)
	for i := range w {
		w[i] = float32(rng.NormFloat64())
	}
	for i := range x {
		x[i] = float32(rng.NormFloat64())
	}
	one, two := make([]float32, rows), make([]float32, rows)
	(&Generator{threads: 1}).matVec(w, rows, cols, x, one)
	(&Generator{threads: 2}).matVec(w, rows, cols, x, two)
	require.Equal(t, one, two)
	require.Less(t, math.Abs(float64(one[7])-float64(dot(w[7*cols:8*cols], x))), 1e-3)
}

func dot(a, b []float32) float32 {
	var s float32
	for i := range a {
		s += a[i] * b[i]
	}
	return s
}
