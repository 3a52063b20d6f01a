package builtins

import (
	"fmt"
	"strconv"
	"strings"

	"go.starlark.net/starlark"
	"go.starlark.net/starlarkstruct"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/runs"
	"lens/engine/train"
)

// The script API: one declaration per module, builtin and value type.
// Argument parsing (unpack, given), help(), REPL completion and
// docs/API.md read these; `go generate ./builtins` rewrites docs/API.md.

//go:generate sh -c "go run ../cmd/lens help --markdown > ../docs/API.md"

// unpack parses a builtin's arguments by its declaration (see Func.unpack).
func unpack(fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple, ptrs ...any) error {
	return decl(fn).unpack(args, kwargs, ptrs...)
}

func decl(fn *starlark.Builtin) *Func {
	f, ok := funcs[fn.Name()]
	if !ok {
		panic("builtins: " + fn.Name() + " is not declared")
	}
	return f
}

// lit is a Go value as Starlark source, for defaults the engine owns.
func lit(v any) string {
	switch v := v.(type) {
	case string:
		return strconv.Quote(v)
	case bool:
		if v {
			return "True"
		}
		return "False"
	case int:
		return strconv.Itoa(v)
	case uint64:
		return strconv.FormatUint(v, 10)
	case float64:
		return strconv.FormatFloat(v, 'g', -1, 64)
	case []string:
		q := make([]string, len(v))
		for i, s := range v {
			q[i] = strconv.Quote(s)
		}
		return "[" + strings.Join(q, ", ") + "]"
	}
	panic(fmt.Sprintf("builtins: lit of %T", v))
}

// starlarkModule is a module as scripts see it.
type starlarkModule = starlarkstruct.Module

// trainParams are the training settings lens.train and model.pretrain
// share, one per train.Config field (a test checks that none is missing);
// the defaults shown are train.Defaults(), which the engine applies.
func trainParams() []Param {
	d := train.Defaults()
	return []Param{
		{Name: "steps", Type: "int", Default: lit(d.Steps), Shown: true, Doc: "optimizer steps (positive); with data of examples and epochs= set, taken from the epochs"},
		{Name: "batch_size", Type: "int", Default: lit(d.BatchSize), Shown: true, Doc: "sequences per micro-batch (positive)"},
		{Name: "seq_len", Type: "int", Default: lit(d.SeqLen), Shown: true, Doc: "tokens per sequence (positive)"},
		{Name: "grad_accum", Type: "int", Default: lit(d.GradAccum), Shown: true, Doc: "micro-batches accumulated per optimizer step (positive)"},
		{Name: "lr", Type: "float", Default: lit(d.LR), Shown: true, Doc: "peak learning rate (positive)"},
		{Name: "loraplus_ratio", Type: "float", Default: lit(d.LoRAPlusRatio), Shown: true, Doc: "LoRA+: B's learning rate is ratio·lr (1 is plain LoRA)"},
		{Name: "warmup", Type: "int", Default: lit(d.Warmup), Shown: true, Doc: "steps of linear warmup"},
		{Name: "schedule", Type: "string", Default: lit(d.Schedule), Shown: true, Doc: `decay after warmup: "cosine", "linear" or "constant"`},
		{Name: "min_lr_ratio", Type: "float", Default: lit(d.MinLRRatio), Shown: true, Doc: "the schedule decays to min_lr_ratio·lr at the last step"},
		{Name: "beta1", Type: "float", Default: lit(d.Beta1), Shown: true, Doc: "AdamW β₁"},
		{Name: "beta2", Type: "float", Default: lit(d.Beta2), Shown: true, Doc: "AdamW β₂"},
		{Name: "eps", Type: "float", Default: lit(d.Eps), Shown: true, Doc: "AdamW ε (positive)"},
		{Name: "weight_decay", Type: "float", Default: lit(d.WeightDecay), Shown: true, Doc: "decoupled weight decay"},
		{Name: "clip_norm", Type: "float", Default: lit(d.ClipNorm), Shown: true, Doc: "clip the global L2 gradient norm to this (0: off); the norm is recorded before clipping"},
		{Name: "eval_every", Type: "int", Default: lit(d.EvalEvery), Shown: true, Doc: "evaluate every N steps (also at step 0 and at the end; 0: only those)"},
		{Name: "eval_batches", Type: "int", Default: lit(d.EvalBatches), Shown: true, Doc: "at most this many batches per eval set (0: all)"},
		{Name: "seed", Type: "int", Default: lit(d.Seed), Shown: true, Doc: "seed of the data order and dropout; a CPU run is bit-reproducible"},
		{Name: "full", Type: "bool", Default: lit(d.Full), Shown: true, Doc: "train every base weight instead of an adapter"},
		{Name: "nan_policy", Type: "string", Default: `"skip"`, Shown: true, Doc: `on a non-finite loss or gradient: "skip" drops the step, "rollback" restores the last checkpoint and multiplies the learning rate by lr_backoff; recorded as events nan_skip / nan_rollback`},
		{Name: "lr_backoff", Type: "float", Default: "0.5", Shown: true, Doc: "learning-rate factor after a rollback, in (0, 1); kept in later checkpoints"},
		{Name: "max_bad_steps", Type: "int", Default: "5", Shown: true, Doc: "this many non-finite steps in a row fail the run with the step and reason"},
		{Name: "base_quant", Type: "string", Default: lit(d.BaseQuant), Shown: true, Doc: `hold the frozen linear-module base weights as "nf4" (QLoRA: 4-bit NormalFloat, blocks of 64, bitsandbytes' layout), "nf4-dq" (NF4 with double-quantized scales) or "bf16", widened to float32 per use, on the CPU or a device (kept packed there too); "" keeps float32. LoRA only`},
		{Name: "head_chunk", Type: "int", Default: lit(d.HeadChunk), Shown: true, Doc: "compute the head and the loss this many token rows at a time, never holding all the logits (0: all at once); same loss and gradients"},
		{Name: "checkpointing", Type: "bool", Default: lit(d.Checkpointing), Shown: true, Doc: "activation checkpointing: keep only each transformer layer's input in the forward pass and recompute the layer in backward (about one extra forward; activations of one layer held instead of all); losses and gradients are bit-identical. LoRA only"},
	}
}

func concat(ps ...[]Param) []Param {
	var out []Param
	for _, p := range ps {
		out = append(out, p...)
	}
	return out
}

var lensModule = func() *starlarkModule {
	m := newModule(&ModuleDecl{Name: "lens", Doc: "Training, the store's runs, sweeps, and script-defined collectors and analyzers.",
		Funcs: []*Func{
			{Name: "lens.train", KwOnly: true, Returns: "run", Impl: lensTrain,
				Doc: "Trains an adapter (or, with full=True, every weight) and returns the run, recorded in the store as it goes: config, metrics every step, evaluations, checkpoints, events. It evaluates at step 0, every eval_every steps and at the end, on the held-out tail of data and on each eval_data set; checkpoints every checkpoint_every steps and at the end. A non-finite loss or gradient is caught before the optimizer step (nan_policy), and weights that are not finite are never checkpointed. lens.train(resume=run) continues a stored run from its last checkpoint with its own settings (only log_to= may be added).",
				Params: concat([]Param{
					{Name: "model", Type: "model", Default: "", Doc: "the base model (model.tiny, model.new, model.from_dir, model.pretrain)"},
					{Name: "data", Type: "data", Default: "", Doc: "what to train on (data.*); its held-out part is the main eval set"},
					{Name: "lora", Type: "lora.config", Default: "None", Doc: "the adapter; None: lora.config()'s defaults, unless full=True"},
				}, trainParams(), []Param{
					{Name: "eval_data", Type: "dict of string: data", Default: "None", Doc: "extra held-out sets, evaluated as eval/<name>"},
					{Name: "lora_seed", Type: "int", Default: "0", Shown: true, Doc: "seed of the adapter's initialisation"},
					{Name: "checkpoint_every", Type: "int", Default: "0", Shown: true, Doc: "checkpoint every N steps (and always at the end)"},
					{Name: "keep_last", Type: "int", Default: "0", Shown: true, Doc: "keep the K latest checkpoints and always the best by eval loss (0: keep all)"},
					{Name: "collect", Type: "list of collector", Default: "[]", Shown: true, Doc: "collectors run inside the loop (collect.*, lens.collector)"},
					{Name: "probe_batch", Type: "int", Default: "0", Shown: true, Doc: "windows of the eval data the probe collectors use (0: 512 tokens' worth, 512/seq_len)"},
					{Name: "log_to", Type: "list of tb.writer or wandb.run", Default: "[]", Shown: true, Doc: "mirror the run live; an integration that fails is reported once and dropped, never the run"},
					{Name: "device", Type: "string", Default: "None", Doc: `"cpu", "cuda" or "auto"; None: lens run --device, else "cpu"`},
					{Name: "init", Type: "run or string", Default: "None", Doc: "start the adapter from a run's checkpoint or a PEFT adapter directory (same base, targets and rank)"},
					{Name: "init_step", Type: "int", Default: "None", Doc: "the checkpoint of the init= run (None: its latest)"},
					{Name: "name", Type: "string", Default: "None", Doc: "the run's name; None: lora-r<R>-<data> or full-<data>"},
					{Name: "tags", Type: "list of string", Default: "[]", Shown: true, Doc: "tags to find the run by (lens.runs(tag=))"},
					{Name: "resume", Type: "run", Default: "None", Doc: "continue this stored run instead (no other argument but log_to=)"},
				})},
			{Name: "lens.runs", Returns: "list of run", Impl: lensRuns,
				Doc: "The stored runs, oldest first (the store's order) unless order_by is given, filtered by name, tag and where.",
				Params: []Param{
					{Name: "name", Type: "string", Default: "None", Doc: "only runs with this name"},
					{Name: "tag", Type: "string", Default: "None", Doc: "only runs with this tag"},
					{Name: "where", Type: "callable", Default: "None", Doc: "only runs r for which where(r) is true"},
					{Name: "order_by", Type: "string", Default: "None", Doc: `sort by this run attribute, ascending, runs without a value last (e.g. "final_loss"); None: oldest first`},
					{Name: "limit", Type: "int", Default: "0", Doc: "at most this many runs (0: all)"},
				}},
			{Name: "lens.run", Returns: "run", Impl: lensRun, Doc: "A stored run by id or name (the newest of that name).",
				Params: []Param{{Name: "id_or_name", Type: "string", Doc: "a run id, a unique id prefix, or a run name"}}},
			{Name: "lens.collector", Returns: "collector", Impl: lensCollector,
				Doc: "A collector written in Starlark, for lens.train(collect=[...]): fn(view) gets {step, loss, lr, grad_norm, modules: {path: {norm_a, norm_b, grad_norm_a, grad_norm_b}}} and returns a dict to store, or None.",
				Params: []Param{
					{Name: "name", Type: "string", Doc: "the collector's name (not a built-in one)"},
					{Name: "fn", Type: "callable", Doc: "fn(view) -> dict or None"},
					{Name: "every", Type: "int", Default: "10", Doc: "run at steps divisible by every (positive)"},
				}},
			{Name: "lens.analyzer", Returns: "None", Impl: lensAnalyzer,
				Doc: `Registers an analyzer written in Starlark for this script: fn(run) returns a dict (a "findings" list of strings is shown in reports); analyze.run and report.standard use it.`,
				Params: []Param{
					{Name: "name", Type: "string", Doc: "the analyzer's name (not a built-in one)"},
					{Name: "fn", Type: "callable", Doc: "fn(run, ...) -> dict"},
				}},
			{Name: "lens.sweep", Returns: "list of run, or dict", Impl: lensSweep,
				Doc: `Runs train(name="NAME/k=v,...", tags=[NAME], **common, **point) for every point as trial processes (backend "local" or "slurm"), each in a store shard merged into this store as it ends; killed or preempted trials are retried and resume from their checkpoint. train is called once per point first to plan the trial (it must call lens.train exactly once and return its run unread). Returns the runs in order, or {"rungs", "best"} with halving. Usually called through @stdlib//sweep.star's run_sweep.`,
				Params: []Param{
					{Name: "name", Type: "string", Doc: "the sweep's name: trial names and tag"},
					{Name: "points", Type: "list of dict", Doc: "lens.train arguments of each trial"},
					{Name: "train", Type: "callable", Doc: "train(**kwargs) -> run, calling lens.train once"},
					{Name: "common", Type: "dict", Default: "None", Doc: "arguments every trial shares"},
					{Name: "backend", Type: "string", Default: "None", Doc: `"local" or "slurm"; None: lens run --backend`},
					{Name: "workers", Type: "int", Default: "None", Doc: "trials at once (None: the CPU count for local, no limit for slurm)"},
					{Name: "retries", Type: "int", Default: "2", Doc: "resubmissions of a failed trial"},
					{Name: "slurm", Type: "dict", Default: "None", Doc: "sbatch resources: partition, cpus_per_task, mem, time, device, gpus, job_name, extra, lens"},
					{Name: "dir", Type: "string", Default: "None", Doc: "the sweep's files (None: STORE/sweeps/NAME)"},
					{Name: "halving", Type: "dict", Default: "None", Doc: `successive halving: {"steps", "rungs": 3, "eta": 2, "metric": "final_loss"}`},
				}},
			{Name: "lens.sweep_backend", Returns: "string", Impl: lensSweepBackend,
				Doc:    `The backend a sweep uses: backend when given, else the lens run --backend default ("inline" when none).`,
				Params: []Param{{Name: "backend", Type: "string", Default: "None", Doc: `"inline", "local" or "slurm"`}}},
		},
		Consts: []Attr{
			{Name: "args", Type: "dict of string: string", Doc: "the KEY=VALUE pairs after -- on the lens run command line"},
			{Name: "version", Type: "string", Doc: "the lens version recorded with every run"},
		}})
	m.Members["version"] = starlark.String(runs.Version)
	return m
}()

var modelModule = newModule(&ModuleDecl{Name: "model", Doc: "Base models: the tiny byte-level Llama, new ones from a config, Hugging Face directories, pretraining, generation and tokenizers.",
	Funcs: []*Func{
		{Name: "model.tiny", KwOnly: true, Kwargs: "**config", Returns: "model", Impl: modelTiny,
			Doc:    "The default tiny byte-level Llama, randomly initialised; keyword arguments override its LlamaConfig fields (hidden_size=, num_hidden_layers=, ...).",
			Params: []Param{{Name: "seed", Type: "int", Default: "0", Doc: "seed of the initialisation"}}},
		{Name: "model.new", Returns: "model", Impl: modelNew, Doc: "A randomly initialised model from a dict of config.json fields (model_type llama, mistral, qwen2, qwen3 or gemma3_text); the family's defaults apply to absent keys as when loading a config.json (Mistral's sliding_window 4096, Gemma 3's tied embeddings). The weights are drawn when first needed: lens.train(base_quant=) draws them packed, never in float32; runs record the seed and hash, not a copy.",
			Params: []Param{
				{Name: "config", Type: "dict", Doc: "config.json fields (model_type, hidden_size, num_hidden_layers, num_attention_heads, vocab_size, ...)"},
				{Name: "seed", Type: "int", Default: "0", Doc: "seed of the initialisation"},
			}},
		{Name: "model.from_dir", Returns: "model", Impl: modelLoad, Doc: "A Hugging Face model directory (config.json, *.safetensors, tokenizer.json); runs record the directory to rebuild their base.",
			Params: []Param{{Name: "dir", Type: "string", Doc: "the directory (inside the workspace or an --allow-read folder)"},
				{Name: "quantize", Type: "string", Default: `""`, Doc: `hold the linear-module weights as "nf4", "nf4-dq" or "bf16" (and the embedding and head as bf16) from the start, packing each weight as it is read, never the whole float32 model (QLoRA); lens.train then uses that base_quant. Such a model trains LoRA (on the CPU or a device) and generates on the CPU`}}},
		{Name: "model.pretrain", KwOnly: true, Returns: "model", Impl: modelPretrain,
			Doc: "A model trained in full from random weights, cached in the store by a hash of everything that made it, so a second call returns the stored one. Takes lens.train's training settings.",
			Params: concat([]Param{
				{Name: "config", Type: "dict", Default: "None", Doc: "LlamaConfig fields over model.tiny()'s"},
				{Name: "data", Type: "data", Default: "None", Doc: "the corpus; None: data.opticks()"},
				{Name: "name", Type: "string", Default: `"pretrain"`, Shown: true, Doc: "the pretraining run's name"},
			}, trainParams())},
		{Name: "model.generate", Returns: "string", Impl: modelGenerate,
			Doc: "The text a model generates after prompt, with an optional adapter: greedy at temperature 0, else seeded sampling. Ends at the model's EOS ids, at max_new_tokens, or at the first stop string (cut off with what follows).",
			Params: []Param{
				{Name: "m", Type: "model", Doc: "the base model"},
				{Name: "prompt", Type: "string or list of dict", Doc: "a string, or chat messages [{role, content}] for a model with a chat template"},
				{Name: "adapter", Type: "run or string", Default: "None", Doc: "a run (its latest checkpoint) or a PEFT adapter directory"},
				{Name: "max_new_tokens", Type: "int", Default: "64", Doc: "at most this many tokens"},
				{Name: "temperature", Type: "float", Default: "0.0", Doc: "0: greedy"},
				{Name: "top_p", Type: "float", Default: "1.0", Doc: "nucleus sampling mass"},
				{Name: "top_k", Type: "int", Default: "0", Doc: "sample among the k likeliest (0: all)"},
				{Name: "seed", Type: "int", Default: "0", Doc: "sampling seed (not negative)"},
				{Name: "stop", Type: "list of string", Default: "None", Doc: "stop strings"},
				{Name: "device", Type: "string", Default: "None", Doc: `"cpu", "cuda" or "auto" (the CUDA device, else the CPU); None: lens run --device, else "cpu"`},
			}},
		{Name: "model.tokenizer", Returns: "tokenizer", Impl: modelTokenizer,
			Doc:    "The tokenizer of a model directory: tokenizer.json with tokenizer_config.json and its chat template.",
			Params: []Param{{Name: "model", Type: "model or string", Doc: "a model from model.from_dir, or a directory"}}},
	}})

var loraModule = newModule(&ModuleDecl{Name: "lora", Doc: "LoRA adapter configurations.",
	Funcs: []*Func{{Name: "lora.config", Returns: "lora.config", Impl: loraConfig,
		Doc: "A LoRA configuration: y = x·Wᵀ + s·(drop(x)·Aᵀ)·Bᵀ on each target linear, s = alpha/r (alpha/√r with rslora).",
		Params: []Param{
			{Name: "r", Type: "int", Default: lit(lora.DefaultConfig().Rank), Doc: "rank"},
			{Name: "alpha", Type: "float", Default: lit(lora.DefaultConfig().Alpha), Doc: "scale numerator"},
			{Name: "dropout", Type: "float", Default: lit(lora.DefaultConfig().Dropout), Doc: "dropout on the adapter's input"},
			{Name: "targets", Type: "string or list of string", Default: lit(lora.DefaultConfig().Targets), Doc: "module names (q_proj, k_proj, v_proj, o_proj, gate_proj, up_proj, down_proj, lm_head)"},
			{Name: "rslora", Type: "bool", Default: lit(lora.DefaultConfig().RSLoRA), Doc: "rank-stabilised scale alpha/√r"},
		}}}})

// packingDoc documents packing= of the example datasets.
const packingDoc = "several whole examples per training row, attention and positions restarting at each one (same loss and gradients as one a row, fewer padded tokens); eval stays one a row"

// exampleParams are the parameters data.jsonl, data.parquet and
// data.examples share, in exampleArgs.pairs' order.
func exampleParams(evalType string) []Param {
	return []Param{
		{Name: "prompt", Type: "string", Default: "None", Doc: "column of the prompt (prompt/completion shape)"},
		{Name: "completion", Type: "string", Default: "None", Doc: "column of the completion"},
		{Name: "messages", Type: "string", Default: "None", Doc: "column of a list of {role, content} messages"},
		{Name: "text", Type: "string", Default: "None", Doc: "column of plain text (all of it is trained on)"},
		{Name: "format", Type: "callable", Default: "None", Doc: "format(row) -> dict in one of the shapes, called at construction; its results are stored with the run"},
		{Name: "eval_frac", Type: "float", Default: "0.05", Doc: "fraction of the examples held out (fixed seed), when eval is None"},
		{Name: "eval", Type: evalType, Default: "None", Doc: "held-out examples"},
		{Name: "train_on", Type: "string", Default: `"completion"`, Doc: `"completion" (assistant turns) or "all" tokens`},
		{Name: "max_len", Type: "int", Default: "0", Doc: "longest example in tokens (0: seq_len)"},
		{Name: "truncation", Type: "string", Default: `"error"`, Doc: `an over-long example: "error", "right" or "left"`},
		{Name: "epochs", Type: "float", Default: "0.0", Doc: "train this many passes (sets steps; 0: steps decides)"},
		{Name: "packing", Type: "bool", Default: "False", Doc: packingDoc},
	}
}

var dataModule = newModule(&ModuleDecl{Name: "data", Doc: "Training data: text corpora (a held-out tail for evaluation) and datasets of examples for supervised fine-tuning.",
	Funcs: []*Func{
		{Name: "data.opticks", Returns: "data", Impl: dataBuiltin("opticks"), Doc: "Newton's Opticks from the Go distribution's testdata, as bytes.",
			Params: []Param{{Name: "eval_frac", Type: "float", Default: "0.05", Doc: "held-out tail"}}},
		{Name: "data.gocode", Returns: "data", Impl: dataBuiltin("gocode"), Doc: "The Go standard library's source, as bytes.",
			Params: []Param{{Name: "eval_frac", Type: "float", Default: "0.05", Doc: "held-out tail"}}},
		{Name: "data.text", Returns: "data", Impl: dataText, Doc: "A text file, tokenized by the run's model's tokenizer.",
			Params: []Param{{Name: "path", Type: "string", Doc: "the file (inside the workspace or an --allow-read folder)"},
				{Name: "eval_frac", Type: "float", Default: "0.05", Doc: "held-out tail"}}},
		{Name: "data.jsonl", Returns: "data", Impl: dataJSONL, Doc: "Examples from a JSONL file, one object per line, in the text, prompt/completion or messages shape; errors name file, line and field.",
			Params: concat([]Param{{Name: "path", Type: "string", Doc: "the file"}}, exampleParams("string (a file)"))},
		{Name: "data.parquet", Returns: "data", Impl: dataParquet, Doc: "Examples from a Parquet file, as data.jsonl.",
			Params: concat([]Param{{Name: "path", Type: "string", Doc: "the file"}}, exampleParams("string (a file)"))},
		{Name: "data.gofunc", Returns: "data", Impl: dataGoFunc,
			Doc: `The exported functions of the Go standard library (GOROOT/src) as prompt/completion examples, so instruction tuning needs no download: task "type" (signature → its func type without names), "signature" (doc sentence → signature) or "name" (doc sentence → name). Rebuilt from GOROOT on resume.`,
			Params: []Param{
				{Name: "task", Type: "string", Default: `"type"`, Doc: `"type", "signature" or "name"`},
				{Name: "eval_frac", Type: "float", Default: "0.05", Doc: "fraction of the examples held out (fixed seed)"},
				{Name: "train_on", Type: "string", Default: `"completion"`, Doc: `"completion" or "all" tokens`},
				{Name: "max_len", Type: "int", Default: "0", Doc: "longest example in tokens (0: seq_len)"},
				{Name: "truncation", Type: "string", Default: `"error"`, Doc: `an over-long example: "error", "right" or "left"`},
				{Name: "epochs", Type: "float", Default: "0.0", Doc: "train this many passes (sets steps; 0: steps decides)"},
				{Name: "packing", Type: "bool", Default: "False", Doc: packingDoc},
			}},
		{Name: "data.examples", Returns: "data", Impl: dataExamples, Doc: "Examples built in the script (a list of dicts), stored normalized with the run so a resume needs neither the script nor format.",
			Params: concat([]Param{{Name: "rows", Type: "list of dict", Doc: "the examples"},
				{Name: "name", Type: "string", Default: `"examples"`, Doc: "the dataset's name (the eval set's)"}}, exampleParams("list of dict"))},
	}})

var reportModule = newModule(&ModuleDecl{Name: "report", Doc: "Tables and reports, printed and returned as text, optionally written as self-contained HTML.",
	Funcs: []*Func{
		{Name: "report.table", Returns: "string", Impl: reportTable, Doc: "Prints a table and returns it as a string.",
			Params: []Param{
				{Name: "rows", Type: "list of list or dict", Doc: "rows: lists, tuples, or dicts (the first one's keys are the header)"},
				{Name: "header", Type: "list of string", Default: "None", Doc: "column titles"},
				{Name: "title", Type: "string", Default: `""`, Doc: "a line above the table"},
			}},
		{Name: "report.standard", Returns: "string", Impl: reportStandard, Doc: "The standard report of a run, with every analyzer's findings (script analyzers included).",
			Params: []Param{
				{Name: "run", Type: "run", Doc: "the run"},
				{Name: "kind", Type: "string", Default: `"executive"`, Doc: `"executive", "technical" or "diagnostic"`},
				{Name: "html", Type: "string", Default: "None", Doc: "also write the report as HTML with SVG charts to this file"},
			}},
		{Name: "report.compare", Returns: "string", Impl: reportCompare, Doc: "Compares runs: config diff, results, overlaid curves, adapter subspace similarity heatmap.",
			Params: []Param{
				{Name: "runs", Type: "list of run", Doc: "the runs"},
				{Name: "html", Type: "string", Default: "None", Doc: "also write it as HTML to this file"},
			}},
		{Name: "report.frontier", Returns: "string", Impl: reportFrontier, Doc: "Learning against forgetting: one point per evaluation of each run, target eval loss against source eval loss.",
			Params: []Param{
				{Name: "runs", Type: "list of run", Doc: "the runs"},
				{Name: "target", Type: "string", Doc: "the eval set learned (eval/<target>)"},
				{Name: "source", Type: "string", Doc: "the eval set that may be forgotten"},
				{Name: "html", Type: "string", Default: "None", Doc: "also write it as HTML to this file"},
			}},
	}})

// collectOptions declares each built-in collector's options beyond every=.
var collectOptions = map[string][]Param{
	"adapter_weights":  {{Name: "tensors", Type: "bool", Default: "False", Doc: "also store A and B"}},
	"adapter_grads":    {},
	"lora_activations": {},
	"activations": {
		{Name: "hooks", Type: "string or list of string", Default: `["blocks.*.hook_resid_post"]`, Doc: "glob patterns of TransformerLens hook names"},
		{Name: "tensors", Type: "bool", Default: "False", Doc: "store full tensors instead of summaries"},
	},
}

func collectModule() *starlarkModule { return collectMod }

var collectMod = func() *starlarkModule {
	d := &ModuleDecl{Name: "collect", Doc: "Built-in collectors for lens.train(collect=[...]): each runs inside the training loop at its own every and writes one typed record per module per collected step."}
	for _, name := range collect.Default.Names() {
		reg, _ := collect.Default.Get(name)
		f := &Func{Name: "collect." + name, KwOnly: true, Returns: "collector", Impl: collectorCtor(name), Doc: reg.Doc + " (records: " + reg.Produces + ").",
			Params: append([]Param{{Name: "every", Type: "int", Default: "10", Doc: "collect at steps divisible by every (positive)"}}, collectOptions[name]...)}
		if _, ok := collectOptions[name]; !ok {
			f.Kwargs = "**options"
		}
		d.Funcs = append(d.Funcs, f)
	}
	d.Funcs = append(d.Funcs, &Func{Name: "collect.names", Returns: "list of string", Doc: "The registered collectors' names.",
		Impl: func(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
			if err := unpack(fn, args, kwargs); err != nil {
				return nil, err
			}
			return fromGo(anySlice(collect.Default.Names())), nil
		}})
	return newModule(d)
}()

var analyzeModule = newModule(&ModuleDecl{Name: "analyze", Doc: "Analyzers over stored runs (definitions and sources in docs/SCIENCE.md).",
	Funcs: []*Func{
		{Name: "analyze.run", Varargs: "*runs", Returns: "dict", Impl: analyzeRun,
			Doc:    `Runs an analyzer (built-in or lens.analyzer) over one or more runs: {"analyzer", "values", "findings"}.`,
			Params: []Param{{Name: "name", Type: "string", Doc: "the analyzer: gradient, lora, convergence, checkpoint, activation, similarity (two runs), or a script's"}}},
		{Name: "analyze.names", Returns: "list of string", Impl: analyzeNames, Doc: "The built-in analyzers' names and this script's."},
		{Name: "analyze.subspace", Returns: "dict", Impl: analyzeSubspace,
			Doc: `Subspace similarity φ(i, j) between lora_A of a module in two runs (or two checkpoints of one run), i over run_a's rank, with its random baseline: {"phi", "baseline"}.`,
			Params: []Param{
				{Name: "run_a", Type: "run", Doc: "the first run"},
				{Name: "run_b", Type: "run", Doc: "the second run (may be run_a)"},
				{Name: "module", Type: "string", Doc: "the module path, e.g. model.layers.0.self_attn.q_proj"},
				{Name: "step_a", Type: "int", Default: "-1", Doc: "run_a's checkpoint (negative: the latest)"},
				{Name: "step_b", Type: "int", Default: "-1", Doc: "run_b's checkpoint (negative: the latest)"},
			}},
	}})

var evaluateModule = newModule(&ModuleDecl{Name: "evaluate", Doc: "Evaluation by generation: what a model or a run's adapter now answers to held-out examples.",
	Funcs: []*Func{
		{Name: "evaluate.generate", Returns: "dict", Impl: evaluateGenerate,
			Doc: `Makes the subject answer the held-out examples of data greedily, formatted as training formats them (the base model's chat template and special tokens), up to its end of sequence, a stop string or max_new_tokens, and scores each answer: {"score", "n", "predictions": [{"where", "prompt", "expected", "prediction", "score"}]}. For a run the mean is stored as its metric gen/<set>/<scorer> at its last checkpoint, with every prediction as its "generate" records.`,
			Params: []Param{
				{Name: "subject", Type: "run or model", Doc: "a run (its latest checkpoint's weights) or a model (as it is)"},
				{Name: "data", Type: "data", Doc: "examples (prompt/completion or messages); their held-out part is scored"},
				{Name: "scorer", Type: "string or callable", Default: `"exact"`, Doc: `"exact" (equal after trimming white space), "contains" (the expected answer appears), or fn(prediction, example) -> number or bool, example a dict of the example's fields and "expected"`},
				{Name: "max_new_tokens", Type: "int", Default: "64", Doc: "longest answer (also capped by the model's positions)"},
				{Name: "limit", Type: "int", Default: "0", Doc: "score the first limit held-out examples (0: all)"},
				{Name: "stop", Type: "list of string", Default: "[]", Doc: "an answer ends before the first of these"},
			}},
	}})

var hfDeclared = newModule(&ModuleDecl{Name: "hf", Doc: "Hugging Face: PEFT adapter directories and the Hub.",
	Funcs: []*Func{
		{Name: "hf.export_adapter", Returns: "string", Impl: hfExportAdapter, Doc: "Writes a run's adapter as a PEFT directory (adapter_config.json + adapter_model.safetensors) and returns dir.",
			Params: []Param{
				{Name: "run", Type: "run", Doc: "a LoRA run"},
				{Name: "dir", Type: "string", Doc: "the directory to write"},
				{Name: "step", Type: "int", Default: "None", Doc: "a checkpoint step (None: the latest)"},
			}},
		{Name: "hf.load_adapter", Returns: "adapter", Impl: hfLoadAdapter, Doc: "Reads a PEFT adapter directory: .config (a lora.config), .tensors (name -> shape), .base, .dir.",
			Params: []Param{
				{Name: "dir", Type: "string", Doc: "the adapter directory"},
				{Name: "model", Type: "model", Default: "None", Doc: "check the adapter against this model's modules and shapes"},
			}},
		{Name: "hf.push", Returns: "push or None", Impl: hfPush,
			Doc: "Uploads a run's adapter and a model card to the Hub with the token in HF_TOKEN. Without a token, network or Hub it prints what it skipped and returns None (strict=True fails instead).",
			Params: []Param{
				{Name: "run", Type: "run", Doc: "a LoRA run"},
				{Name: "repo", Type: "string", Doc: "OWNER/NAME"},
				{Name: "private", Type: "bool", Default: "True", Doc: "create the repository private"},
				{Name: "all_checkpoints", Type: "bool", Default: "False", Doc: "each checkpoint as its own commit"},
				{Name: "revision", Type: "string", Default: `"main"`, Doc: "the branch"},
				{Name: "strict", Type: "bool", Default: "False", Doc: "fail instead of skipping"},
			}},
	}})

var tbModule = newModule(&ModuleDecl{Name: "tb", Doc: "TensorBoard event files.",
	Funcs: []*Func{
		{Name: "tb.export", Returns: "dict", Impl: tbExport,
			Doc: `Writes a stored run as a TensorBoard event file in dir (which must hold none yet): metrics as scalars, collected adapter tensors and checkpoint weights as histograms, the config as text; returns {"file", "scalars", "histograms", "texts"}.`,
			Params: []Param{
				{Name: "run", Type: "run or string", Doc: "a run, or its id or name"},
				{Name: "dir", Type: "string", Doc: "the directory"},
			}},
		{Name: "tb.writer", Returns: "tb.writer", Impl: tbWriter, Doc: "For lens.train(log_to=[...]): mirrors one run into dir while it trains (scalars every step, checkpoint weight histograms, config as text).",
			Params: []Param{{Name: "dir", Type: "string", Doc: "the directory, not holding another run's events"}}},
	}})

var wandbDeclared = newModule(&ModuleDecl{Name: "wandb", Doc: "Weights & Biases, with the key in WANDB_API_KEY (scripts never hold it). Failed uploads print what was skipped and how to finish later; strict=True fails the script instead.",
	Funcs: []*Func{
		{Name: "wandb.run", Returns: "wandb.run", Impl: wandbRunFn, Doc: "For lens.train(log_to=[...]): the config and one history line per step to W&B, or an offline folder (without a key it logs offline).",
			Params: []Param{
				{Name: "project", Type: "string", Doc: "the W&B project (not empty)"},
				{Name: "entity", Type: "string", Default: "None", Doc: "the W&B entity (None: the key's default)"},
				{Name: "mode", Type: "string", Default: `"online"`, Doc: `"online" or "offline"`},
				{Name: "dir", Type: "string", Default: "None", Doc: "where offline folders go (None: STORE/wandb)"},
			}},
		{Name: "wandb.sync", Returns: "list of wandb.upload", Impl: wandbSync, Doc: "Uploads offline folders, going on where an earlier sync stopped.",
			Params: []Param{
				{Name: "dir", Type: "string", Default: "None", Doc: "the offline folders' parent (None: STORE/wandb)"},
				{Name: "project", Type: "string", Default: "None", Doc: "override the folders' project"},
				{Name: "entity", Type: "string", Default: "None", Doc: "override the folders' entity"},
				{Name: "strict", Type: "bool", Default: "False", Doc: "fail instead of skipping"},
			}},
		{Name: "wandb.upload", Returns: "wandb.upload or None", Impl: wandbUpload, Doc: "Uploads a stored run (trained with or without W&B), skipping what the server already has.",
			Params: []Param{
				{Name: "run", Type: "run", Doc: "the run"},
				{Name: "project", Type: "string", Doc: "the W&B project"},
				{Name: "entity", Type: "string", Default: "None", Doc: "the W&B entity"},
				{Name: "strict", Type: "bool", Default: "False", Doc: "fail instead of skipping"},
			}},
	}})

// Methods and attributes of the values scripts receive.
var _ = func() int {
	for _, f := range []*Func{
		{Name: "model.save", Returns: "None", Doc: "Writes the model as a Hugging Face directory (config.json + model.safetensors).",
			Params: []Param{{Name: "dir", Type: "string", Doc: "the directory"}}},
		{Name: "run.metrics", Returns: "list of (int, float)", Doc: "A metric's series as (step, value) pairs: loss, lr, grad_norm, tokens_per_s, step_time_s, memory_bytes, peak_rss (the process's peak resident set size, bytes; 0 off Linux) every step; eval/<set> at each evaluation.",
			Params: []Param{{Name: "name", Type: "string", Doc: "the metric (see .metric_names)"}}},
		{Name: "run.checkpoints", Returns: "list of checkpoint", Doc: "The run's checkpoints: structs with step, eval_loss (a dict by eval set) and time."},
		{Name: "run.eval_loss", Returns: "float", Doc: "An eval loss of the run: the last evaluation, or the one at step.",
			Params: []Param{
				{Name: "name", Type: "string", Default: "None", Doc: "the eval set (None: the run's own data)"},
				{Name: "step", Type: "int", Default: "None", Doc: "the evaluation's step (None: the last)"},
			}},
		{Name: "run.records", Returns: "list of record", Doc: "A collector's JSON records as structs with step, name (the module) and value (a dict).",
			Params: []Param{
				{Name: "collector", Type: "string", Doc: "the collector's name"},
				{Name: "step", Type: "int", Default: "None", Doc: "only this step (None: all)"},
			}},
		{Name: "tokenizer.encode", Returns: "list of int", Doc: "Token ids of text, as transformers' tokenizer(text) gives them.",
			Params: []Param{
				{Name: "text", Type: "string", Doc: "the text"},
				{Name: "add_special", Type: "bool", Default: "True", Doc: "add the special tokens the tokenizer config adds (BOS)"},
			}},
		{Name: "tokenizer.decode", Returns: "string", Doc: "The text of token ids.",
			Params: []Param{{Name: "ids", Type: "list of int", Doc: "the ids"}}},
		{Name: "tokenizer.apply_chat_template", Kwargs: "**template_vars", Returns: "string or list of int",
			Doc: "Renders messages with the model's chat template as transformers' apply_chat_template does; other keyword arguments are template variables (e.g. enable_thinking=False).",
			Params: []Param{
				{Name: "messages", Type: "list of dict", Doc: "[{role, content}]"},
				{Name: "add_generation_prompt", Type: "bool", Default: "False", Doc: "end with the assistant turn's opening"},
				{Name: "tokenize", Type: "bool", Default: "False", Doc: "return token ids instead of text"},
			}},
	} {
		declare(f)
	}
	declareType(&TypeDecl{Name: "model", Doc: "A base model of a supported family (Hugging Face config fields and tensor names).", Attrs: []Attr{
		{Name: "config", Type: "dict", Doc: "its config.json fields"},
		{Name: "params", Type: "int", Doc: "its parameter count"},
		{Name: "save", Type: "method"},
	}})
	declareType(&TypeDecl{Name: "lora.config", Doc: "A LoRA configuration (lora.config).", Attrs: []Attr{
		{Name: "r", Type: "int", Doc: "rank"}, {Name: "alpha", Type: "float", Doc: "scale numerator"},
		{Name: "dropout", Type: "float", Doc: "dropout on the adapter's input"}, {Name: "targets", Type: "list of string", Doc: "target modules"},
		{Name: "rslora", Type: "bool", Doc: "rank-stabilised scale"}, {Name: "scale", Type: "float", Doc: "s: alpha/r, or alpha/√r with rslora"},
	}})
	declareType(&TypeDecl{Name: "data", Doc: "Training data (data.*).", Attrs: []Attr{
		{Name: "source", Type: "string", Doc: `"opticks", "gocode", a path, or the examples' name`},
		{Name: "eval_frac", Type: "float", Doc: "the held-out fraction"},
	}})
	declareType(&TypeDecl{Name: "run", Doc: "A stored run. Its attributes read the store when asked, so a run value shows the run's current state.", Attrs: []Attr{
		{Name: "id", Type: "string", Doc: "the run id"},
		{Name: "name", Type: "string", Doc: "the run's name"},
		{Name: "status", Type: "string", Doc: "running, done, failed or cancelled"},
		{Name: "reason", Type: "string", Doc: "why it failed or was cancelled"},
		{Name: "config", Type: "dict", Doc: "a flat dict: training and LoRA fields, lora_seed, data, checkpoint_every, init, device, model (its LlamaConfig)"},
		{Name: "steps", Type: "int", Doc: "steps trained"},
		{Name: "final_loss", Type: "float or None", Doc: "the last eval loss on the run's own data"},
		{Name: "tags", Type: "list of string", Doc: "its tags"},
		{Name: "metrics", Type: "method"},
		{Name: "metric_names", Type: "list of string", Doc: "the recorded metrics"},
		{Name: "checkpoints", Type: "method"},
		{Name: "eval_loss", Type: "method"},
		{Name: "records", Type: "method"},
	}})
	declareType(&TypeDecl{Name: "tokenizer", Doc: "A model directory's tokenizer (model.tokenizer).", Attrs: []Attr{
		{Name: "apply_chat_template", Type: "method"},
		{Name: "bos_token", Type: "string or None", Doc: "the BOS token (None when unset)"},
		{Name: "decode", Type: "method"},
		{Name: "encode", Type: "method"},
		{Name: "eos_token", Type: "string or None", Doc: "the EOS token (None when unset)"},
		{Name: "pad_token", Type: "string or None", Doc: "the padding token (None when unset)"},
		{Name: "vocab_size", Type: "int", Doc: "the number of tokens"},
	}})
	declareType(&TypeDecl{Name: "collector", Doc: "A collector for lens.train(collect=[...]) (collect.*, lens.collector)."})
	declareType(&TypeDecl{Name: "tb.writer", Doc: "A TensorBoard mirror of one run (tb.writer).", Attrs: []Attr{
		{Name: "dir", Type: "string", Doc: "its directory"},
		{Name: "file", Type: "string or None", Doc: "the event file, once a run was given to it"},
	}})
	declareType(&TypeDecl{Name: "wandb.run", Doc: "The settings of a W&B mirror (wandb.run); each run given to it gets its own W&B run.", Attrs: []Attr{
		{Name: "project", Type: "string", Doc: "the project"}, {Name: "entity", Type: "string", Doc: "the entity"},
		{Name: "mode", Type: "string", Doc: "online or offline"}, {Name: "dir", Type: "string", Doc: "where offline folders go"},
	}})
	return 0
}()
