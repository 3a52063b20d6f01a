package kv

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"time"

	badger "github.com/dgraph-io/badger/v4"
)

// Progress is where a running run is, at prog/<id>. The trainer reports it
// every step; the store keeps the latest in memory and writes it with the
// next flush (at most half a second later, see flushEvery), so readers see a
// live run without its record being rewritten every step. Reads of a
// running run's record (GetRun, ListRuns, FindRun...) fold it in: Steps
// becomes the progress step and RunMeta.Progress is set. The key goes when
// the run's status leaves "running".
type Progress struct {
	Step         int       `json:"step"`
	Steps        int       `json:"steps,omitempty"` // planned
	Loss         float64   `json:"loss"`            // may be NaN or ±Inf
	TokensPerSec float64   `json:"tokens_per_s,omitempty"`
	Time         time.Time `json:"time"`
}

type progressJSON struct {
	progressPlain
	Loss jsonFloat `json:"loss"`
}

type progressPlain Progress

// MarshalJSON encodes a Progress, writing a NaN or infinite Loss as a string.
func (p Progress) MarshalJSON() ([]byte, error) {
	return json.Marshal(progressJSON{progressPlain(p), jsonFloat(p.Loss)})
}

// UnmarshalJSON is the inverse of MarshalJSON.
func (p *Progress) UnmarshalJSON(b []byte) error {
	var j progressJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	*p = Progress(j.progressPlain)
	p.Loss = float64(j.Loss)
	return nil
}

// SetProgress records where run runID is. It is buffered like metrics; a
// zero p.Time becomes now.
func (s *Store) SetProgress(runID string, p Progress) error {
	if err := s.checkRunForMetrics(runID, p.Step); err != nil {
		return fmt.Errorf("set progress of run %s: %w", runID, err)
	}
	if p.Time.IsZero() {
		p.Time = time.Now()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.progress) == 0 && s.pending.n == 0 {
		s.pendingSince = time.Now()
	}
	s.progress[runID] = p
	return nil
}

// GetProgress returns the stored progress of run runID (flushing the
// buffer first), or an error wrapping ErrNotFound when it has none.
func (s *Store) GetProgress(runID string) (Progress, error) {
	if err := s.Flush(); err != nil {
		return Progress{}, err
	}
	var p Progress
	err := s.view(func(txn *badger.Txn) error { return getJSON(txn, progressKey(runID), &p) })
	if err != nil {
		return Progress{}, fmt.Errorf("progress of run %s: %w", runID, err)
	}
	return p, nil
}

func (s *Store) flushProgressLocked() error {
	if len(s.progress) == 0 {
		return nil
	}
	err := s.update(func(txn *badger.Txn) error {
		for id, p := range s.progress {
			b, err := json.Marshal(p)
			if err != nil {
				return err
			}
			// Only a run still running gets progress: a late flush must
			// not bring back the key of a run that has finished.
			var m RunMeta
			err = getJSON(txn, runMetaKey(id), &m)
			if errors.Is(err, ErrNotFound) {
				continue
			}
			if err != nil {
				return err
			}
			if m.Status != StatusRunning {
				continue
			}
			if err := txn.Set(progressKey(id), b); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return fmt.Errorf("write progress to %s: %w", s.dir, err)
	}
	clear(s.progress)
	return nil
}

// withProgress folds the stored progress of a running run into m.
func withProgress(txn *badger.Txn, m *RunMeta) {
	if m.Status != StatusRunning {
		return
	}
	var p Progress
	if getJSON(txn, progressKey(m.ID), &p) != nil {
		return
	}
	m.Progress = &p
	m.Steps = max(m.Steps, p.Step)
}

// foldProgress is withProgress, preferring progress this process has
// reported but not yet written.
func (s *Store) foldProgress(txn *badger.Txn, m *RunMeta) {
	if m.Status != StatusRunning {
		return
	}
	s.mu.Lock()
	p, ok := s.progress[m.ID]
	s.mu.Unlock()
	if !ok {
		withProgress(txn, m)
		return
	}
	m.Progress = &p
	m.Steps = max(m.Steps, p.Step)
}

// flusher writes buffered metrics and progress once they are flushEvery
// old, so a reader (or a crash) sees at most that much less than the
// trainer has reported.
func (s *Store) flusher(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(flushEvery / 4)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
		}
		s.mu.Lock()
		var err error
		if (s.pending.n > 0 || len(s.progress) > 0) && time.Since(s.pendingSince) >= flushEvery {
			err = s.flushLocked()
		}
		s.mu.Unlock()
		if err != nil {
			s.log.Warn("background flush failed; retrying", slog.String("err", err.Error()))
		}
	}
}
