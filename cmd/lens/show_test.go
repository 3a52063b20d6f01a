package main

import (
	"encoding/json"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"
)

// cells returns the trimmed cells of the first table row of out whose
// first cell is first.
func cells(t *testing.T, out, first string) []string {
	t.Helper()
	for _, line := range strings.Split(out, "\n") {
		parts := strings.FieldsFunc(line, func(r rune) bool { return r == '│' || r == '|' })
		if len(parts) > 0 && strings.TrimSpace(parts[0]) == first {
			for i := range parts {
				parts[i] = strings.TrimSpace(parts[i])
			}
			return parts
		}
	}
	t.Fatalf("no row %q in:\n%s", first, out)
	return nil
}

// TestShowAndReportJSON: lens show prints lora_seed, what the collectors
// recorded, and an eval loss only on the checkpoints of a step that
// evaluated (with eval_every = 0 checkpoints 2 and 4 showed step 0's loss,
// as did run.checkpoints()); lens report --json prints the standard report
// and the comparison as JSON (with --html the file is written and stdout
// holds only the JSON), and the comparison's config diff has lora_seed.
func TestShowAndReportJSON(t *testing.T) {
	script := `
base = model.tiny(hidden_size = 32, intermediate_size = 64, num_hidden_layers = 2, seed = 1)
def train(name, **kw):
    return lens.train(model = base, data = data.text("corpus.txt"), lora = lora.config(r = 4, alpha = 8, targets = ["q_proj", "v_proj"]),
                      steps = 6, batch_size = 4, seq_len = 32, lr = 1e-2, checkpoint_every = 2, name = name, **kw)
a = train("a", lora_seed = 7, collect = [collect.adapter_weights(every = 2), collect.adapter_grads(every = 3)])
b = train("b", eval_every = 3)
print("CKPT", [(c.step, len(c.eval_loss)) for c in a.checkpoints()])
`
	dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": script})
	out, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "CKPT [(2, 0), (4, 0), (6, 1)]")

	out, stderr, code = lens(t, dir, "show", "a")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, `"lora_seed": 7`)
	require.Contains(t, out, "collected")
	// adapter_weights: steps 2, 4, 6, one record per module (2 layers × 2 targets);
	// adapter_grads: steps 3, 6, one per module and the step record.
	require.Equal(t, []string{"adapter_weights", "3", "2", "6", "4", "0"}, cells(t, out, "adapter_weights"))
	require.Equal(t, []string{"adapter_grads", "2", "3", "6", "5", "0"}, cells(t, out, "adapter_grads"))
	require.Empty(t, cells(t, out, "2")[3], "checkpoint 2 has no eval loss")
	require.Empty(t, cells(t, out, "4")[3], "checkpoint 4 has no eval loss")
	require.Contains(t, cells(t, out, "6")[3], "corpus.txt ")
	out, _, code = lens(t, dir, "show", "b")
	require.Equal(t, 0, code)
	require.NotContains(t, out, "collected")

	out, stderr, code = lens(t, dir, "report", "a", "--json", "--html", "a.html")
	require.Equal(t, 0, code, stderr)
	var doc struct {
		Title    string `json:"title"`
		Sections []struct {
			Title string `json:"title"`
			Items []struct {
				Kind  string     `json:"kind"`
				Title string     `json:"title"`
				Rows  [][]string `json:"rows"`
			} `json:"items"`
		} `json:"sections"`
	}
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	require.Equal(t, "lens technical report: a", doc.Title)
	require.Equal(t, "Summary", doc.Sections[0].Title)
	require.Equal(t, "table", doc.Sections[0].Items[0].Kind)
	require.Equal(t, []string{"status", "done"}, doc.Sections[0].Items[0].Rows[0])
	require.Contains(t, stderr, "wrote a.html")
	_, err := os.Stat(filepath.Join(dir, "a.html"))
	require.NoError(t, err)

	out, stderr, code = lens(t, dir, "report", "a", "b", "--json")
	require.Equal(t, 0, code, stderr)
	require.NoError(t, json.Unmarshal([]byte(out), &doc), out)
	require.Equal(t, "lens comparison of 2 runs", doc.Title)
	var diff []string
	for _, it := range doc.Sections[0].Items {
		if it.Title == "Config fields that differ" {
			for _, r := range it.Rows {
				diff = append(diff, r[0])
			}
		}
	}
	require.Contains(t, diff, "lora_seed")
	require.Contains(t, diff, "train.eval_every")
}
