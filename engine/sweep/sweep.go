// Package sweep runs the trials of a parameter sweep as separate processes,
// on this machine or through Slurm, each writing its own store shard, and
// merges the shards into the workspace store as trials finish.
//
// A trial is one runs.Spec with a stable id (a hash of the sweep name, the
// point and the spec). Everything about a sweep lives in its directory:
//
//	sweep.json              the sweep: name, backend, halving plan, trials with state, attempts, job id
//	trials/<id>/trial.json  what a trial process needs: run name, spec, halving milestones
//	trials/<id>/progress.json  the trial's latest step and losses, for `lens sweep status`
//	trials/<id>/exit.json   how the trial's last process ended
//	trials/<id>/stop        present when the sweep stopped the trial (successive halving)
//	trials/<id>/rung<k>     present once the trial wrote its rung-k snapshot
//	base/<hash>/            base models that live in the workspace store, exported once (HF layout)
//	shards/<id>/            the trial's own kv store
//	shards/<id>.rung<k>/    a copy of the trial's run at halving milestone k
//	logs/                   trial output (local: <id>.log; Slurm: <job>_<task>.out)
//	trials.txt, sweep.sbatch  the Slurm array: line i+1 of trials.txt is array index i
//
// The driver (Run) is the only writer of sweep.json and of the workspace
// store; a trial process writes only its own trial directory and shard.
// Nothing here knows Starlark: builtins turn a script's sweep into specs.
package sweep

import (
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"regexp"
	"slices"
	"strings"

	"lens/engine/model"
	"lens/engine/runs"
)

// Trial states in sweep.json.
const (
	StatePending   = "pending"   // not submitted yet
	StateQueued    = "queued"    // submitted, not seen running
	StateRunning   = "running"   // a trial process is training it
	StateDone      = "done"      // finished and merged
	StateFailed    = "failed"    // failed, or out of retries; Error says why
	StateStopped   = "stopped"   // ended early by successive halving
	StateCancelled = "cancelled" // the sweep was interrupted; the next run resumes it
)

// Backends.
const (
	BackendInline = "inline"
	BackendLocal  = "local"
	BackendSlurm  = "slurm"
)

// Backends are the backend names, in the order help texts list them.
var Backends = []string{BackendInline, BackendLocal, BackendSlurm}

// CheckBackend reports an error naming the backends when name is none of
// them ("" is not a backend; callers treat it as their default).
func CheckBackend(name string) error {
	if !slices.Contains(Backends, name) {
		n := len(Backends)
		return fmt.Errorf("backend %q: want %s or %s", name, strings.Join(Backends[:n-1], ", "), Backends[n-1])
	}
	return nil
}

// Trial is one trial's entry in sweep.json.
type Trial struct {
	ID       string          `json:"id"`
	Name     string          `json:"name"` // run name, SWEEP/k=v,...
	Point    json.RawMessage `json:"point"`
	State    string          `json:"state"`
	Job      string          `json:"job,omitempty"` // local: pid; slurm: JOB_TASK
	Attempts int             `json:"attempts"`      // processes submitted so far
	RunID    string          `json:"run_id,omitempty"`
	Steps    int             `json:"steps"`
	Best     *float64        `json:"best,omitempty"` // lowest eval loss on the run's own data (else train loss) merged so far
	Error    string          `json:"error,omitempty"`
	Rungs    []float64       `json:"rungs,omitempty"` // halving score at each rung reached
}

// finished says whether the trial ended for good: a later run of the
// sweep merges it again but does not train it again.
func (t *Trial) finished() bool { return t.State == StateDone || t.State == StateStopped }

// Halving is a successive-halving plan: every trial trains for Steps
// steps; at each milestone the best 1/Eta of the trials still alive (lowest
// Metric) go on and the others are stopped.
type Halving struct {
	Steps      int    `json:"steps"`
	Rungs      int    `json:"rungs"`
	Eta        int    `json:"eta"`
	Metric     string `json:"metric"`     // "final_loss" or a stored metric name
	Milestones []int  `json:"milestones"` // the steps of rungs 0..Rungs-2
}

// NewHalving checks the plan and works out its milestones: the first rung
// ends at Steps/Eta^(Rungs-1), each later one Eta times further.
func NewHalving(steps, rungs, eta int, metric string) (*Halving, error) {
	if rungs < 1 || eta < 2 {
		return nil, fmt.Errorf("successive halving: rungs=%d must be at least 1 and eta=%d at least 2", rungs, eta)
	}
	budget := steps
	for range rungs - 1 {
		budget /= eta
	}
	if budget <= 0 {
		return nil, fmt.Errorf("successive halving: steps=%d too small for %d rungs with eta=%d", steps, rungs, eta)
	}
	if metric == "" {
		metric = "final_loss"
	}
	h := &Halving{Steps: steps, Rungs: rungs, Eta: eta, Metric: metric}
	for range rungs - 1 {
		h.Milestones = append(h.Milestones, budget)
		budget *= eta
	}
	return h, nil
}

// Sweep is sweep.json.
type Sweep struct {
	Name    string   `json:"name"`
	Backend string   `json:"backend"`
	Store   string   `json:"store,omitempty"` // the store the shards are merged into
	Halving *Halving `json:"halving,omitempty"`
	Trials  []*Trial `json:"trials"`

	dir string
}

// Dir is the sweep's directory.
func (s *Sweep) Dir() string { return s.dir }

// Trial returns the trial with id, or nil.
func (s *Sweep) Trial(id string) *Trial {
	for _, t := range s.Trials {
		if t.ID == id {
			return t
		}
	}
	return nil
}

// TrialFile is trials/<id>/trial.json.
type TrialFile struct {
	ID         string    `json:"id"`
	Sweep      string    `json:"sweep"`
	Spec       runs.Spec `json:"spec"`
	Milestones []int     `json:"milestones,omitempty"`
}

// Paths inside a sweep directory.
func sweepFile(dir string) string        { return filepath.Join(dir, "sweep.json") }
func trialDir(dir, id string) string     { return filepath.Join(dir, "trials", id) }
func trialFile(dir, id string) string    { return filepath.Join(trialDir(dir, id), "trial.json") }
func progressFile(dir, id string) string { return filepath.Join(trialDir(dir, id), "progress.json") }
func exitFile(dir, id string) string     { return filepath.Join(trialDir(dir, id), "exit.json") }
func stopFile(dir, id string) string     { return filepath.Join(trialDir(dir, id), "stop") }
func rungMarker(dir, id string, k int) string {
	return filepath.Join(trialDir(dir, id), fmt.Sprintf("rung%d", k))
}

// ShardDir is the store shard of trial id.
func ShardDir(dir, id string) string { return filepath.Join(dir, "shards", id) }

func rungShard(dir, id string, k int) string {
	return filepath.Join(dir, "shards", fmt.Sprintf("%s.rung%d", id, k))
}
func baseDir(dir, hash string) string { return filepath.Join(dir, "base", hash) }
func logDir(dir string) string        { return filepath.Join(dir, "logs") }

var unsafeName = regexp.MustCompile(`[^A-Za-z0-9._-]+`)

// DefaultDir is where a sweep named name lives unless the script says
// otherwise: beside the store's data, in STORE/sweeps/NAME.
func DefaultDir(store, name string) string {
	n := unsafeName.ReplaceAllString(name, "_")
	if n == "" || n == "." || n == ".." {
		n = "_"
	}
	return filepath.Join(store, "sweeps", n)
}

// TrialID is a short stable id for a trial: the same sweep name, point and
// spec give the same id in every process and on every run of the script.
// The script's path, content hash and arguments are left out, so editing a
// comment does not orphan finished trials.
func TrialID(sweep string, point json.RawMessage, spec runs.Spec) string {
	spec.Script, spec.ScriptHash, spec.Args = "", "", nil
	sb, _ := json.Marshal(spec)
	h := sha256.New()
	h.Write([]byte(sweep))
	h.Write([]byte{0})
	h.Write(point)
	h.Write([]byte{0})
	h.Write(sb)
	return hex.EncodeToString(h.Sum(nil))[:12]
}

// Load reads the sweep in dir.
func Load(dir string) (*Sweep, error) {
	b, err := os.ReadFile(sweepFile(dir))
	if errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("no sweep in %s (no sweep.json): %w", dir, err)
	}
	if err != nil {
		return nil, fmt.Errorf("read sweep %s: %w", dir, err)
	}
	var s Sweep
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("read %s: %w", sweepFile(dir), err)
	}
	s.dir = dir
	return &s, nil
}

// Save writes sweep.json atomically (write, then rename).
func (s *Sweep) Save() error {
	b, err := json.MarshalIndent(s, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(sweepFile(s.dir), append(b, '\n'))
}

// ReadTrialFile reads trials/<id>/trial.json.
func ReadTrialFile(dir, id string) (*TrialFile, error) {
	b, err := os.ReadFile(trialFile(dir, id))
	if err != nil {
		return nil, fmt.Errorf("trial %s of sweep %s: %w", id, dir, err)
	}
	var tf TrialFile
	if err := json.Unmarshal(b, &tf); err != nil {
		return nil, fmt.Errorf("read %s: %w", trialFile(dir, id), err)
	}
	return &tf, nil
}

func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return writeFileAtomic(path, append(b, '\n'))
}

// writeFileAtomic replaces path with b so that a reader (or a crash) sees
// the old content or the new, never a torn file.
func writeFileAtomic(path string, b []byte) error {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return err
	}
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return err
	}
	if _, err := tmp.Write(b); err != nil {
		tmp.Close()
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := tmp.Close(); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	if err := os.Rename(tmp.Name(), path); err != nil {
		os.Remove(tmp.Name())
		return fmt.Errorf("write %s: %w", path, err)
	}
	return nil
}

func exists(path string) bool {
	_, err := os.Stat(path)
	return err == nil
}

// Planned is one trial as a script planned it.
type Planned struct {
	Name  string          // run name
	Point json.RawMessage // canonical JSON of the point
	Spec  runs.Spec       // as lens.train built and validated it
}

// Create lays out (or updates) the sweep directory for the planned trials
// and returns the sweep with the ids of the planned trials in order.
// Trials already in sweep.json keep their state, so running a sweep again
// resumes it: finished trials are not run again. bases are the base models
// the specs reference by blob hash; each is written to base/<hash>/ once.
func Create(dir, name, backend, store string, planned []Planned, bases map[string]*model.Model, halving *Halving) (*Sweep, []string, error) {
	if err := os.MkdirAll(dir, 0o755); err != nil {
		return nil, nil, fmt.Errorf("sweep %s: %w", name, err)
	}
	sw, err := Load(dir)
	if errors.Is(err, fs.ErrNotExist) {
		sw, err = &Sweep{Name: name, dir: dir}, nil
	}
	if err != nil {
		return nil, nil, err
	}
	if sw.Name != name {
		return nil, nil, fmt.Errorf("sweep directory %s belongs to sweep %q, not %q: give another dir=", dir, sw.Name, name)
	}
	sw.Backend, sw.Store, sw.Halving = backend, store, halving
	var ms []int
	if halving != nil {
		ms = halving.Milestones
	}
	var ids []string
	for _, p := range planned {
		id := TrialID(name, p.Point, p.Spec)
		if slices.Contains(ids, id) {
			return nil, nil, fmt.Errorf("sweep %s: points %s appear twice", name, p.Point)
		}
		ids = append(ids, id)
		if b := p.Spec.Base.Blob; b != "" {
			if _, ok := bases[b]; !ok {
				return nil, nil, fmt.Errorf("sweep %s: trial %s: base model %s was not given", name, p.Name, b)
			}
		}
		if err := writeJSON(trialFile(dir, id), TrialFile{ID: id, Sweep: name, Spec: p.Spec, Milestones: ms}); err != nil {
			return nil, nil, err
		}
		if t := sw.Trial(id); t != nil {
			if !t.finished() {
				// Failed, cancelled or interrupted last time: try again,
				// resuming from the shard's checkpoint.
				t.State, t.Error, t.Attempts = StatePending, "", 0
			}
			continue
		}
		sw.Trials = append(sw.Trials, &Trial{ID: id, Name: p.Name, Point: p.Point, State: StatePending})
	}
	for hash, m := range bases {
		if err := exportBase(dir, hash, m); err != nil {
			return nil, nil, err
		}
	}
	if err := os.MkdirAll(logDir(dir), 0o755); err != nil {
		return nil, nil, err
	}
	if err := sw.Save(); err != nil {
		return nil, nil, err
	}
	return sw, ids, nil
}
