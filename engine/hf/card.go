package hf

import (
	"fmt"
	"regexp"
	"strings"

	"lens/engine/lora"
	"lens/engine/train"
	"lens/kv"
)

// CardInfo is what a model card says about a run.
type CardInfo struct {
	Repo        string // OWNER/NAME the card is pushed to
	RunID       string
	RunName     string
	Status      string
	Step        int    // checkpoint step of the adapter
	BaseModel   string // Hub id of the base model; "" when it is not a Hub model
	BaseRef     string // what lens knows of the base: a directory or "lens:<hash>"
	Data        string // training data source
	LoRA        lora.Config
	Train       train.Config
	FinalLoss   *kv.Point     // last training loss
	Evals       []EvalSummary // one per eval set, main set first
	LensVersion string
}

// EvalSummary is one eval set's loss at its first and last evaluation and
// at its best.
type EvalSummary struct {
	Name              string
	First, Last, Best kv.Point
}

var hubID = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$`)

// ModelCard renders README.md for a pushed adapter: YAML front matter the
// Hub reads (library, base model, tags), then the run, its LoRA and
// training settings, a metrics table and how to load the adapter.
func ModelCard(info CardInfo) string {
	var b strings.Builder
	w := func(format string, args ...any) { fmt.Fprintf(&b, format, args...) }
	w("---\nlibrary_name: peft\n")
	if hubID.MatchString(info.BaseModel) {
		w("base_model: %s\n", info.BaseModel)
	}
	w("tags:\n- lens\n- lora\n---\n\n")
	title := info.RunName
	if title == "" {
		title = info.RunID
	}
	w("# %s\n\n", mdEscape(title))
	w("A LoRA adapter trained with lens %s, in PEFT's format ", info.LensVersion)
	w("(`adapter_config.json` + `adapter_model.safetensors`), at step %d.\n\n", info.Step)

	w("## Run\n\n| | |\n|---|---|\n")
	w("| run id | `%s` |\n| name | %s |\n| status | %s |\n", info.RunID, mdEscape(info.RunName), mdEscape(info.Status))
	base := info.BaseModel
	if !hubID.MatchString(base) {
		base = info.BaseRef
	}
	w("| base model | `%s` |\n| data | `%s` |\n\n", mdEscape(base), mdEscape(info.Data))

	l := info.LoRA
	w("## LoRA\n\n| | |\n|---|---|\n")
	w("| r | %d |\n| alpha | %g |\n| scale | %.4g |\n| dropout | %g |\n", l.Rank, l.Alpha, l.Scale(), l.Dropout)
	w("| targets | %s |\n| rslora | %v |\n\n", mdEscape(strings.Join(l.Targets, ", ")), l.RSLoRA)

	t := info.Train
	w("## Training\n\n| | |\n|---|---|\n")
	w("| steps | %d |\n| learning rate | %g |\n| schedule | %s", t.Steps, t.LR, t.Schedule)
	if t.Warmup > 0 {
		w(", %d warmup steps", t.Warmup)
	}
	w(" |\n| batch size | %d", t.BatchSize)
	if t.GradAccum > 1 {
		w(" × %d accumulated", t.GradAccum)
	}
	w(" |\n| sequence length | %d |\n| seed | %d |\n", t.SeqLen, t.Seed)
	if t.WeightDecay > 0 {
		w("| weight decay | %g |\n", t.WeightDecay)
	}
	if t.ClipNorm > 0 {
		w("| gradient clipping | %g |\n", t.ClipNorm)
	}
	if t.LoRAPlusRatio > 0 && t.LoRAPlusRatio != 1 {
		w("| LoRA+ ratio | %g |\n", t.LoRAPlusRatio)
	}
	w("\n## Metrics\n\nLosses are mean next-token cross entropy in nats per token.\n\n| metric | step | value |\n|---|---|---|\n")
	if info.FinalLoss != nil {
		w("| final train loss | %d | %.4f |\n", info.FinalLoss.Step, info.FinalLoss.Value)
	}
	for _, e := range info.Evals {
		n := mdEscape(e.Name)
		w("| eval loss `%s`, first | %d | %.4f |\n", n, e.First.Step, e.First.Value)
		w("| eval loss `%s`, last | %d | %.4f |\n", n, e.Last.Step, e.Last.Value)
		w("| eval loss `%s`, best | %d | %.4f |\n", n, e.Best.Step, e.Best.Value)
	}
	if info.FinalLoss == nil && len(info.Evals) == 0 {
		w("| (none recorded) | | |\n")
	}

	w("\n## Use with PEFT\n\n")
	if hubID.MatchString(info.BaseModel) {
		w("```python\nfrom transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n\n")
		w("base = AutoModelForCausalLM.from_pretrained(%q)\n", info.BaseModel)
		w("model = PeftModel.from_pretrained(base, %q)\n```\n", info.Repo)
	} else {
		w("The base model (`%s`) is not on the Hub. Write it next to the adapter with\n", mdEscape(base))
		w("`lens export %s --out DIR --with-base`, then:\n\n", info.RunID)
		w("```python\nfrom transformers import AutoModelForCausalLM\nfrom peft import PeftModel\n\n")
		w("base = AutoModelForCausalLM.from_pretrained(\"DIR/base\")\n")
		w("model = PeftModel.from_pretrained(base, %q)\n```\n", info.Repo)
	}
	return b.String()
}

// mdEscape keeps user text (run names, statuses) from breaking a table row.
func mdEscape(s string) string {
	return strings.NewReplacer("|", `\|`, "\n", " ", "\r", " ", "`", "'").Replace(s)
}
