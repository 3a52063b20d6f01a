// Package tensorboard writes TensorBoard event files: scalars, histograms
// and text, framed as TFRecords with hand-encoded Event protobufs, so that
// lens needs no TensorFlow or protobuf runtime. It exports stored runs
// (ExportRun) and mirrors a training run live (Sink).
//
// It writes only; it does not read event files back, and it writes the
// legacy simple_value and histo summaries, which TensorBoard converts to
// its scalar and histogram plugins on load.
package tensorboard

import (
	"bufio"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// FilePrefix starts the name of every event file; TensorBoard finds files
// by it.
const FilePrefix = "events.out.tfevents."

// fileVersion is the first record of every event file.
const fileVersion = "brain.Event:2"

// fileSeq tells apart files this process creates in the same second.
var fileSeq atomic.Int64

// Writer appends events to one event file. Writes are buffered; Flush
// makes everything written so far visible to a TensorBoard tailing the
// file. A Writer is safe for concurrent use. After a failed write every
// later call returns the same error.
type Writer struct {
	mu     sync.Mutex
	f      *os.File
	buf    *bufio.Writer
	path   string
	log    *slog.Logger
	err    error
	closed bool
	rec    []byte // reused record buffer

	scalars, histograms, texts int
}

// Create makes dir if needed and starts a new event file in it, named
// events.out.tfevents.<unix seconds>.<hostname>.<pid>.<n> like
// TensorFlow's. Logs (values left out of histograms) go to slog.Default.
func Create(dir string) (*Writer, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, fmt.Errorf("tensorboard: create %s: %w", dir, err)
	}
	host, err := os.Hostname()
	if err != nil || host == "" {
		host = "localhost"
	}
	host = strings.ReplaceAll(host, string(filepath.Separator), "_")
	now := time.Now()
	var f *os.File
	var path string
	for range 100 {
		path = filepath.Join(dir, fmt.Sprintf("%s%d.%s.%d.%d", FilePrefix, now.Unix(), host, os.Getpid(), fileSeq.Add(1)))
		f, err = os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o644)
		if !errors.Is(err, os.ErrExist) {
			break
		}
	}
	if err != nil {
		return nil, fmt.Errorf("tensorboard: create event file in %s: %w", dir, err)
	}
	w := &Writer{f: f, buf: bufio.NewWriterSize(f, 64<<10), path: path, log: slog.Default()}
	b := appendDouble(nil, eventWallTime, wallTime(now))
	b = appendString(b, eventFileVersion, fileVersion)
	w.mu.Lock()
	w.write(b)
	w.flushLocked()
	err = w.err
	w.mu.Unlock()
	if err != nil {
		f.Close()
		return nil, err
	}
	return w, nil
}

// Path is the event file's path.
func (w *Writer) Path() string { return w.path }

// Counts says how many scalar, histogram and text values were written.
func (w *Writer) Counts() (scalars, histograms, texts int) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.scalars, w.histograms, w.texts
}

// wallTime is seconds since the epoch; whole seconds and the fraction are
// converted apart so that a time on a round fraction stays exact.
func wallTime(t time.Time) float64 { return float64(t.Unix()) + float64(t.Nanosecond())/1e9 }

// write frames one Event; the caller holds mu.
func (w *Writer) write(ev []byte) {
	if w.err != nil {
		return
	}
	if w.closed {
		w.err = fmt.Errorf("tensorboard: %s: write after Close", w.path)
		return
	}
	w.rec = appendRecord(w.rec[:0], ev)
	if _, err := w.buf.Write(w.rec); err != nil {
		w.err = fmt.Errorf("tensorboard: write %s: %w", w.path, err)
	}
}

func (w *Writer) flushLocked() {
	if w.err != nil || w.closed {
		return
	}
	if err := w.buf.Flush(); err != nil {
		w.err = fmt.Errorf("tensorboard: write %s: %w", w.path, err)
	}
}

func checkTag(tag string) error {
	if tag == "" {
		return errors.New("tensorboard: empty tag")
	}
	return nil
}

// Scalar writes value v of tag at step. NaN and ±Inf are written as they
// are (TensorBoard shows them); the value is stored as float32, as
// TensorBoard's simple_value is.
func (w *Writer) Scalar(tag string, step int, v float64, wall time.Time) error {
	return w.Scalars(step, map[string]float64{tag: v}, wall)
}

// Scalars writes several scalars of one step as one event, in tag order.
func (w *Writer) Scalars(step int, values map[string]float64, wall time.Time) error {
	tags := make([]string, 0, len(values))
	for t := range values {
		if err := checkTag(t); err != nil {
			return err
		}
		tags = append(tags, t)
	}
	if len(tags) == 0 {
		return nil
	}
	sort.Strings(tags)
	var sum []byte
	for _, t := range tags {
		sum = appendBytesField(sum, summaryValue, scalarValue(t, values[t]))
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(event(wallTime(wall), int64(step), sum))
	if w.err == nil {
		w.scalars += len(tags)
	}
	return w.err
}

// Histogram writes the distribution of values as tag at step, over
// TensorFlow's default exponential buckets. NaN and infinite values are
// left out, with a log line saying how many; a histogram with no finite
// value is not written at all.
func (w *Writer) Histogram(tag string, step int, values []float32, wall time.Time) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	h, skipped := newHistogram(values)
	if skipped > 0 {
		w.log.Warn("tensorboard: histogram leaves out non-finite values", "tag", tag, "step", step, "left_out", skipped, "of", len(values))
	}
	if h.num == 0 {
		return nil
	}
	sum := appendBytesField(nil, summaryValue, histoValue(tag, h))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(event(wallTime(wall), int64(step), sum))
	if w.err == nil {
		w.histograms++
	}
	return w.err
}

// Text writes text (rendered as Markdown by TensorBoard's text plugin) as
// tag at step.
func (w *Writer) Text(tag string, step int, text string, wall time.Time) error {
	if err := checkTag(tag); err != nil {
		return err
	}
	sum := appendBytesField(nil, summaryValue, textValue(tag, text))
	w.mu.Lock()
	defer w.mu.Unlock()
	w.write(event(wallTime(wall), int64(step), sum))
	if w.err == nil {
		w.texts++
	}
	return w.err
}

// Flush writes buffered events to the file.
func (w *Writer) Flush() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.flushLocked()
	return w.err
}

// Close flushes and closes the file. Closing twice is a no-op.
func (w *Writer) Close() error {
	w.mu.Lock()
	defer w.mu.Unlock()
	if w.closed {
		return w.err
	}
	w.flushLocked()
	w.closed = true
	if err := w.f.Close(); err != nil && w.err == nil {
		w.err = fmt.Errorf("tensorboard: close %s: %w", w.path, err)
	}
	return w.err
}

// EventFiles lists the event files in dir (none if dir does not exist).
func EventFiles(dir string) ([]string, error) {
	ents, err := os.ReadDir(dir)
	if errors.Is(err, os.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tensorboard: read %s: %w", dir, err)
	}
	var out []string
	for _, e := range ents {
		if !e.IsDir() && strings.HasPrefix(e.Name(), FilePrefix) {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

// CheckFresh returns an error if dir already holds event files: TensorBoard
// shows every file of a directory as one run, so a second run (or a second
// export) written beside the first would interleave with it.
func CheckFresh(dir string) error {
	files, err := EventFiles(dir)
	if err != nil {
		return err
	}
	if len(files) > 0 {
		return fmt.Errorf("tensorboard: %s already holds event files (%s); TensorBoard would show them as one run, so give each run its own directory", dir, filepath.Base(files[0]))
	}
	return nil
}
