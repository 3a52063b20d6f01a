package main

import (
	"encoding/json"
	"maps"
	"math"
	"os"
	"os/exec"
	"slices"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/model"
)

// TestBenchJSON runs the tiny benchmark briefly and checks that its row is
// complete and self-consistent (the numbers themselves are for
// BENCHMARKS.md, not for a test).
func TestBenchJSON(t *testing.T) {
	if testing.Short() {
		t.Skip("runs the tiny benchmark (~30 s)")
	}
	args := []string{"bench", "--sizes", "tiny", "--steps", "10", "--rounds", "1", "--json"}
	torch := exec.Command("/usr/bin/python3", "-c", "import torch").Run() == nil
	if !torch {
		args = append(args, "--no-torch")
	}
	// From a directory outside the repository: the PyTorch side is embedded.
	out, errOut, code := lens(t, t.TempDir(), args...)
	require.Equal(t, 0, code, errOut)
	var rows []map[string]any
	require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
	require.Len(t, rows, 1)
	r := rows[0]
	require.Equal(t, "tiny", r["size"])
	num := func(k string) float64 {
		v, ok := r[k].(float64)
		require.True(t, ok, "%s missing or not a number: %v", k, r[k])
		return v
	}
	lensTPS := num("lens_tokens_per_s")
	require.Greater(t, lensTPS, 100.0)
	require.Greater(t, num("sgemm_gflops"), 1.0)
	// lens GFLOP/s is tokens/s times the step's flops per token.
	require.InEpsilon(t, num("lens_gflops")/lensTPS, stepFlops(benchSizes[0], benchSizes[0].Seq)/1e9, 1e-9)
	// The products run slower than the 512³ ceiling at most a little above
	// it (a noisy machine), and take part of the step's time.
	require.Greater(t, num("product_gflops"), 1.0)
	require.Less(t, num("product_gflops"), 1.5*num("sgemm_gflops"))
	frac := num("product_frac")
	require.Greater(t, frac, 0.2)
	require.LessOrEqual(t, frac, 1.0)
	// The time inside the collectors' hooks is a positive share of the
	// steps; the block comparison carries drift and may come out negative.
	ov := num("collector_overhead")
	require.Greater(t, ov, 0.0)
	require.Less(t, ov, 1.0)
	blocks := num("collector_overhead_blocks")
	require.False(t, math.IsNaN(blocks))
	require.Greater(t, blocks, -0.5)
	require.Greater(t, num("lens_peak_rss_bytes"), 1e6)
	steal := num("cpu_steal")
	require.GreaterOrEqual(t, steal, 0.0)
	require.LessOrEqual(t, steal, 1.0)
	if torch {
		require.Greater(t, num("torch_tokens_per_s"), 100.0)
		require.InEpsilon(t, lensTPS/num("torch_tokens_per_s"), num("ratio"), 1e-9)
		require.Greater(t, num("torch_peak_rss_bytes"), 1e6)
	}
}

func TestBenchBadInput(t *testing.T) {
	cases := []struct {
		args []string
		want string
	}{
		{[]string{"bench", "--device", "gpu"}, `--device "gpu": want cpu or cuda`},
		{[]string{"bench", "--device", "cuda"}, "built without the CUDA backend"},
		{[]string{"bench", "--rounds", "0"}, "--steps and --rounds must be positive"},
		{[]string{"bench", "--sizes", "huge"}, `unknown size "huge" (tiny, small, medium, mini, 135m, 1b)`},
		{[]string{"bench", "--quant", "int8"}, `--quant "int8": want one of nf4, nf4-dq, bf16`},
		{[]string{"bench", "--head-chunk", "-1"}, "must be positive"},
	}
	for _, c := range cases {
		_, errOut, code := lens(t, t.TempDir(), c.args...)
		require.Equal(t, 2, code, "%v: %s", c.args, errOut)
		require.Contains(t, errOut, c.want, c.args)
	}
}

// TestBenchTorchOutsideRepo: the PyTorch side of lens bench is embedded, so
// it runs from a directory with no testdata/torchref above it.
func TestBenchTorchOutsideRepo(t *testing.T) {
	if exec.Command(torchPython(), "-c", "import torch").Run() != nil {
		t.Skip("PyTorch is not installed (Debian: apt-get install python3-torch python3-numpy libopenblas0-pthread)")
	}
	t.Chdir(t.TempDir())
	r, err := runTorch(t.Context(), benchSizes[0], benchVariant{}, 1, 1, torchSplit{1, 1}, "cpu")
	require.NoError(t, err)
	require.Greater(t, r.TokensPerS, 0.0)
}

// TestBenchVariants runs the bench machinery on the mini shape (the 1b's
// features: grouped KV heads, llama3 rope_scaling, LoRA on all seven
// modules, one row of 128 tokens) with each memory variant. Both sides
// build the same weights, adapter and tokens from benchFill's hash, so
// PyTorch's loss equals lens's at every step: the first proves the base
// model's shape, the later ones (after AdamW moved the adapter) the LoRA
// targets, rank, scale and optimizer. Checkpointing and the chunked head
// change no loss in lens at all. No timing is asserted.
func TestBenchVariants(t *testing.T) {
	torch := exec.Command(torchPython(), "-c", "import torch").Run() == nil
	if !torch {
		t.Log("PyTorch is not installed (Debian: apt-get install python3-torch python3-numpy libopenblas0-pthread): checking lens's side only")
	}
	run := func(flags ...string) map[string]any {
		args := append([]string{"bench", "--sizes", "mini", "--steps", "2", "--json"}, flags...)
		if !torch {
			args = append(args, "--no-torch")
		}
		out, errOut, code := lens(t, t.TempDir(), args...)
		require.Equal(t, 0, code, "%v: %s", flags, errOut)
		var rows []map[string]any
		require.NoError(t, json.Unmarshal([]byte(out), &rows), out)
		require.Len(t, rows, 1)
		return rows[0]
	}
	losses := func(r map[string]any, k string) []float64 {
		l, ok := r[k].([]any)
		require.True(t, ok, "%s missing: %v", k, r[k])
		var out []float64
		for _, v := range l {
			out = append(out, v.(float64))
		}
		return out
	}
	var plain []float64
	quantized := map[string][]float64{}
	cases := []struct {
		flags   []string
		variant string
	}{
		{nil, "float32"},
		{[]string{"--checkpointing"}, "checkpointing"},
		{[]string{"--head-chunk", "48"}, "head chunk 48"},
		{[]string{"--quant", "bf16"}, "bf16"},
		{[]string{"--quant", "nf4"}, "nf4"},
		{[]string{"--quant", "nf4-dq", "--checkpointing", "--head-chunk", "48"}, "nf4-dq, checkpointing, head chunk 48"},
	}
	for _, c := range cases {
		r := run(c.flags...)
		require.Equal(t, "mini", r["size"])
		require.Equal(t, c.variant, r["variant"])
		require.Greater(t, r["lens_tokens_per_s"].(float64), 0.0)
		require.Greater(t, r["lens_peak_rss_bytes"].(float64), 1e6)
		l := losses(r, "lens_losses")
		require.Len(t, l, 3, "1 warm-up + 2 timed steps")
		for _, v := range l {
			require.InDelta(t, math.Log(1000), v, 0.5, "random weights: loss near ln(vocab)")
		}
		// The adapter learns: a step moves the loss by far more than the
		// tolerance below, so agreement is not an accident of B = 0.
		require.Greater(t, l[0]-l[2], 1e-3)
		switch {
		case len(c.flags) == 0:
			plain = l
		case slices.Contains(c.flags, "--quant"):
			quantized[c.variant] = l
			require.NotEqual(t, plain, l, "a quantized base changes the loss")
		default:
			require.Equal(t, plain, l, "%s changes no number", c.variant)
		}
		if !torch {
			continue
		}
		require.Empty(t, r["torch_error"])
		require.Greater(t, r["torch_peak_rss_bytes"].(float64), 1e6)
		tl := losses(r, "torch_losses")
		require.Len(t, tl, len(l))
		for i := range l {
			require.InDelta(t, tl[i], l[i], 1e-4, "%s: step %d: lens %v, PyTorch %v", c.variant, i+1, l, tl)
		}
	}
	require.Len(t, quantized, 3)
}

// TestBenchModelIsQuantized: benchModel packs a quantized base tensor by
// tensor, so it must hold exactly what Model.Quantized makes of the
// float32 bench model: the same weights packed, to the same values.
func TestBenchModelIsQuantized(t *testing.T) {
	c := sizeByName("mini").config()
	f32, err := benchModel(c, "")
	require.NoError(t, err)
	for _, kind := range model.QuantKinds {
		want, err := f32.Quantized(kind)
		require.NoError(t, err)
		got, err := benchModel(c, kind)
		require.NoError(t, err)
		require.Equal(t, kind, got.Quant)
		require.ElementsMatch(t, slices.Sorted(maps.Keys(want.Packed)), slices.Sorted(maps.Keys(got.Packed)), kind)
		for name, p := range want.Packed {
			o, in := p.Dims()
			w, g := make([]float32, o*in), make([]float32, o*in)
			p.Widen(w)
			got.Packed[name].Widen(g)
			require.Equal(t, w, g, "%s %s", kind, name)
		}
		for name, tw := range want.Weights {
			require.Equal(t, tw.Shape, got.Weights[name].Shape, name)
			require.Equal(t, tw.Data, got.Weights[name].Data, name)
		}
	}
}

// TestBenchFillGolden: benchFill and benchTokens give the values bench.py
// computed (testdata/bench_fill.golden.json, written by its fill and
// tokens), so the two sides build the same model even where PyTorch is
// not installed to compare losses; one weight is read at offset
// 262,000,000, near the end of the 1b shape's embedding.
func TestBenchFillGolden(t *testing.T) {
	b, err := os.ReadFile("testdata/bench_fill.golden.json")
	require.NoError(t, err)
	var g struct {
		Weights []struct {
			Name   string
			Offset int
			Bound  float64
			Values []float32
		}
		Tokens []struct {
			Name   string
			Vocab  int
			Values []int32
		}
	}
	require.NoError(t, json.Unmarshal(b, &g))
	require.Len(t, g.Weights, 3)
	require.Len(t, g.Tokens, 2)
	for _, w := range g.Weights {
		got := make([]float32, len(w.Values))
		benchFill(w.Name, w.Offset, got, w.Bound)
		require.Equal(t, w.Values, got, w.Name)
	}
	for _, tk := range g.Tokens {
		require.Equal(t, tk.Values, benchTokens(tk.Name, len(tk.Values), tk.Vocab), tk.Name)
	}
}
