package sweep

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"os"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"time"

	"lens/engine/model"
	"lens/engine/runs"
	"lens/engine/train"
	"lens/kv"
)

var validTrialID = regexp.MustCompile(`^[0-9a-f]{12}$`)

// baseNS is the blob namespace runs.StoreBase keeps base models in.
const baseNS = "model"

// TrialOptions are the settings of one trial process.
type TrialOptions struct {
	// Threads caps the threads training uses (GOMAXPROCS); 0 leaves it.
	Threads int
	Logger  *slog.Logger
	// Progress receives every step; progress.json is kept up to date too.
	Progress func(runs.Progress)
	// Redact is the shard store's kv.Options.Redact.
	Redact func(string) string
	// Job names the batch job this process runs as, recorded in exit.json
	// ("12345_3" for a Slurm array task; cmd/lens reads SLURM_* variables,
	// see SlurmJob).
	Job string
}

// Progress is trials/<id>/progress.json.
type Progress struct {
	Step  int                `json:"step"`
	Steps int                `json:"steps"`
	Loss  float64            `json:"loss"`
	Eval  map[string]float64 `json:"eval,omitempty"` // latest evaluation
	Best  *float64           `json:"best,omitempty"` // lowest eval loss on the run's own data so far
	Time  time.Time          `json:"time"`
}

// Exit is trials/<id>/exit.json: how the trial's latest process ended.
type Exit struct {
	RunID  string    `json:"run_id,omitempty"`
	Status string    `json:"status"` // the run's status, or "failed" before a run existed
	Steps  int       `json:"steps"`
	Error  string    `json:"error,omitempty"`
	Host   string    `json:"host,omitempty"`
	Job    string    `json:"job,omitempty"` // SLURM_ARRAY_JOB_ID_SLURM_ARRAY_TASK_ID under Slurm
	Time   time.Time `json:"time"`
}

// RunTrial trains trial id of the sweep in dir in this process, into the
// trial's shard: it starts the run, or resumes it from the shard's latest
// checkpoint when an earlier process was interrupted (killed, preempted,
// cancelled), so a rerun task never duplicates steps (metrics are keyed by
// step and rewritten with the same values). A run already done or stopped
// is left alone. Cancelling ctx (SIGTERM from scancel or from the local
// driver) checkpoints and ends the run "cancelled", or "stopped" when the
// sweep asked for it (trials/<id>/stop). The returned record has the final
// status.
func RunTrial(ctx context.Context, dir, id string, opt TrialOptions) (meta kv.RunMeta, err error) {
	log := opt.Logger
	if log == nil {
		log = slog.New(slog.DiscardHandler)
	}
	if opt.Threads > 0 {
		runtime.GOMAXPROCS(opt.Threads)
	}
	if !validTrialID.MatchString(id) {
		return kv.RunMeta{}, fmt.Errorf("trial id %q: want the 12 hex digits of a trial in %s", id, filepath.Join(dir, "sweep.json"))
	}
	tf, err := ReadTrialFile(dir, id)
	if err != nil {
		return kv.RunMeta{}, err // no trial there: nothing to record either
	}
	defer func() {
		ex := Exit{RunID: meta.ID, Status: meta.Status, Steps: meta.Steps, Time: time.Now().UTC(), Job: opt.Job}
		ex.Host, _ = os.Hostname()
		if err != nil {
			ex.Error = err.Error()
			if ex.Status == "" || ex.Status == kv.StatusRunning {
				ex.Status = kv.StatusFailed
			}
		}
		if werr := writeJSON(exitFile(dir, id), ex); werr != nil && err == nil {
			err = werr
		}
	}()
	shard, err := kv.Open(ShardDir(dir, id), kv.Options{Logger: log, Command: "lens trial run " + dir + " " + id, Redact: opt.Redact})
	if err != nil {
		return kv.RunMeta{}, fmt.Errorf("trial %s: %w", id, err)
	}
	defer func() {
		if cerr := shard.Close(); cerr != nil && err == nil {
			err = cerr
		}
	}()
	if err := ensureBase(shard, dir, tf.Spec); err != nil {
		return kv.RunMeta{}, fmt.Errorf("trial %s: %w", id, err)
	}
	existing, err := shard.ListRuns()
	if err != nil {
		return kv.RunMeta{}, err
	}
	var runID string
	switch len(existing) {
	case 0:
		if runID, err = createRun(shard, tf); err != nil {
			return kv.RunMeta{}, fmt.Errorf("trial %s: %w", id, err)
		}
		log.Info("trial starting", "trial", id, "run", runID, "name", tf.Spec.Name)
	case 1:
		m := existing[0]
		runID = m.ID
		if m.Status == kv.StatusDone || m.Status == kv.StatusStopped {
			log.Info("trial already ended", "trial", id, "run", runID, "status", m.Status)
			return m, nil
		}
		from := 0
		if cm, err := shard.LatestCheckpoint(runID); err == nil {
			from = cm.Step
		}
		log.Info(fmt.Sprintf("resuming run %s from step %d", runID, from), "trial", id, "was", m.Status)
	default:
		return kv.RunMeta{}, fmt.Errorf("trial %s: shard %s holds %d runs, want one", id, ShardDir(dir, id), len(existing))
	}
	pw := &progressWriter{path: progressFile(dir, id), main: tf.Spec.MainEval(), next: opt.Progress}
	ropt := runs.Options{Logger: log, Progress: pw.update}
	if len(tf.Milestones) > 0 {
		ropt.Hooks = append(ropt.Hooks, milestoneHooks(dir, id, tf, shard, runID))
	}
	meta, err = runs.Resume(ctx, shard, runID, ropt)
	pw.flush()
	if meta.Status == kv.StatusCancelled || meta.Status == kv.StatusInterrupted {
		if reason, rerr := os.ReadFile(stopFile(dir, id)); rerr == nil {
			why := strings.TrimSpace(string(reason))
			if uerr := shard.UpdateRun(runID, func(m *kv.RunMeta) error {
				m.Status, m.Reason = kv.StatusStopped, why
				return nil
			}); uerr != nil {
				return meta, uerr
			}
			meta.Status, meta.Reason = kv.StatusStopped, why
			log.Info("trial stopped by its sweep", "trial", id, "step", meta.Steps, "reason", why)
		}
	}
	return meta, err
}

// SlurmJob names the Slurm job or array task a process runs as from its
// environment, read through getenv (cmd/lens passes os.Getenv): "JOB_TASK"
// for an array task, the job id otherwise, "" outside Slurm.
func SlurmJob(getenv func(string) string) string {
	j, t := getenv("SLURM_ARRAY_JOB_ID"), getenv("SLURM_ARRAY_TASK_ID")
	if j == "" || t == "" {
		return getenv("SLURM_JOB_ID")
	}
	return j + "_" + t
}

// createRun records the trial's run in its shard without training it, with
// the normalised spec lens.train would store; runs.Resume then trains it
// from step 0. The id joins the time to the trial id, so runs of different
// shards never collide when merged. The base is held as the run trains
// it (with base_quant packed as it is read or drawn, never in float32).
func createRun(shard *kv.Store, tf *TrialFile) (string, error) {
	base, err := runs.LoadTrainingBase(shard, tf.Spec)
	if err != nil {
		return "", err
	}
	job, err := runs.Prepare(tf.Spec, base)
	if err != nil {
		return "", err
	}
	job.Trainer.Close()
	cfg, err := json.Marshal(job.Spec)
	if err != nil {
		return "", err
	}
	s := job.Spec
	id := time.Now().UTC().Format("20060102-150405") + "-" + tf.ID
	meta := kv.RunMeta{ID: id, Name: s.Name, Script: s.Script, ScriptHash: s.ScriptHash, Args: s.Args, Config: cfg,
		Seed: s.Train.Seed, Status: kv.StatusInterrupted, Reason: "not started yet", Tags: s.Tags, LensVersion: runs.Version}
	if err := shard.CreateRun(meta); err != nil {
		return "", err
	}
	return id, nil
}

// ensureBase puts the spec's base model in the shard: a base that lives in
// the workspace store as a blob was exported to base/<hash>/ by Create.
func ensureBase(shard *kv.Store, dir string, spec runs.Spec) error {
	hash := spec.Base.Blob
	if hash == "" {
		return nil // an HF directory or a seeded init: runs.LoadTrainingBase finds it
	}
	if ok, err := shard.HasBlob(baseNS, hash); err != nil || ok {
		return err
	}
	m, err := model.Load(baseDir(dir, hash))
	if err != nil {
		return fmt.Errorf("base model %s: %w", hash, err)
	}
	if h := runs.HashModel(m); h != hash {
		return fmt.Errorf("base model %s: %s holds a model with hash %s", hash, baseDir(dir, hash), h)
	}
	ref, err := runs.StoreBase(shard, m)
	if err != nil {
		return err
	}
	if ref.Blob != hash {
		return fmt.Errorf("base model %s stored as %s", hash, ref.Blob)
	}
	return nil
}

// exportBase writes m to base/<hash>/ unless it is there, through a
// temporary directory so a half-written base is never used.
func exportBase(dir, hash string, m *model.Model) error {
	final := baseDir(dir, hash)
	if exists(filepath.Join(final, "config.json")) {
		return nil
	}
	if err := os.MkdirAll(filepath.Dir(final), 0o755); err != nil {
		return err
	}
	tmp, err := os.MkdirTemp(filepath.Dir(final), "."+hash+".*")
	if err != nil {
		return err
	}
	defer os.RemoveAll(tmp)
	if err := m.Save(tmp); err != nil {
		return fmt.Errorf("export base model %s: %w", hash, err)
	}
	os.RemoveAll(final)
	if err := os.Rename(tmp, final); err != nil {
		return fmt.Errorf("export base model %s: %w", hash, err)
	}
	return nil
}

// progressWriter mirrors progress into progress.json at most once a second
// (and at every evaluation), for `lens sweep status`.
type progressWriter struct {
	path  string
	main  string
	next  func(runs.Progress)
	p     Progress
	dirty bool
	last  time.Time
}

func (w *progressWriter) update(u runs.Progress) {
	if w.next != nil {
		w.next(u)
	}
	w.p.Step, w.p.Steps = u.Step, u.Steps
	if !math.IsNaN(u.Loss) {
		w.p.Loss = u.Loss
	}
	if u.Eval != nil {
		w.p.Eval = u.Eval
		if v, ok := u.Eval[w.main]; ok && (w.p.Best == nil || v < *w.p.Best) {
			w.p.Best = &v
		}
	}
	w.dirty = true
	if u.Eval != nil || time.Since(w.last) >= time.Second {
		w.flush()
	}
}

func (w *progressWriter) flush() {
	if !w.dirty {
		return
	}
	w.p.Time = time.Now().UTC()
	if err := writeJSON(w.path, w.p); err == nil {
		w.dirty, w.last = false, time.Now()
	}
}

// ReadProgress reads trials/<id>/progress.json (nil when there is none).
func ReadProgress(dir, id string) *Progress {
	b, err := os.ReadFile(progressFile(dir, id))
	if err != nil {
		return nil
	}
	var p Progress
	if json.Unmarshal(b, &p) != nil {
		return nil
	}
	return &p
}

// ReadExit reads trials/<id>/exit.json (nil when there is none).
func ReadExit(dir, id string) *Exit {
	b, err := os.ReadFile(exitFile(dir, id))
	if err != nil {
		return nil
	}
	var e Exit
	if json.Unmarshal(b, &e) != nil {
		return nil
	}
	return &e
}

// rungRecord is what a rung marker holds.
type rungRecord struct {
	Step  int     `json:"step"`
	Final float64 `json:"final_loss"`
}

// milestoneHooks copy the run into shards/<id>.rung<k> when it reaches
// halving milestone k, with Steps and FinalLoss as they are at that step
// (the latest eval loss on the run's own data, else the training loss,
// as a finished run's final_loss), then write the rung marker. The driver
// merges the copy while the trial trains on, and ranks the trials on it.
func milestoneHooks(dir, id string, tf *TrialFile, shard *kv.Store, runID string) train.Hooks {
	main := tf.Spec.MainEval()
	lastLoss, lastEval := math.NaN(), math.NaN()
	rung := func(step int) int {
		for k, m := range tf.Milestones {
			if m == step {
				return k
			}
		}
		return -1
	}
	snap := func(step int) error {
		k := rung(step)
		if k < 0 || exists(rungMarker(dir, id, k)) {
			return nil
		}
		final := lastLoss
		if !math.IsNaN(lastEval) {
			final = lastEval
		}
		if err := snapshot(rungShard(dir, id, k), shard, runID, step, final); err != nil {
			return fmt.Errorf("rung %d snapshot of trial %s: %w", k, id, err)
		}
		return writeJSON(rungMarker(dir, id, k), rungRecord{Step: step, Final: final})
	}
	return train.Hooks{
		AfterStep: func(t *train.Trainer, s *train.StepInfo) error {
			lastLoss = s.Loss
			if t.EvalDue() {
				return nil // the snapshot waits for this step's evaluation
			}
			return snap(s.Step)
		},
		AfterEval: func(t *train.Trainer, step int, losses map[string]float64) error {
			if v, ok := losses[main]; ok {
				lastEval = v
			}
			return snap(step)
		},
	}
}

func snapshot(dir string, src *kv.Store, runID string, step int, final float64) error {
	if err := os.RemoveAll(dir); err != nil {
		return err
	}
	dst, err := kv.Open(dir, kv.Options{Command: "lens trial run (rung snapshot)"})
	if err != nil {
		return err
	}
	err = dst.ImportRun(src, runID)
	if err == nil {
		err = dst.UpdateRun(runID, func(m *kv.RunMeta) error {
			m.Steps = step
			m.FinalLoss = &final
			return nil
		})
	}
	if cerr := dst.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return errors.Join(err, os.RemoveAll(dir))
	}
	return nil
}
