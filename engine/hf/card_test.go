package hf

import (
	"flag"
	"os"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/lora"
	"lens/engine/train"
	"lens/kv"
)

var update = flag.Bool("update", false, "rewrite the golden files under testdata")

func TestModelCardGolden(t *testing.T) {
	loss := kv.Point{Step: 300, Value: 1.23456}
	full := CardInfo{
		Repo: "alice/tiny-opticks-r8", RunID: "r20260101-abcd", RunName: "opticks | r8", Status: "done", Step: 300,
		BaseModel: "TinyLlama/TinyLlama-1.1B-Chat-v1.0", BaseRef: "/cache/models--TinyLlama--TinyLlama-1.1B-Chat-v1.0/snapshots/x",
		Data: "opticks",
		LoRA: lora.Config{Rank: 8, Alpha: 16, Dropout: 0.05, Targets: []string{"q_proj", "v_proj"}, RSLoRA: true},
		Train: train.Config{Steps: 300, LR: 2e-3, Schedule: "cosine", Warmup: 30, BatchSize: 8, GradAccum: 2, SeqLen: 128,
			Seed: 7, WeightDecay: 0.01, ClipNorm: 1, LoRAPlusRatio: 16},
		FinalLoss: &loss,
		Evals: []EvalSummary{
			{Name: "opticks", First: kv.Point{Step: 0, Value: 2.5}, Last: kv.Point{Step: 300, Value: 1.4}, Best: kv.Point{Step: 250, Value: 1.39}},
			{Name: "gocode", First: kv.Point{Step: 0, Value: 2.1}, Last: kv.Point{Step: 300, Value: 2.2}, Best: kv.Point{Step: 0, Value: 2.1}},
		},
		LensVersion: "0.1.0",
	}
	lensBase := CardInfo{
		Repo: "bob/scratch", RunID: "r1", RunName: "", Status: "cancelled", Step: 40, BaseRef: "lens:0123456789abcdef01234567",
		BaseModel: "/not/a/hub/id", Data: "corpus.txt",
		LoRA:        lora.Config{Rank: 4, Alpha: 4, Targets: []string{"all-linear"}},
		Train:       train.Config{Steps: 100, LR: 1e-3, Schedule: "constant", BatchSize: 4, SeqLen: 64, GradAccum: 1, LoRAPlusRatio: 1},
		LensVersion: "0.1.0",
	}
	for _, tc := range []struct {
		name string
		info CardInfo
		want []string // facts the golden file must hold, so -update cannot bless a card that lost them
	}{
		{"hub_base", full, []string{"library_name: peft", "base_model: TinyLlama/TinyLlama-1.1B-Chat-v1.0", "- lens\n- lora",
			"| r | 8 |", "| alpha | 16 |", "| dropout | 0.05 |", "| targets | q_proj, v_proj |", "| rslora | true |",
			"| steps | 300 |", "| learning rate | 0.002 |", "cosine, 30 warmup steps", "| sequence length | 128 |", "| seed | 7 |",
			"| final train loss | 300 | 1.2346 |", "| eval loss `opticks`, first | 0 | 2.5000 |", "| eval loss `opticks`, best | 250 | 1.3900 |",
			"opticks \\| r8", `PeftModel.from_pretrained(base, "alice/tiny-opticks-r8")`, "lens 0.1.0", "r20260101-abcd"}},
		{"lens_base", lensBase, []string{"tags:", "lens export r1 --out DIR --with-base", "(none recorded)", "| status | cancelled |", "# r1"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			got := ModelCard(tc.info)
			for _, w := range tc.want {
				require.Contains(t, got, w)
			}
			path := filepath.Join("testdata", "card_"+tc.name+".md")
			if *update {
				require.NoError(t, os.WriteFile(path, []byte(got), 0o644))
			}
			want, err := os.ReadFile(path)
			require.NoError(t, err, "run go test -update to create %s", path)
			require.Equal(t, string(want), got)
		})
	}
	require.NotContains(t, ModelCard(lensBase), "base_model:", "a base that is not a Hub id stays out of the front matter")
}
