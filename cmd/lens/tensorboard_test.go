package main

import (
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/tensorboard/tbread"
	"lens/kv"
)

// A script trains with a live tb.writer and exports in-script; then
// `lens export --tensorboard` writes the run again. All three event files
// hold exactly the stored metric points, read back with an independent
// reader.
func TestTensorBoardExport(t *testing.T) {
	dir := workspace(t, map[string]string{
		"corpus.txt": corpus(),
		"a.star": tinyScript + `
w = tb.writer("live")
r = train(name = "tbrun", collect = [collect.adapter_weights(every = 3, tensors = True)], log_to = [w])
d = tb.export(r, "inscript")
print("TB", d["scalars"], d["histograms"], d["texts"], w.file != None)
`,
	})
	scriptOut, stderr, code := lens(t, dir, "run", "a.star")
	require.Equal(t, 0, code, stderr)

	out, stderr, code := lens(t, dir, "export", "tbrun", "--tensorboard", "tb/tbrun")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "tensorboard --logdir tb/tbrun")
	_, stderr, code = lens(t, dir, "export", "tbrun", "--tensorboard", "tb/tbrun")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "already holds event files")
	_, stderr, code = lens(t, dir, "export", "nope", "--tensorboard", "tb/nope")
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "not found")

	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	meta, err := st.FindRun("tbrun")
	require.NoError(t, err)
	want := map[string][]kv.Point{}
	names, err := st.MetricNames(meta.ID)
	require.NoError(t, err)
	for _, n := range names {
		want[n], err = st.ReadMetric(meta.ID, n)
		require.NoError(t, err)
	}
	cps, err := st.Checkpoints(meta.ID)
	require.NoError(t, err)
	require.NoError(t, st.Close())
	require.Contains(t, names, "eval/corpus.txt")

	// The script's tb.export counted every stored point.
	total := 0
	for _, pts := range want {
		total += len(pts)
	}
	require.Regexp(t, fmt.Sprintf(`(?m)^TB %d \d+ 1 True$`, total), scriptOut)

	for _, sub := range []string{"live", "inscript", "tb/tbrun"} {
		t.Run(sub, func(t *testing.T) {
			files, evs, err := tbread.ReadDir(filepath.Join(dir, sub))
			require.NoError(t, err)
			require.Len(t, files, 1)
			got := tbread.Scalars(evs)
			require.Equal(t, names, tbread.Tags(got))
			for n, pts := range want {
				require.Len(t, got[n], len(pts), n)
				for i, p := range pts {
					require.Equal(t, int64(p.Step), got[n][i].Step, n)
					if math.IsNaN(p.Value) {
						require.True(t, math.IsNaN(float64(got[n][i].Value)))
					} else {
						require.Equal(t, float32(p.Value), got[n][i].Value, n)
					}
				}
			}
			hists := tbread.Histograms(evs)
			// 2 steps (3, 6) × 4 modules × A and B collected, in the exports.
			nw := 0
			for tag, hs := range hists {
				if strings.HasPrefix(tag, "weights/") {
					nw += len(hs)
				}
				if strings.HasPrefix(tag, "checkpoint/") {
					require.Len(t, hs, len(cps), tag)
				}
			}
			if sub != "live" {
				require.Equal(t, 16, nw)
			}
			require.Contains(t, hists, "checkpoint/model.layers.0.self_attn.q_proj.lora_A")
		})
	}
}

// Mistakes with tb are errors at the line that makes them.
func TestTensorBoardScriptErrors(t *testing.T) {
	cases := []struct {
		name, script, want string
	}{
		{"writer reused for a second run", `
w = tb.writer("tb")
train(log_to = [w])
train(log_to = [w])
`, `tb.writer("tb") already mirrors run`},
		{"writer on an export's directory", `
r = train()
tb.export(r, "exp")
tb.writer("exp")
`, "exp already holds event files"},
		{"export of an unknown run", `tb.export("no-such-run", "x")`, "not found"},
		{"export of a number", `tb.export(3, "x")`, "for parameter \"run\": want run or string, got int"},
		{"log_to something else", `train(log_to = ["tb"])`, "want tb.writer(...)"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			dir := workspace(t, map[string]string{"corpus.txt": corpus(), "a.star": tinyScript + c.script})
			_, stderr, code := lens(t, dir, "run", "a.star")
			require.Equal(t, 1, code, stderr)
			require.Contains(t, stderr, c.want)
		})
	}
}
