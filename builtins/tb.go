package builtins

import (
	"fmt"

	"go.starlark.net/starlark"

	"lens/engine/runs"
	"lens/engine/tensorboard"
)

func tbExport(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	env, st, err := storeOf(t)
	if err != nil {
		return nil, err
	}
	var run starlark.Value
	var dir string
	if err := unpack(fn, args, kwargs, &run, &dir); err != nil {
		return nil, err
	}
	var id string
	switch r := run.(type) {
	case *Run:
		id = r.meta.ID
	case starlark.String:
		m, err := st.FindRun(string(r))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", fn.Name(), err)
		}
		id = m.ID
	default:
		return nil, fmt.Errorf("%s: for parameter \"run\": want run or string, got %s", fn.Name(), run.Type())
	}
	s, err := tensorboard.ExportRun(st, id, dir)
	if err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	env.printf("tb.export: run %s: %d scalars, %d histograms, %d texts to %s\n", id, s.Scalars, s.Histograms, s.Texts, s.File)
	d := starlark.NewDict(4)
	for k, v := range map[string]starlark.Value{"file": starlark.String(s.File), "scalars": starlark.MakeInt(s.Scalars),
		"histograms": starlark.MakeInt(s.Histograms), "texts": starlark.MakeInt(s.Texts)} {
		_ = d.SetKey(starlark.String(k), v)
	}
	return d, nil
}

func tbWriter(t *starlark.Thread, fn *starlark.Builtin, args starlark.Tuple, kwargs []starlark.Tuple) (starlark.Value, error) {
	var dir string
	if err := unpack(fn, args, kwargs, &dir); err != nil {
		return nil, err
	}
	// Refuse a directory of another run here, at the line that names it,
	// rather than as a warning once training starts.
	if err := tensorboard.CheckSinkDir(dir, ""); err != nil {
		return nil, fmt.Errorf("%s: %w", fn.Name(), err)
	}
	return &tbWriterValue{dir: dir}, nil
}

// tbWriterValue is a tb.writer: a TensorBoard sink for one run.
type tbWriterValue struct {
	dir  string
	sink *tensorboard.Sink // the last one handed to lens.train
}

var _ SinkValue = (*tbWriterValue)(nil)

func (w *tbWriterValue) String() string        { return fmt.Sprintf("tb.writer(%q)", w.dir) }
func (w *tbWriterValue) Type() string          { return "tb.writer" }
func (w *tbWriterValue) Freeze()               {}
func (w *tbWriterValue) Truth() starlark.Bool  { return true }
func (w *tbWriterValue) Hash() (uint32, error) { return starlark.String(w.dir).Hash() }
func (w *tbWriterValue) AttrNames() []string   { return []string{"dir", "file"} }
func (w *tbWriterValue) Attr(name string) (starlark.Value, error) {
	switch name {
	case "dir":
		return starlark.String(w.dir), nil
	case "file":
		if w.sink == nil || w.sink.File() == "" {
			return starlark.None, nil
		}
		return starlark.String(w.sink.File()), nil
	}
	return nil, nil
}

// Sink returns a fresh sink for the next run, unless this writer already
// mirrored one: TensorBoard shows a directory as one run.
func (w *tbWriterValue) Sink() (runs.Sink, error) {
	if w.sink != nil && w.sink.RunID() != "" {
		return nil, fmt.Errorf("%s already mirrors run %s; make a tb.writer with its own directory for each run", w, w.sink.RunID())
	}
	if err := tensorboard.CheckSinkDir(w.dir, ""); err != nil {
		return nil, err
	}
	w.sink = tensorboard.NewSink(w.dir)
	return w.sink, nil
}
