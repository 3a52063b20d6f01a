package tensorboard

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"lens/kv"
)

// Summary says what ExportRun wrote.
type Summary struct {
	File       string `json:"file"`
	Scalars    int    `json:"scalars"`
	Histograms int    `json:"histograms"`
	Texts      int    `json:"texts"`
}

// Collectors whose stored tensors become histograms, and the tag prefix of
// each. Their JSON records (norms, spectra) are not exported.
var collectorTags = []struct{ collector, prefix string }{
	{"adapter_weights", "weights/"},
	{"adapter_grads", "grads/"},
}

// optimizerPrefixes name checkpoint tensors that are optimizer state
// (AdamW moments), not weights; engine/runs saves them under these names.
var optimizerPrefixes = []string{"adam_m/", "adam_v/"}

// ExportRun writes run runID of st as a new event file in dir: every
// metric series as scalars (tag = metric name, "eval/x" stays "eval/x"),
// the tensors stored by the adapter_weights and adapter_grads collectors
// as histograms "weights/<name>" and "grads/<name>", the weights of every
// kept checkpoint as "checkpoint/<name>" (optimizer state left out), and
// the run's config as text "config" at step 0.
//
// dir must hold no event files yet (see CheckFresh): exporting a run twice
// into one directory would show every point twice.
//
// The store keeps no time per metric point, so wall times are spread
// evenly by step between the run's creation and its last update;
// checkpoint histograms carry the checkpoint's own time.
func ExportRun(st *kv.Store, runID, dir string) (Summary, error) {
	meta, err := st.GetRun(runID)
	if err != nil {
		if errors.Is(err, kv.ErrNotFound) {
			return Summary{}, fmt.Errorf("tensorboard export: run %q is not in the store: %w", runID, err)
		}
		return Summary{}, fmt.Errorf("tensorboard export: run %q: %w", runID, err)
	}
	if err := CheckFresh(dir); err != nil {
		return Summary{}, fmt.Errorf("tensorboard export of run %s: %w", runID, err)
	}
	w, err := Create(dir)
	if err != nil {
		return Summary{}, fmt.Errorf("tensorboard export of run %s: %w", runID, err)
	}
	err = exportRun(st, meta, w)
	if cerr := w.Close(); err == nil {
		err = cerr
	}
	s := Summary{File: w.Path()}
	s.Scalars, s.Histograms, s.Texts = w.Counts()
	if err != nil {
		return s, fmt.Errorf("tensorboard export of run %s: %w", runID, err)
	}
	return s, nil
}

func exportRun(st *kv.Store, meta kv.RunMeta, w *Writer) error {
	wallAt := func(step int) time.Time {
		if meta.Steps <= 0 || !meta.Updated.After(meta.Created) {
			return meta.Created
		}
		span := meta.Updated.Sub(meta.Created)
		return meta.Created.Add(time.Duration(float64(span) * min(float64(step)/float64(meta.Steps), 1)))
	}
	if text := configText(meta.Config); text != "" {
		if err := w.Text("config", 0, text, meta.Created); err != nil {
			return err
		}
	}
	names, err := st.MetricNames(meta.ID)
	if err != nil {
		return err
	}
	for _, name := range names {
		pts, err := st.ReadMetric(meta.ID, name)
		if err != nil {
			return err
		}
		for _, p := range pts {
			if err := w.Scalar(name, p.Step, p.Value, wallAt(p.Step)); err != nil {
				return err
			}
		}
	}
	for _, c := range collectorTags {
		items, err := st.ReadCollected(meta.ID, c.collector)
		if err != nil {
			return err
		}
		for _, it := range items {
			if it.Kind != kv.KindTensor || it.Tensor == nil {
				continue
			}
			if err := w.Histogram(c.prefix+it.Name, it.Step, it.Tensor.Data, wallAt(it.Step)); err != nil {
				return err
			}
		}
	}
	cps, err := st.Checkpoints(meta.ID)
	if err != nil {
		return err
	}
	for _, cp := range cps {
		cm, ts, err := st.LoadCheckpoint(meta.ID, cp.Step)
		if err != nil {
			return err
		}
		for _, t := range Weights(ts) {
			if err := w.Histogram("checkpoint/"+t.Name, cm.Step, t.Data, cm.Time); err != nil {
				return err
			}
		}
	}
	return nil
}

// Weights returns the tensors of a checkpoint that are weights, leaving
// out optimizer state.
func Weights(ts []kv.Tensor) []kv.Tensor {
	out := make([]kv.Tensor, 0, len(ts))
next:
	for _, t := range ts {
		for _, p := range optimizerPrefixes {
			if strings.HasPrefix(t.Name, p) {
				continue next
			}
		}
		out = append(out, t)
	}
	return out
}

// configText renders a run's JSON config as a Markdown code block for the
// text plugin ("" when there is none).
func configText(cfg json.RawMessage) string {
	if len(bytes.TrimSpace(cfg)) == 0 {
		return ""
	}
	var buf bytes.Buffer
	if err := json.Indent(&buf, cfg, "", "  "); err != nil {
		buf.Reset()
		buf.Write(cfg)
	}
	return "```json\n" + buf.String() + "\n```"
}
