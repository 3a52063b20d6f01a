package tensorboard

import (
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"time"

	"lens/kv"
)

// DefaultFlushEvery is how often a Sink makes logged scalars visible while
// a run trains.
const DefaultFlushEvery = 2 * time.Second

// Sink mirrors one training run into an event file as it trains: the
// run's config as text at Start, every logged metric as a scalar, and the
// tensors the run hands over (checkpoint weights) as histograms tagged
// "<kind>/<name>", the tags ExportRun uses. It implements engine/runs'
// Sink and TensorSink.
//
// A Sink serves one run and writes straight into its directory, which must
// hold no event files when the run starts, or only those of the same run
// (a resumed run continues in a new file, which TensorBoard merges); see
// CheckSinkDir.
type Sink struct {
	dir string
	// FlushEvery bounds how long a logged scalar may sit in the buffer;
	// Finish and Tensors flush at once.
	FlushEvery time.Duration

	mu        sync.Mutex
	w         *Writer
	runID     string
	lastFlush time.Time
}

// NewSink returns a sink writing into dir; nothing is created before Start.
func NewSink(dir string) *Sink { return &Sink{dir: dir, FlushEvery: DefaultFlushEvery} }

// Name says which integration this is.
func (s *Sink) Name() string { return "tensorboard" }

// Dir is the directory the sink writes into.
func (s *Sink) Dir() string { return s.dir }

// RunID is the run the sink serves, "" before Start.
func (s *Sink) RunID() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.runID
}

// File is the event file's path, "" before Start.
func (s *Sink) File() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w == nil {
		return ""
	}
	return s.w.Path()
}

// Start creates the event file and writes the run's config.
func (s *Sink) Start(meta kv.RunMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.w != nil {
		return fmt.Errorf("tensorboard sink %s already serves run %s; use one sink (and one directory) per run", s.dir, s.runID)
	}
	if err := CheckSinkDir(s.dir, meta.ID); err != nil {
		return err
	}
	w, err := Create(s.dir)
	if err != nil {
		return err
	}
	s.w, s.runID = w, meta.ID
	if err := os.WriteFile(filepath.Join(s.dir, runMarker), []byte(meta.ID+"\n"), 0o644); err != nil {
		return fmt.Errorf("tensorboard sink: %w", err)
	}
	if text := configText(meta.Config); text != "" {
		if err := w.Text("config", 0, text, time.Now()); err != nil {
			return err
		}
	}
	s.lastFlush = time.Now()
	return w.Flush()
}

func (s *Sink) writer() (*Writer, error) {
	if s.w == nil {
		return nil, fmt.Errorf("tensorboard sink %s: not started", s.dir)
	}
	return s.w, nil
}

// Log writes the metrics of step as scalars, flushing when FlushEvery has
// passed since the last flush.
func (s *Sink) Log(step int, metrics map[string]float64) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.writer()
	if err != nil {
		return err
	}
	now := time.Now()
	if err := w.Scalars(step, metrics, now); err != nil {
		return err
	}
	if now.Sub(s.lastFlush) >= s.FlushEvery {
		s.lastFlush = now
		return w.Flush()
	}
	return nil
}

// Tensors writes each tensor's distribution as "<kind>/<name>" at step and
// flushes.
func (s *Sink) Tensors(step int, kind string, tensors []kv.Tensor) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.writer()
	if err != nil {
		return err
	}
	now := time.Now()
	for _, t := range tensors {
		if err := w.Histogram(kind+"/"+t.Name, step, t.Data, now); err != nil {
			return err
		}
	}
	s.lastFlush = now
	return w.Flush()
}

// Finish flushes and closes the event file.
func (s *Sink) Finish(meta kv.RunMeta) error {
	s.mu.Lock()
	defer s.mu.Unlock()
	w, err := s.writer()
	if err != nil {
		return err
	}
	return w.Close()
}

// runMarker names the file in which a Sink records which run its
// directory holds.
const runMarker = ".lens-run"

// CheckSinkDir says whether a Sink may mirror run runID into dir: yes if
// dir holds no event files, or only files a Sink wrote for the same run.
// With runID "" (not known yet) any directory a Sink wrote passes, so
// that a resumed run can be pointed at its old directory.
func CheckSinkDir(dir, runID string) error {
	files, err := EventFiles(dir)
	if err != nil || len(files) == 0 {
		return err
	}
	b, err := os.ReadFile(filepath.Join(dir, runMarker))
	if errors.Is(err, os.ErrNotExist) {
		return CheckFresh(dir)
	}
	if err != nil {
		return fmt.Errorf("tensorboard: %w", err)
	}
	owner := strings.TrimSpace(string(b))
	if runID == "" || owner == runID {
		return nil
	}
	return fmt.Errorf("tensorboard: %s holds the event files of run %s; TensorBoard would show run %s mixed into it, so give each run its own directory", dir, owner, runID)
}
