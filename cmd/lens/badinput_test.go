package main

import (
	"encoding/binary"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/safetensors"
)

// TestBadInputCatalogue feeds bad scripts, arguments, model and adapter
// files, data files and stores to the binary. Each must fail with a clear
// message and the right exit code, without a panic, and leave the store
// as it was (fsck clean, the good run intact).
func TestBadInputCatalogue(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"good.star":  tinyScript + "train(name = 'good')\n",
		"empty.txt":  "",
		"short.txt":  "tiny",
		"binary.dat": "abc\x00def",
		"afile":      "x",
	})
	_, stderr, code := lens(t, dir, "run", "good.star")
	require.Equal(t, 0, code, stderr)

	// An HF model and a PEFT adapter to corrupt.
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	m, err := model.New(cfg, 1)
	require.NoError(t, err)
	require.NoError(t, m.Save(filepath.Join(dir, "model")))
	ad, err := lora.New(m, lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj"}}, 1)
	require.NoError(t, err)
	require.NoError(t, ad.Save(filepath.Join(dir, "adapter")))
	weights, err := os.ReadFile(filepath.Join(dir, "model", "model.safetensors"))
	require.NoError(t, err)
	variant := func(name string, edit func(b []byte) []byte) string {
		d := filepath.Join(dir, name)
		require.NoError(t, os.MkdirAll(d, 0o755))
		cfgb, _ := os.ReadFile(filepath.Join(dir, "model", "config.json"))
		require.NoError(t, os.WriteFile(filepath.Join(d, "config.json"), cfgb, 0o644))
		require.NoError(t, os.WriteFile(filepath.Join(d, "model.safetensors"), edit(append([]byte(nil), weights...)), 0o644))
		return name
	}
	truncated := variant("m-trunc", func(b []byte) []byte { return b[:len(b)/2] })
	badHeader := variant("m-header", func(b []byte) []byte { binary.LittleEndian.PutUint64(b, 1<<50); return b })
	garbage := variant("m-json", func(b []byte) []byte { copy(b[8:], "{{{{"); return b })
	huge := filepath.Join(dir, "m-huge")
	require.NoError(t, os.MkdirAll(huge, 0o755))
	cfgb, _ := os.ReadFile(filepath.Join(dir, "model", "config.json"))
	require.NoError(t, os.WriteFile(filepath.Join(huge, "config.json"), cfgb, 0o644))
	img := []byte(`{"model.norm.weight":{"dtype":"F32","shape":[1099511627776,1099511627776],"data_offsets":[0,4]}}`)
	hdr := make([]byte, 8)
	binary.LittleEndian.PutUint64(hdr, uint64(len(img)))
	require.NoError(t, os.WriteFile(filepath.Join(huge, "model.safetensors"), append(append(hdr, img...), 0, 0, 0, 0), 0o644))
	badAdapter := filepath.Join(dir, "a-shape")
	require.NoError(t, os.MkdirAll(badAdapter, 0o755))
	acfg, _ := os.ReadFile(filepath.Join(dir, "adapter", "adapter_config.json"))
	require.NoError(t, os.WriteFile(filepath.Join(badAdapter, "adapter_config.json"), acfg, 0o644))
	require.NoError(t, safetensors.Write(filepath.Join(badAdapter, "adapter_model.safetensors"), []safetensors.Tensor{
		safetensors.F32Tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_A.weight", []int{4, 32}, make([]float32, 128)),
		safetensors.F32Tensor("base_model.model.model.layers.0.self_attn.q_proj.lora_B.weight", []int{31, 4}, make([]float32, 124)),
	}, nil))

	// The good model directory loads from a script.
	require.NoError(t, os.WriteFile(filepath.Join(dir, "load.star"), []byte("m = model.from_dir('model')\nprint('PARAMS', m.params)\n"), 0o644))
	out, stderr, code := lens(t, dir, "run", "load.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "PARAMS ")

	// A folder outside the workspace is readable once allowed.
	outside := t.TempDir()
	require.NoError(t, os.WriteFile(filepath.Join(outside, "c.txt"), []byte(corpus()), 0o644))
	require.NoError(t, os.WriteFile(filepath.Join(dir, "allow.star"), []byte("print('OK', data.text('"+filepath.Join(outside, "c.txt")+"'))\n"), 0o644))
	_, stderr, code = lens(t, dir, "run", "allow.star")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "outside the workspace")
	out, stderr, code = lens(t, dir, "run", "--allow-read", outside, "allow.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "OK")

	script := func(body string) []string {
		require.NoError(t, os.WriteFile(filepath.Join(dir, "bad.star"), []byte(tinyScript+body), 0o644))
		return []string{"run", "bad.star"}
	}
	cases := []struct {
		name string
		args func() []string
		code int
		want string
	}{
		{"rank larger than the matrix", func() []string { return script("train(lora = lora.config(r = 1000))\n") }, 1, "larger than module"},
		{"unknown target module", func() []string {
			return script("lora.config(targets = ['qq_proj'])\ntrain(lora = lora.config(targets = ['qq_proj']))\n")
		}, 1, `"qq_proj" matches no linear module`},
		{"collector every 0", func() []string { return script("collect.adapter_weights(every = 0)\n") }, 1, "for parameter \"every\": want a positive int"},
		{"script collector every 0", func() []string { return script("lens.collector('c', lambda v: None, every = 0)\n") }, 1, "for parameter \"every\": want a positive int"},
		{"hook pattern matching nothing", func() []string {
			return script("train(steps = 2, collect = [collect.activations(every = 1, hooks = ['blocks.*.hook_nope'])])\n")
		}, 1, "no hook point matches"},
		{"unknown analyzer", func() []string { return script("analyze.run('nope', train(steps = 1))\n") }, 1, `analyzer "nope" is not registered`},
		{"dropout of 1", func() []string { return script("lora.config(dropout = 1.0)\n") }, 1, "lora_dropout"},
		{"negative steps", func() []string { return script("train(steps = -5)\n") }, 1, "steps = -5"},
		{"unknown schedule", func() []string { return script("train(schedule = 'bogus')\n") }, 1, "schedule"},
		{"unknown NaN policy", func() []string { return script("train(nan_policy = 'pray')\n") }, 1, `nan_policy = "pray": want skip or rollback`},
		{"lr_backoff not a factor", func() []string { return script("train(nan_policy = 'rollback', lr_backoff = 2.0)\n") }, 1, "lr_backoff = 2"},
		{"device cuda without a CUDA backend", func() []string { return script("train(device = 'cuda')\n") }, 1, `device = "cuda": this lens was built without the CUDA backend`},
		{"unknown device flag", func() []string { return []string{"run", "--device", "gpu", "good.star"} }, 2, `device = "gpu"`},
		{"eval fraction above 1", func() []string { return script("data.opticks(eval_frac = 1.5)\n") }, 1, "eval_frac"},
		{"empty corpus", func() []string { return script("data.text('empty.txt')\n") }, 1, "empty corpus"},
		{"corpus too short", func() []string { return script("data.text('short.txt')\n") }, 1, "too few"},
		{"binary data file", func() []string { return script("data.text('binary.dat')\n") }, 1, "NUL bytes"},
		{"heads do not divide hidden", func() []string { return script("model.tiny(num_attention_heads = 3)\n") }, 1, "does not divide hidden_size"},
		{"hidden size zero", func() []string { return script("model.tiny(hidden_size = 0)\n") }, 1, "hidden_size = 0"},
		{"unknown model field", func() []string { return script("model.tiny(hiden_size = 64)\n") }, 1, "unexpected keyword argument \"hiden_size\""},
		{"missing model dir", func() []string { return script("model.from_dir('nowhere')\n") }, 1, "config.json"},
		{"data file outside the workspace", func() []string { return script("data.text('/etc/hostname')\n") }, 1, "outside the workspace"},
		{"model dir outside the workspace", func() []string { return script("model.from_dir('/tmp')\n") }, 1, "outside the workspace"},
		{"wrong type for data", func() []string { return script("lens.train(model = base, data = 'corpus.txt')\n") }, 1, "for parameter \"data\": want data, got string"},
		{"lora and full together", func() []string { return script("train(full = True)\n") }, 1, "either lora= or full=True"},
		{"seq_len above max positions", func() []string { return script("train(seq_len = 4096)\n") }, 1, "max_position_embeddings"},
		{"eval: truncated safetensors", func() []string { return []string{"eval", "--model", truncated, "--text", "corpus.txt"} }, 1, "m-trunc/model.safetensors"},
		{"eval: header length past the file", func() []string { return []string{"eval", "--model", badHeader, "--text", "corpus.txt"} }, 1, "header length"},
		{"eval: header not JSON", func() []string { return []string{"eval", "--model", garbage, "--text", "corpus.txt"} }, 1, "not valid JSON"},
		{"eval: huge declared shape", func() []string { return []string{"eval", "--model", "m-huge", "--text", "corpus.txt"} }, 1, "too large"},
		{"eval: adapter shape mismatch", func() []string {
			return []string{"eval", "--model", "model", "--adapter", "a-shape", "--text", "corpus.txt"}
		}, 1, "lora_B has shape [31 4], want [32 4]"},
		{"eval: missing text", func() []string { return []string{"eval", "--model", "model", "--text", "nope.txt"} }, 1, "nope.txt"},
		{"eval: negative seq-len", func() []string {
			return []string{"eval", "--model", "model", "--text", "corpus.txt", "--seq-len", "-1"}
		}, 2, "--seq-len"},
		{"eval: no model", func() []string { return []string{"eval", "--text", "corpus.txt"} }, 2, "--model and --text are required"},
		{"show: unknown run", func() []string { return []string{"show", "no-such-run"} }, 1, "not found"},
		{"export: no --out", func() []string { return []string{"export", "good"} }, 2, "--out"},
		{"run: missing script", func() []string { return []string{"run", "missing.star"} }, 2, "missing.star"},
		{"runs: store under a file", func() []string { return []string{"runs", "--store", "afile/s"} }, 1, "afile"},
		{"unknown command", func() []string { return []string{"frobnicate"} }, 2, "unknown command"},
		{"unknown flag", func() []string { return []string{"runs", "--bogus"} }, 2, "bogus"},
		{"report: unknown kind", func() []string { return []string{"report", "good", "--kind", "nope"} }, 2, "report kind"},
	}
	require.GreaterOrEqual(t, len(cases)+11, 30, "with TestBadInput's cases the catalogue has at least 30 entries")
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			out, stderr, code := lens(t, dir, tc.args()...)
			require.Equal(t, tc.code, code, out+stderr)
			require.Contains(t, stderr, tc.want)
			require.NotContains(t, stderr, "panic")
			require.NotContains(t, stderr, "goroutine ")
			out, _, code = lens(t, dir, "fsck")
			require.Equal(t, 0, code, out)
			out, _, code = lens(t, dir, "show", "good")
			require.Equal(t, 0, code)
			require.Contains(t, out, "status   done")
		})
	}
}
