package main

import (
	"encoding/json"
	"math"
	"os/exec"
	"testing"

	"github.com/stretchr/testify/require"
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
	require.InEpsilon(t, num("lens_gflops")/lensTPS, stepFlops(benchSizes[0].config(), benchSeq)/1e9, 1e-9)
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
		{[]string{"bench", "--sizes", "huge"}, `unknown size "huge"`},
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
	r, err := runTorch(t.Context(), benchSizes[0], 1, torchSplit{1, 1}, "cpu")
	require.NoError(t, err)
	require.Greater(t, r.TokensPerS, 0.0)
}
