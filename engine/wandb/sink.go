package wandb

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"path/filepath"
	"sync"
	"time"

	"lens/engine/runs"
	"lens/kv"
)

// Sink mirrors a training run to W&B as it trains (runs.Sink). Metrics of
// one step are merged into one history line, emitted when a later step
// begins or at Finish, so eval metrics that arrive after the train metrics
// of their step land in the same line.
//
// Offline, lines go to <Dir>/<run id>/ for Sync. Online, they also go
// there (so that whatever the server did not take can be synced later)
// and a background sender streams them in chunks. When the sender gives up
// after its retries, the next call returns an error saying where the
// folder is; runs then stops calling the Sink.
type Sink struct {
	o    Options
	log  *slog.Logger
	mode string
	info runInfo
	meta kv.RunMeta
	dir  *folder // nil when online without Dir

	start     time.Time
	cur       int // step being gathered
	curTime   time.Time
	curVals   map[string]float64
	skipTo    int // steps up to this one were recorded before a resume
	warned    bool
	sum       summary
	lastFlush time.Time
	dead      bool // gave up; runs stops calling after the error

	// online only
	t       *target
	ctx     context.Context
	cancel  context.CancelFunc
	mu      sync.Mutex
	queue   []line // not yet acknowledged; queue[0] is server line qOff
	qOff    int
	sendErr error
	wake    chan struct{}
	stop    chan struct{}
	stopped chan struct{}
}

var _ runs.Sink = (*Sink)(nil)

// NewSink returns a Sink for opts: Mode online (needs Project; Dir is
// where it falls back to) or offline (needs Dir).
func NewSink(opts Options) (*Sink, error) {
	o := opts.withDefaults()
	switch o.Mode {
	case ModeOnline:
		if o.Project == "" {
			return nil, fmt.Errorf("wandb: online mode needs a project")
		}
	case ModeOffline:
		if o.Dir == "" {
			return nil, fmt.Errorf("wandb: offline mode needs a folder")
		}
	default:
		return nil, fmt.Errorf("wandb: mode %q: want %q or %q", o.Mode, ModeOnline, ModeOffline)
	}
	return &Sink{o: o, log: o.Logger, mode: o.Mode, cur: -1, skipTo: -1, sum: summary{}}, nil
}

// Name is "wandb".
func (s *Sink) Name() string { return "wandb" }

// Mode is where the Sink writes now: online, or offline (chosen, or
// because the API key is missing).
func (s *Sink) Mode() string { return s.mode }

// Dir is the run's offline folder, "" if none.
func (s *Sink) Dir() string {
	if s.dir == nil {
		return ""
	}
	return s.dir.dir
}

// Start opens the run's offline folder and, online, creates or resumes
// the W&B run. A resumed lens run goes on after the last step the folder
// or the server has.
func (s *Sink) Start(meta kv.RunMeta) error {
	info, err := infoOf(meta)
	if err != nil {
		return err
	}
	s.info, s.meta = info, meta
	s.start = meta.Created
	if s.start.IsZero() {
		s.start = time.Now()
	}
	if s.mode == ModeOnline && s.o.APIKey == "" {
		if s.o.Dir == "" {
			return fmt.Errorf("%s is not set and there is no offline folder to log to", EnvAPIKey)
		}
		s.mode = ModeOffline
		s.log.Warn(fmt.Sprintf("wandb: %s is not set; logging run %s offline to %s (upload it later with `lens wandb sync`)",
			EnvAPIKey, meta.ID, filepath.Join(s.o.Dir, meta.ID)))
	}
	if s.o.Dir != "" {
		if s.dir, err = openFolder(s.o.Dir, info, s.o.Project, s.o.Entity); err != nil {
			return err
		}
		s.skipTo = s.dir.lastStep()
	}
	if s.mode == ModeOffline {
		return nil
	}
	s.ctx, s.cancel = context.WithCancel(context.Background())
	t, h, err := connect(s.ctx, newClient(s.o), s.o, s.o.Project, s.o.Entity, info)
	if err != nil {
		s.cancel()
		return s.gaveUp(err)
	}
	s.t = t
	s.skipTo = max(s.skipTo, h.LastStep)
	s.qOff = h.Lines
	if s.dir != nil {
		k, gap := resumePoint(s.dir.lines, s.dir.run.HistoryOffset, h)
		if gap != nil || h.Lines > s.dir.run.HistoryOffset+len(s.dir.lines) {
			// The folder cannot continue the server's history: start it
			// again where the server is.
			if err := s.dir.restart(h.Lines); err != nil {
				s.cancel()
				return err
			}
		} else {
			s.queue = append(s.queue, s.dir.lines[k:]...)
		}
		s.dir.run.Entity = t.entity
		if err := s.dir.writeRun(); err != nil {
			s.cancel()
			return err
		}
	}
	s.wake = make(chan struct{}, 1)
	s.stop = make(chan struct{})
	s.stopped = make(chan struct{})
	go s.sender()
	s.log.Info("wandb: logging run", "run", meta.ID, "url", t.url())
	return nil
}

// Log gathers the metrics of step; a line goes out when a later step
// begins.
func (s *Sink) Log(step int, metrics map[string]float64) error {
	if s.dead {
		return nil
	}
	if err := s.failed(); err != nil {
		return err
	}
	if step <= s.skipTo {
		return nil // recorded before the run was resumed
	}
	if s.curVals != nil && step < s.cur {
		if !s.warned {
			s.warned = true
			s.log.Warn("wandb: metrics for a step whose line has gone are dropped", "run", s.meta.ID, "step", step, "current", s.cur)
		}
		return nil
	}
	if s.curVals != nil && step > s.cur {
		if err := s.emit(false); err != nil {
			return err
		}
	}
	if s.curVals == nil {
		s.cur, s.curTime, s.curVals = step, time.Now(), map[string]float64{}
	}
	maps.Copy(s.curVals, metrics)
	return nil
}

// emit writes the line of the step being gathered.
func (s *Sink) emit(final bool) error {
	if s.curVals == nil {
		return nil
	}
	runtime := s.curTime.Sub(s.start).Seconds()
	l := line{step: s.cur, text: formatLine(s.cur, s.curVals, runtime, s.curTime)}
	s.sum.add(s.cur, s.curVals, runtime)
	s.curVals = nil
	if s.dir != nil {
		s.dir.append(l)
		// fsync in batches: the store is the record, the folder a mirror.
		if final || len(s.dir.pending) > 64<<10 || time.Since(s.lastFlush) > time.Second {
			s.lastFlush = time.Now()
			if err := s.dir.flush(); err != nil {
				return err
			}
		}
	}
	if s.mode == ModeOnline {
		s.mu.Lock()
		s.queue = append(s.queue, l)
		full := len(s.queue) >= s.o.ChunkLines
		s.mu.Unlock()
		if full {
			select {
			case s.wake <- struct{}{}:
			default:
			}
		}
	}
	return nil
}

// Finish writes the last line and the summary, and online sends what is
// left and marks the run complete (exit code 0 when it is done, 1
// otherwise).
func (s *Sink) Finish(meta kv.RunMeta) error {
	if s.dead {
		return nil
	}
	if err := s.failed(); err != nil {
		return err
	}
	if err := s.emit(true); err != nil {
		return err
	}
	code, _ := exitCode(meta.Status)
	if meta.Status == kv.StatusRunning {
		code = 1
	}
	sum := formatObject(s.sum)
	if s.dir != nil {
		s.dir.run.State, s.dir.run.ExitCode, s.dir.run.Summary = stateFinished, code, sum
		if code != 0 {
			s.dir.run.State = stateFailed
		}
		if err := s.dir.close(); err != nil {
			return err
		}
		if err := s.dir.writeRun(); err != nil {
			return err
		}
	}
	if s.mode != ModeOnline {
		return nil
	}
	close(s.stop)
	<-s.stopped
	if err := s.failed(); err != nil {
		return err
	}
	defer s.cancel()
	if err := s.t.finish(s.ctx, sum, code); err != nil {
		return s.gaveUp(err)
	}
	if s.dir != nil {
		c := s.cursor()
		c.Complete = true
		return writeCursor(s.dir.dir, c)
	}
	return nil
}

func (s *Sink) cursor() cursor {
	s.mu.Lock()
	defer s.mu.Unlock()
	return cursor{BaseURL: s.o.BaseURL, Entity: s.t.entity, Project: s.o.Project, WandbID: s.info.ID, Acked: s.qOff}
}

// sender streams queued lines: every FlushEvery, when a chunk is full,
// and once more when stopped.
func (s *Sink) sender() {
	defer close(s.stopped)
	tick := time.NewTicker(s.o.FlushEvery)
	defer tick.Stop()
	for {
		last := false
		select {
		case <-s.wake:
		case <-tick.C:
		case <-s.stop:
			last = true
		}
		if err := s.sendQueued(); err != nil {
			s.mu.Lock()
			s.sendErr = err
			s.mu.Unlock()
			return
		}
		if last {
			return
		}
	}
}

func (s *Sink) sendQueued() error {
	s.mu.Lock()
	lines, off := s.queue, s.qOff
	s.mu.Unlock()
	if len(lines) == 0 {
		return nil
	}
	done := 0
	_, _, err := s.t.push(s.ctx, lines, 0, off, func(offset, k int) error {
		s.mu.Lock()
		s.queue = s.queue[k-done:]
		s.qOff = offset
		s.mu.Unlock()
		done = k
		if s.dir != nil {
			return writeCursor(s.dir.dir, s.cursor())
		}
		return nil
	})
	return err
}

// failed is the error of a sender that gave up, reported once as a
// message that says where the rest can be found.
func (s *Sink) failed() error {
	if s.mode != ModeOnline || s.stopped == nil {
		return nil
	}
	s.mu.Lock()
	err := s.sendErr
	s.mu.Unlock()
	if err == nil {
		return nil
	}
	s.mode = ModeOffline
	s.cancel()
	return s.gaveUp(err)
}

// gaveUp stops the online upload and says how to finish it: the folder
// has the lines so far (Sync resumes from what the server took) and the
// store has the whole run.
func (s *Sink) gaveUp(err error) error {
	s.mode, s.dead = ModeOffline, true
	where := ""
	if s.dir != nil {
		if ferr := s.dir.close(); ferr != nil {
			err = errors.Join(err, ferr)
		}
		where = fmt.Sprintf("; the lines so far are in %s, and `lens wandb sync` finishes the upload from there and the store once the run ends", s.dir.dir)
	} else {
		where = fmt.Sprintf("; upload it later from the store with `lens wandb upload %s --project %s`", s.meta.ID, s.o.Project)
	}
	return fmt.Errorf("W&B upload stopped: %w%s", err, where)
}
