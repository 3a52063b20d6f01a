package sweep

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"sort"
	"strings"
	"time"

	"lens/engine/runs"
	"lens/kv"
)

// Config is how Run drives a sweep.
type Config struct {
	Store   *kv.Store // the workspace store shards are merged into
	Backend Backend
	// Retries is how many times a trial whose process ended without
	// finishing (killed, preempted, cancelled by someone else, node
	// failure) is submitted again; it resumes from its checkpoint. A run
	// that failed (an error in training) is not retried.
	Retries int
	Poll    time.Duration // how often to poll the backend (default 200 ms)
	// Say receives a line for a person at each event (trial started,
	// merged, stopped, retried).
	Say    func(format string, args ...any)
	Logger *slog.Logger
}

// Result is what a sweep produced.
type Result struct {
	// Runs are the merged runs of the trials that finished (done or
	// stopped), by trial id.
	Runs map[string]kv.RunMeta
	// Rungs lists, for successive halving, the trial ids alive at each
	// rung, later rungs in the order of the previous rung's ranking.
	Rungs [][]string
	// Best is the trial with the lowest metric in the last rung.
	Best string
}

type driver struct {
	sw     *Sweep
	cfg    Config
	ids    []string
	log    *slog.Logger
	res    *Result
	stopAt map[string]string // trial id -> why the sweep stopped it
	alive  []string          // halving: trials alive in the current rung
	rung   int               // halving: the rung being decided
}

// Run runs the trials ids of sw through cfg.Backend until each is done,
// stopped or failed, merging every trial's shard into cfg.Store as soon as
// its process ends (and, for successive halving, each rung snapshot as it
// appears), so the workspace store shows results while the sweep runs. It
// returns an error naming each failed trial, with the result of the
// others. Cancelling ctx stops every trial (they checkpoint), merges what
// ended, and marks the rest cancelled: running the sweep again resumes
// them.
func Run(ctx context.Context, sw *Sweep, ids []string, cfg Config) (*Result, error) {
	if cfg.Poll <= 0 {
		cfg.Poll = 200 * time.Millisecond
	}
	if cfg.Say == nil {
		cfg.Say = func(string, ...any) {}
	}
	if cfg.Retries < 0 {
		return nil, fmt.Errorf("sweep %s: retries=%d must not be negative", sw.Name, cfg.Retries)
	}
	d := &driver{sw: sw, cfg: cfg, ids: ids, log: cfg.Logger, res: &Result{Runs: map[string]kv.RunMeta{}}, stopAt: map[string]string{}}
	if d.log == nil {
		d.log = slog.New(slog.DiscardHandler)
	}
	if sw.Halving != nil {
		d.alive = append([]string(nil), ids...)
		d.res.Rungs = [][]string{d.alive}
	}
	var todo []*Trial
	for _, id := range ids {
		t := sw.Trial(id)
		if t == nil {
			return nil, fmt.Errorf("sweep %s has no trial %s", sw.Name, id)
		}
		if t.finished() {
			// Finished in an earlier run of the sweep: merge again (a no-op
			// when it is there) so the store has it even if it was reset.
			d.finish(t, "")
			continue
		}
		t.Attempts++
		todo = append(todo, t)
	}
	if err := cfg.Backend.Submit(ctx, todo); err != nil {
		for _, t := range todo {
			t.Attempts--
			t.State = StatePending
		}
		return nil, errors.Join(err, sw.Save())
	}
	for _, t := range todo {
		cfg.Say("sweep %s: trial %s (%s) %s, job %s", sw.Name, t.ID, t.Name, t.State, t.Job)
	}
	if err := sw.Save(); err != nil {
		return nil, err
	}
	cancelled := false
	var giveUp time.Time
	for d.active() > 0 {
		if cancelled && time.Now().After(giveUp) {
			// The backend did not report the stopped trials in time (Slurm
			// down?): leave them; the next run of the sweep resumes them.
			for _, id := range ids {
				if t := sw.Trial(id); t.State == StateQueued || t.State == StateRunning {
					t.State = StateCancelled
				}
			}
			break
		}
		if ctx.Err() != nil && !cancelled {
			cancelled = true
			giveUp = time.Now().Add(2 * time.Minute)
			cfg.Say("sweep %s: interrupted; stopping %d trials (each saves a checkpoint)", sw.Name, d.active())
			if err := cfg.Backend.StopAll(); err != nil {
				d.log.Warn("stopping trials", "err", err)
			}
		}
		ended, err := cfg.Backend.Poll(context.WithoutCancel(ctx))
		if err != nil {
			d.log.Warn("polling the backend", "backend", cfg.Backend.Name(), "err", err)
		}
		d.rungSnapshots()
		for _, e := range ended {
			d.ended(ctx, sw.Trial(e.ID), e, cancelled)
		}
		if err := d.decideRungs(); err != nil {
			d.log.Warn("successive halving", "err", err)
		}
		if err := sw.Save(); err != nil {
			return d.res, err
		}
		if d.active() > 0 {
			time.Sleep(cfg.Poll)
		}
	}
	if sw.Halving != nil {
		// Rungs that trials passed just before ending.
		d.rungSnapshots()
		if err := d.decideRungs(); err != nil {
			d.log.Warn("successive halving", "err", err)
		}
		d.pickBest()
	}
	if err := sw.Save(); err != nil {
		return d.res, err
	}
	if cancelled {
		return d.res, fmt.Errorf("sweep %s: %w (finished trials are merged; run it again to resume the rest)", sw.Name, ctx.Err())
	}
	var failed []string
	for _, id := range ids {
		if t := sw.Trial(id); t.State == StateFailed {
			failed = append(failed, fmt.Sprintf("%s (%s): %s", t.ID, t.Name, t.Error))
		}
	}
	if len(failed) > 0 {
		return d.res, fmt.Errorf("sweep %s: %d of %d trials failed (logs in %s):\n  %s", sw.Name, len(failed), len(ids),
			logDir(sw.Dir()), strings.Join(failed, "\n  "))
	}
	return d.res, nil
}

func (d *driver) active() int {
	n := 0
	for _, id := range d.ids {
		switch d.sw.Trial(id).State {
		case StateQueued, StateRunning:
			n++
		}
	}
	return n
}

// ended handles a trial whose process ended: merge its shard, then decide
// from the run's status whether it is done, stopped, failed or goes again.
func (d *driver) ended(ctx context.Context, t *Trial, e Ended, cancelled bool) {
	ex := ReadExit(d.sw.Dir(), t.ID)
	why, stopped := d.stopAt[t.ID]
	if stopped && e.State == "not started" {
		t.State, t.Error = StateStopped, why
		return
	}
	if stopped {
		// The trial normally marks itself stopped; if it was killed before
		// it could, the sweep marks its shard.
		if err := markStopped(ShardDir(d.sw.Dir(), t.ID), why); err != nil {
			d.log.Warn("marking a stopped trial", "trial", t.ID, "err", err)
		}
	}
	meta, err := d.merge(t)
	if err != nil && !errors.Is(err, errNoRun) {
		t.State, t.Error = StateFailed, err.Error()
		d.cfg.Say("sweep %s: trial %s (%s) failed: %v", d.sw.Name, t.ID, t.Name, err)
		return
	}
	status := meta.Status
	switch status {
	case kv.StatusDone, kv.StatusStopped:
		d.finish(t, status)
		return
	case kv.StatusFailed:
		t.State, t.Error = StateFailed, meta.Reason
		d.cfg.Say("sweep %s: trial %s (%s) failed: %s", d.sw.Name, t.ID, t.Name, meta.Reason)
		return
	}
	if errors.Is(err, errNoRun) && ex != nil && ex.Error != "" && ex.Status == kv.StatusFailed {
		// The process failed before it could record a run (bad base
		// model, unreadable trial file): retrying would fail the same way.
		t.State, t.Error = StateFailed, ex.Error
		d.cfg.Say("sweep %s: trial %s (%s) failed: %s", d.sw.Name, t.ID, t.Name, ex.Error)
		return
	}
	if cancelled {
		t.State = StateCancelled
		return
	}
	if status == "" {
		status = "no run recorded"
	}
	if t.Attempts > d.cfg.Retries {
		t.State = StateFailed
		t.Error = fmt.Sprintf("ended %s (%s) after %d attempts; logs in %s", status, e.State, t.Attempts, logDir(d.sw.Dir()))
		d.cfg.Say("sweep %s: trial %s (%s) failed: %s", d.sw.Name, t.ID, t.Name, t.Error)
		return
	}
	t.Attempts++
	if err := d.cfg.Backend.Submit(ctx, []*Trial{t}); err != nil {
		t.State, t.Error = StateFailed, fmt.Sprintf("ended %s (%s); resubmitting it failed: %v", status, e.State, err)
		d.cfg.Say("sweep %s: trial %s (%s) failed: %s", d.sw.Name, t.ID, t.Name, t.Error)
		return
	}
	d.cfg.Say("sweep %s: trial %s (%s) ended %s (%s); resubmitted (attempt %d of %d), job %s", d.sw.Name, t.ID, t.Name,
		status, e.State, t.Attempts, d.cfg.Retries+1, t.Job)
}

var errNoRun = errors.New("the trial's shard holds no run")

// merge merges the trial's shard into the workspace store and returns the
// trial's run as merged.
func (d *driver) merge(t *Trial) (kv.RunMeta, error) {
	shard := ShardDir(d.sw.Dir(), t.ID)
	if !exists(shard) {
		return kv.RunMeta{}, errNoRun
	}
	merged, err := MergeShard(d.cfg.Store, shard, d.log)
	if err != nil {
		return kv.RunMeta{}, err
	}
	if len(merged) == 0 {
		return kv.RunMeta{}, errNoRun
	}
	m := merged[0].Run
	t.RunID, t.Steps = m.ID, m.Steps
	if b := bestEval(d.cfg.Store, m); b != nil {
		t.Best = b
	}
	d.log.Info("merged trial", "trial", t.ID, "run", m.ID, "status", m.Status, "outcome", merged[0].Outcome)
	return m, nil
}

// finish records a trial that ended for good, merging its shard again when
// called for a trial finished in an earlier run of the sweep.
func (d *driver) finish(t *Trial, status string) {
	if status == "" {
		m, err := d.merge(t)
		if err == nil && m.Status != kv.StatusDone && m.Status != kv.StatusStopped {
			err = fmt.Errorf("its run %s is %s", m.ID, m.Status)
		}
		if err != nil {
			t.State, t.Error = StateFailed, fmt.Sprintf("finished earlier, but merging it again failed: %v", err)
			return
		}
		status = m.Status
	}
	m, err := d.cfg.Store.GetRun(t.RunID)
	if err != nil {
		t.State, t.Error = StateFailed, err.Error()
		return
	}
	d.res.Runs[t.ID] = m
	if status == kv.StatusStopped {
		t.State = StateStopped
	} else {
		t.State = StateDone
	}
	t.Error = ""
	d.cfg.Say("sweep %s: trial %s (%s) %s after %d steps, merged as run %s", d.sw.Name, t.ID, t.Name, t.State, m.Steps, m.ID)
}

// bestEval is the lowest eval loss of run m on its own data, if any.
func bestEval(st *kv.Store, m kv.RunMeta) *float64 {
	spec, err := runs.SpecOf(m)
	if err != nil {
		return nil
	}
	pts, err := st.ReadMetric(m.ID, "eval/"+spec.MainEval())
	if err != nil || len(pts) == 0 {
		return nil
	}
	best := math.Inf(1)
	for _, p := range pts {
		best = min(best, p.Value)
	}
	return &best
}

// markStopped sets the run in a closed shard to stopped, unless it is done.
func markStopped(shardDir, why string) error {
	if !exists(shardDir) {
		return nil
	}
	st, err := kv.Open(shardDir, kv.Options{Command: "lens sweep (stop a trial)"})
	if err != nil {
		return err
	}
	list, err := st.ListRuns()
	for _, m := range list {
		if err == nil && m.Status != kv.StatusDone && m.Status != kv.StatusStopped {
			err = st.UpdateRun(m.ID, func(r *kv.RunMeta) error {
				r.Status, r.Reason = kv.StatusStopped, why
				return nil
			})
		}
	}
	return errors.Join(err, st.Close())
}

// rungSnapshots merges the rung snapshots trials wrote since the last poll
// and records each trial's score at that rung.
func (d *driver) rungSnapshots() {
	h := d.sw.Halving
	if h == nil {
		return
	}
	for _, id := range d.ids {
		t := d.sw.Trial(id)
		for k := len(t.Rungs); k < len(h.Milestones) && exists(rungMarker(d.sw.Dir(), id, k)); k++ {
			score, err := d.mergeRung(t, k)
			if err != nil {
				d.log.Warn("rung snapshot", "trial", id, "rung", k, "err", err)
				t.State, t.Error = StateFailed, err.Error()
				d.stopAt[id] = err.Error()
				_ = d.cfg.Backend.Stop(t)
				break
			}
			t.Rungs = append(t.Rungs, score)
			d.cfg.Say("sweep %s: trial %s (%s) reached rung %d at step %d: %s %.4f", d.sw.Name, id, t.Name, k, h.Milestones[k], h.Metric, score)
		}
	}
}

func (d *driver) mergeRung(t *Trial, k int) (float64, error) {
	dir := rungShard(d.sw.Dir(), t.ID, k)
	merged, err := MergeShard(d.cfg.Store, dir, d.log)
	if err != nil {
		return 0, err
	}
	if len(merged) != 1 {
		return 0, fmt.Errorf("rung snapshot %s holds %d runs", dir, len(merged))
	}
	m := merged[0].Run
	if t.RunID == "" {
		t.RunID = m.ID
	}
	t.Steps = max(t.Steps, m.Steps)
	src, err := kv.Open(dir, kv.Options{ReadOnly: true})
	if err != nil {
		return 0, err
	}
	defer src.Close()
	return Score(src, m, d.sw.Halving.Metric, m.Steps)
}

// Score is a run's halving metric at step: "final_loss" is the run
// record's final loss (as of step for a rung snapshot); any other name is
// that stored metric's latest value at or before step.
func Score(st *kv.Store, m kv.RunMeta, metric string, step int) (float64, error) {
	if metric == "final_loss" {
		if m.FinalLoss == nil {
			return 0, fmt.Errorf("run %s has no final_loss", m.ID)
		}
		return *m.FinalLoss, nil
	}
	pts, err := st.ReadMetric(m.ID, metric)
	if err != nil {
		return 0, err
	}
	for i := len(pts) - 1; i >= 0; i-- {
		if pts[i].Step <= step {
			return pts[i].Value, nil
		}
	}
	return 0, fmt.Errorf("run %s has no %s at or before step %d", m.ID, metric, step)
}

// decideRungs ranks the current rung once every trial alive in it has a
// score (or has failed): the best max(1, n/eta) go on, the others are
// stopped: SIGTERM or scancel if they still run, so they checkpoint and
// end "stopped". It then moves on to the next rung, which may be decided
// at once if the survivors are already past it.
func (d *driver) decideRungs() error {
	h := d.sw.Halving
	if h == nil {
		return nil
	}
	for d.rung < len(h.Milestones) {
		type scored struct {
			id    string
			score float64
			order int
		}
		var ranked []scored
		for i, id := range d.alive {
			t := d.sw.Trial(id)
			switch {
			case len(t.Rungs) > d.rung:
				ranked = append(ranked, scored{id, t.Rungs[d.rung], i})
			case t.State == StateFailed || t.State == StateCancelled || t.State == StateStopped:
				// out of the race without a score
			default:
				return nil // still training towards this rung
			}
		}
		sort.SliceStable(ranked, func(a, b int) bool {
			sa, sb := ranked[a].score, ranked[b].score
			if math.IsNaN(sa) != math.IsNaN(sb) {
				return !math.IsNaN(sa)
			}
			return sa < sb
		})
		keep := max(1, len(d.alive)/h.Eta)
		keep = min(keep, len(ranked))
		var next []string
		for i, r := range ranked {
			if i < keep {
				next = append(next, r.id)
				continue
			}
			t := d.sw.Trial(r.id)
			why := fmt.Sprintf("stopped by successive halving at rung %d (step %d): %s %.4g ranked %d of %d",
				d.rung, h.Milestones[d.rung], h.Metric, r.score, i+1, len(ranked))
			d.stopAt[r.id] = why
			if t.State == StateQueued || t.State == StateRunning {
				if err := os.WriteFile(stopFile(d.sw.Dir(), r.id), []byte(why+"\n"), 0o644); err != nil {
					return err
				}
				if err := d.cfg.Backend.Stop(t); err != nil {
					return err
				}
				d.cfg.Say("sweep %s: trial %s (%s) %s", d.sw.Name, r.id, t.Name, why)
			}
		}
		d.alive = next
		d.rung++
		d.res.Rungs = append(d.res.Rungs, next)
	}
	return nil
}

// pickBest names the trial of the last rung with the lowest metric.
func (d *driver) pickBest() {
	best, bestScore := "", math.Inf(1)
	for _, id := range d.alive {
		m, ok := d.res.Runs[id]
		if !ok {
			continue
		}
		s, err := Score(d.cfg.Store, m, d.sw.Halving.Metric, m.Steps)
		if err != nil || math.IsNaN(s) {
			continue
		}
		if best == "" || s < bestScore {
			best, bestScore = id, s
		}
	}
	d.res.Best = best
}
