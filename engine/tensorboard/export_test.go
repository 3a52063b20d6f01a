package tensorboard_test

import (
	"context"
	"math"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/collect"
	"lens/engine/lora"
	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/tensorboard"
	"lens/engine/tensorboard/tbread"
	"lens/engine/train"
	"lens/kv"
)

var _ runs.TensorSink = (*tensorboard.Sink)(nil)

// trainRun trains a tiny LoRA run for a few steps into a temp store, with
// the adapter tensors collected and the given sinks attached.
func trainRun(t *testing.T, sinks ...runs.Sink) (*kv.Store, kv.RunMeta) {
	t.Helper()
	st, err := kv.Open(filepath.Join(t.TempDir(), "store"), kv.Options{})
	require.NoError(t, err)
	t.Cleanup(func() { st.Close() })
	cfg := model.Tiny()
	cfg.HiddenSize, cfg.IntermediateSize, cfg.NumHiddenLayers = 32, 64, 2
	base, err := model.New(cfg, 5)
	require.NoError(t, err)
	ref, err := runs.StoreBase(st, base)
	require.NoError(t, err)
	spec := runs.Spec{Name: "tb", Base: ref, LoRA: &lora.Config{Rank: 4, Alpha: 8, Targets: []string{"q_proj", "v_proj"}},
		Train: train.Config{Steps: 6, BatchSize: 2, SeqLen: 16, LR: 1e-2, Seed: 3, EvalEvery: 3, EvalBatches: 2},
		Data:  runs.DataRef{Source: "opticks"}, CheckpointEvery: 2,
		Collect: []collect.Spec{{Name: "adapter_weights", Every: 3, Options: map[string]any{"tensors": true}}, {Name: "adapter_grads", Every: 2}}}
	job, err := runs.Prepare(spec, base)
	require.NoError(t, err)
	meta, err := job.Run(context.Background(), st, runs.Options{Sinks: sinks})
	require.NoError(t, err)
	require.Equal(t, kv.StatusDone, meta.Status)
	return st, meta
}

func sameValue(t *testing.T, want float64, got float32, msg string) {
	t.Helper()
	if math.IsNaN(want) {
		require.True(t, math.IsNaN(float64(got)), msg)
		return
	}
	require.Equal(t, float32(want), got, msg)
}

func TestExportAndLiveSinkOfARealRun(t *testing.T) {
	liveDir := filepath.Join(t.TempDir(), "live")
	sink := tensorboard.NewSink(liveDir)
	st, meta := trainRun(t, sink)
	require.FileExists(t, sink.File())

	// adapter_grads stores summaries, not tensors; a tensor stored under it
	// (as a custom setup might) exports as grads/<name>.
	grad := kv.Tensor{Name: "layers.0.q_proj.lora_B.grad", Shape: []int{2, 2}, Data: []float32{0.5, -1, 2, 0}}
	require.NoError(t, st.PutCollectedTensor(meta.ID, "adapter_grads", 4, grad))

	exportDir := filepath.Join(t.TempDir(), "export")
	sum, err := tensorboard.ExportRun(st, meta.ID, exportDir)
	require.NoError(t, err)
	files, evs, err := tbread.ReadDir(exportDir)
	require.NoError(t, err)
	require.Equal(t, []string{sum.File}, files)
	require.Equal(t, "brain.Event:2", evs[0].FileVersion)

	// Scalars: exactly the stored metric points, tag = metric name.
	scalars := tbread.Scalars(evs)
	names, err := st.MetricNames(meta.ID)
	require.NoError(t, err)
	require.Contains(t, names, "eval/opticks")
	require.Equal(t, names, tbread.Tags(scalars))
	total := 0
	for _, name := range names {
		pts, err := st.ReadMetric(meta.ID, name)
		require.NoError(t, err)
		got := scalars[name]
		require.Len(t, got, len(pts), name)
		for i, p := range pts {
			require.Equal(t, int64(p.Step), got[i].Step, name)
			sameValue(t, p.Value, got[i].Value, name)
		}
		total += len(pts)
	}
	require.Equal(t, total, sum.Scalars)

	// Histograms: collected adapter tensors and checkpoint weights, no
	// optimizer state.
	hists := tbread.Histograms(evs)
	nh := 0
	for _, hs := range hists {
		nh += len(hs)
	}
	require.Equal(t, sum.Histograms, nh)
	collected, err := st.ReadCollected(meta.ID, "adapter_weights")
	require.NoError(t, err)
	nw := 0
	for _, c := range collected {
		if c.Kind != kv.KindTensor {
			continue
		}
		nw++
		hs := hists["weights/"+c.Name]
		require.NotEmpty(t, hs, c.Name)
		found := false
		for _, h := range hs {
			if h.Step == int64(c.Step) {
				found = true
				require.Equal(t, float64(len(c.Tensor.Data)), h.Histo.Num)
				s := 0.0
				for _, v := range c.Tensor.Data {
					s += float64(v)
				}
				require.InDelta(t, s, h.Histo.Sum, 1e-9)
			}
		}
		require.True(t, found, "weights/%s at step %d", c.Name, c.Step)
	}
	require.Equal(t, 2*2*2*2, nw, "steps 3 and 6 × 4 modules × A and B")
	gh := hists["grads/"+grad.Name]
	require.Len(t, gh, 1)
	require.Equal(t, int64(4), gh[0].Step)
	require.Equal(t, []float64{4, 1.5, -1, 2}, []float64{gh[0].Histo.Num, gh[0].Histo.Sum, gh[0].Histo.Min, gh[0].Histo.Max})

	cps, err := st.Checkpoints(meta.ID)
	require.NoError(t, err)
	require.Len(t, cps, 3) // steps 2, 4, 6
	for tag, hs := range hists {
		require.NotContains(t, tag, "adam_")
		if strings.HasPrefix(tag, "checkpoint/") {
			require.Len(t, hs, len(cps), tag)
		}
	}
	_, ts, err := st.LoadCheckpoint(meta.ID, 4)
	require.NoError(t, err)
	nweights := 0
	for _, x := range ts {
		if strings.HasPrefix(x.Name, "adam_") {
			continue
		}
		nweights++
		hs := hists["checkpoint/"+x.Name]
		require.Equal(t, int64(4), hs[1].Step)
		require.Equal(t, float64(len(x.Data)), hs[1].Histo.Num)
	}
	require.Equal(t, 8, nweights)
	require.Equal(t, 8*len(cps)+nw+1, sum.Histograms)

	// Config as text at step 0.
	require.Equal(t, 1, sum.Texts)
	var config string
	for _, e := range evs {
		for _, v := range e.Values {
			if v.Tag == "config" {
				require.Equal(t, "text", v.Plugin)
				config = v.Strings[0]
			}
		}
	}
	require.Contains(t, config, `"r": 4`)

	// The live sink saw the same scalars, steps and values, and the same
	// checkpoint histograms.
	_, live, err := tbread.ReadDir(liveDir)
	require.NoError(t, err)
	liveScalars := tbread.Scalars(live)
	require.Equal(t, tbread.Tags(scalars), tbread.Tags(liveScalars))
	for tag, pts := range scalars {
		lp := liveScalars[tag]
		require.Len(t, lp, len(pts), tag)
		for i := range pts {
			require.Equal(t, pts[i].Step, lp[i].Step, tag)
			if math.IsNaN(float64(pts[i].Value)) {
				require.True(t, math.IsNaN(float64(lp[i].Value)))
			} else {
				require.Equal(t, pts[i].Value, lp[i].Value, tag)
			}
		}
	}
	liveHists := tbread.Histograms(live)
	nckpt := 0
	for tag, hs := range liveHists {
		require.True(t, strings.HasPrefix(tag, "checkpoint/"), tag)
		require.Equal(t, hists[tag], hs, tag)
		nckpt++
	}
	require.Equal(t, 8, nckpt)
	var liveConfig string
	for _, e := range live {
		for _, v := range e.Values {
			if v.Tag == "config" {
				liveConfig = v.Strings[0]
			}
		}
	}
	require.Equal(t, config, liveConfig)

	// A second export into the same directory is refused; an unknown run
	// is a clear error.
	_, err = tensorboard.ExportRun(st, meta.ID, exportDir)
	require.ErrorContains(t, err, "already holds event files")
	_, err = tensorboard.ExportRun(st, "no-such-run", t.TempDir())
	require.ErrorContains(t, err, `run "no-such-run" is not in the store`)
}

// A sink pointed at a directory that already holds a run is refused at
// Start; the run trains on and records why.
func TestSinkRefusesAUsedDirectory(t *testing.T) {
	dir := t.TempDir()
	w, err := tensorboard.Create(dir)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	st, meta := trainRun(t, tensorboard.NewSink(dir))
	evs, err := st.Events(meta.ID)
	require.NoError(t, err)
	var msgs []string
	for _, e := range evs {
		if e.Kind == "sink_error" {
			msgs = append(msgs, e.Message)
		}
	}
	require.Len(t, msgs, 1)
	require.Contains(t, msgs[0], "already holds event files")
	files, err := tensorboard.EventFiles(dir)
	require.NoError(t, err)
	require.Len(t, files, 1, "nothing was added")

	s := tensorboard.NewSink(t.TempDir())
	require.ErrorContains(t, s.Log(1, map[string]float64{"loss": 1}), "not started")
}

func TestSinkDirectoryPerRun(t *testing.T) {
	dir := t.TempDir()
	first := tensorboard.NewSink(dir)
	require.NoError(t, tensorboard.CheckSinkDir(dir, "r1"), "an empty directory suits any run")
	require.NoError(t, first.Start(kv.RunMeta{ID: "r1"}))
	require.Equal(t, "r1", first.RunID())
	require.ErrorContains(t, first.Start(kv.RunMeta{ID: "r1"}), "already serves run r1")
	require.NoError(t, first.Log(1, map[string]float64{"loss": 3}))
	require.NoError(t, first.Finish(kv.RunMeta{ID: "r1"}))

	// The same run, resumed: a second file beside the first.
	again := tensorboard.NewSink(dir)
	require.NoError(t, tensorboard.CheckSinkDir(dir, ""))
	require.NoError(t, again.Start(kv.RunMeta{ID: "r1"}))
	require.NoError(t, again.Log(2, map[string]float64{"loss": 2}))
	require.NoError(t, again.Finish(kv.RunMeta{ID: "r1"}))
	files, evs, err := tbread.ReadDir(dir)
	require.NoError(t, err)
	require.Len(t, files, 2)
	loss := tbread.Scalars(evs)["loss"]
	require.Equal(t, []int64{1, 2}, []int64{loss[0].Step, loss[1].Step})

	// Another run is refused, and so is a directory of an export.
	require.ErrorContains(t, tensorboard.NewSink(dir).Start(kv.RunMeta{ID: "r2"}), "holds the event files of run r1")
	exported := t.TempDir()
	w, err := tensorboard.Create(exported)
	require.NoError(t, err)
	require.NoError(t, w.Close())
	require.ErrorContains(t, tensorboard.CheckSinkDir(exported, ""), "already holds event files")
}
