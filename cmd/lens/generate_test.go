package main

import (
	"context"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/generate"
	"lens/engine/lora"
	"lens/engine/model"
)

// TestGenerateCommand runs lens generate on a byte-level model directory
// (with and without an adapter) and checks the text against the engine's
// tokens, the EOS stop, seeded sampling and the errors.
func TestGenerateCommand(t *testing.T) {
	dir := workspace(t, nil)
	c := model.Tiny()
	c.HiddenSize, c.IntermediateSize, c.NumHiddenLayers, c.MaxPositionEmbeddings, c.InitializerRange = 32, 64, 2, 48, 0.3
	m, err := model.New(c, 3)
	require.NoError(t, err)
	require.NoError(t, m.Save(filepath.Join(dir, "m")))
	ad, err := lora.New(m, lora.Config{Rank: 2, Alpha: 4, Targets: []string{"q_proj", "v_proj"}}, 1)
	require.NoError(t, err)
	for _, b := range ad.B {
		for i := range b.Data {
			b.Data[i] = 0.5 * float32(i%3-1)
		}
	}
	require.NoError(t, ad.Save(filepath.Join(dir, "a")))

	want := func(ad *lora.Adapter, o generate.Options) string {
		g, err := generate.New(m, ad)
		require.NoError(t, err)
		ids, err := g.Generate(context.Background(), []int32{'H', 'i'}, o, nil)
		require.NoError(t, err)
		b := make([]byte, len(ids))
		for i, id := range ids {
			b[i] = byte(id)
		}
		return string(b) + "\n"
	}
	out, stderr, code := lens(t, dir, "generate", "--model", "m", "--prompt", "Hi", "--max-new-tokens", "20")
	require.Zero(t, code, stderr)
	require.Equal(t, want(nil, generate.Options{MaxNewTokens: 20}), out)
	greedy := out

	out, stderr, code = lens(t, dir, "generate", "--model", "m", "--adapter", "a", "--prompt", "Hi", "--max-new-tokens", "20")
	require.Zero(t, code, stderr)
	require.Equal(t, want(ad, generate.Options{MaxNewTokens: 20}), out)
	require.NotEqual(t, greedy, out, "the adapter changes the text")

	// This binary has no CUDA backend: auto decodes on the CPU, with a
	// note, and cuda is refused before anything is loaded.
	out, stderr, code = lens(t, dir, "generate", "--model", "m", "--adapter", "a", "--prompt", "Hi", "--max-new-tokens", "20", "--device", "auto")
	require.Zero(t, code, stderr)
	require.Equal(t, want(ad, generate.Options{MaxNewTokens: 20}), out)
	require.Contains(t, stderr, "device auto: ")
	_, stderr, code = lens(t, dir, "generate", "--model", "m", "--prompt", "Hi", "--device", "cuda")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, `--device: device = "cuda": this lens was built without the CUDA backend`)

	sampled := []string{"generate", "--model", "m", "--prompt", "Hi", "--max-new-tokens", "20", "--temperature", "1.5", "--top-p", "0.95", "--seed", "7"}
	out, stderr, code = lens(t, dir, sampled...)
	require.Zero(t, code, stderr)
	require.Equal(t, want(nil, generate.Options{MaxNewTokens: 20, Temperature: 1.5, TopP: 0.95, Seed: 7}), out)
	again, _, _ := lens(t, dir, sampled...)
	require.Equal(t, out, again, "same seed, same text")

	// eos_token_id in config.json stops generation and is not printed.
	eos := greedy[5]
	cfg, err := os.ReadFile(filepath.Join(dir, "m", "config.json"))
	require.NoError(t, err)
	cfg = []byte(strings.Replace(string(cfg), "{", `{"eos_token_id": `+itoa(int(eos))+`,`, 1))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "m", "config.json"), cfg, 0o644))
	out, stderr, code = lens(t, dir, "generate", "--model", "m", "--prompt", "Hi", "--max-new-tokens", "20")
	require.Zero(t, code, stderr)
	require.Equal(t, greedy[:strings.IndexByte(greedy, eos)]+"\n", out)

	_, stderr, code = lens(t, dir, "generate", "--model", "m", "--prompt", strings.Repeat("x", 40), "--max-new-tokens", "9")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "prompt of 40 tokens + max_new_tokens 9 = 49 positions, more than the model's max_position_embeddings 48")
	_, stderr, code = lens(t, dir, "generate", "--prompt", "Hi")
	require.Equal(t, 2, code, stderr)
	require.Contains(t, stderr, "--model")
	_, stderr, code = lens(t, dir, "generate", "--model", "m", "--prompt", "Hi", "--top-p", "2")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "top_p = 2")
}

func itoa(n int) string { return strconv.Itoa(n) }

// TestGenerateBuiltin checks model.generate against lens generate: a
// model directory with and without an adapter directory, stop strings, and
// a run's latest adapter against the same adapter exported.
func TestGenerateBuiltin(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"gen.star": tinyScript + `
run = lens.run("gen")
print("RUN[" + model.generate(base, "The quick", adapter = run, max_new_tokens = 12) + "]")
m = model.from_dir("exp/base")
print("DIR[" + model.generate(m, "The quick", max_new_tokens = 12) + "]")
print("ADA[" + model.generate(m, "The quick", adapter = "exp/adapter", max_new_tokens = 12) + "]")
print("SMP[" + model.generate(m, "The quick", temperature = 1.0, top_k = 5, seed = 3, max_new_tokens = 12) + "]")
`,
		"export.star": tinyScript + `train(name = "gen", steps = 6)`,
	})
	// Train the run once and export it, then generate from the script.
	_, stderr, code := lens(t, dir, "run", "export.star")
	require.Zero(t, code, stderr)
	_, stderr, code = lens(t, dir, "export", "gen", "--out", "exp", "--with-base")
	require.Zero(t, code, stderr)
	out, stderr, code := lens(t, dir, "run", "gen.star")
	require.Zero(t, code, stderr)
	cli := func(args ...string) string {
		o, stderr, code := lens(t, dir, append([]string{"generate", "--model", "exp/base", "--prompt", "The quick", "--max-new-tokens", "12"}, args...)...)
		require.Zero(t, code, stderr)
		return strings.TrimSuffix(o, "\n")
	}
	withAdapter := cli("--adapter", "exp/adapter")
	require.Contains(t, out, "RUN["+withAdapter+"]")
	require.Contains(t, out, "ADA["+withAdapter+"]")
	require.Contains(t, out, "DIR["+cli()+"]")
	require.Contains(t, out, "SMP["+cli("--temperature", "1", "--top-k", "5", "--seed", "3")+"]")

	// A stop string cuts the text before it.
	text := cli()
	require.GreaterOrEqual(t, len(text), 6)
	stop := text[3:5]
	os.WriteFile(filepath.Join(dir, "stop.star"), []byte(`print("STOP[" + model.generate(model.from_dir("exp/base"), "The quick", max_new_tokens = 12, stop = [`+strconv.Quote(stop)+`]) + "]")`), 0o644)
	out, stderr, code = lens(t, dir, "run", "stop.star")
	require.Zero(t, code, stderr)
	require.Contains(t, out, "STOP["+text[:strings.Index(text, stop)]+"]")

	os.WriteFile(filepath.Join(dir, "bad.star"), []byte(`model.generate(model.tiny(), 5)`), 0o644)
	_, stderr, code = lens(t, dir, "run", "bad.star")
	require.NotZero(t, code)
	require.Contains(t, stderr, "model.generate: for parameter \"prompt\": want a string or a list of messages, got int")
}
