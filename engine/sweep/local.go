package sweep

import (
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"slices"
	"strconv"
	"sync"
	"syscall"
)

// Backend runs trial processes somewhere: Local on this machine, Slurm on
// a cluster. The driver calls it from one goroutine.
type Backend interface {
	// Name is the backend's name in sweep.json ("local", "slurm").
	Name() string
	// Submit starts the trials now or queues them for a free slot; it sets
	// each trial's Job (and State to queued or running).
	Submit(ctx context.Context, trials []*Trial) error
	// Poll reports the trials whose process ended since the last call and
	// marks trials seen running as running.
	Poll(ctx context.Context) ([]Ended, error)
	// Stop asks one trial's process to end (SIGTERM, scancel); the trial
	// checkpoints and its end is reported by Poll. A queued trial is
	// dropped and reported ended too.
	Stop(t *Trial) error
	// StopAll stops every trial still queued or running.
	StopAll() error
}

// Ended is a trial whose process ended.
type Ended struct {
	ID    string
	State string // the backend's word: "exit 0", "signal: killed", Slurm's COMPLETED, CANCELLED, ...
}

// Local runs up to Workers trial processes at once on this machine, each
// `Command trial run DIR ID --threads Threads`, with its output in
// logs/<id>.log.
type Local struct {
	Dir     string
	Workers int
	Threads int      // per trial; 0: max(1, NumCPU/Workers)
	Command []string // the lens binary and any leading arguments (default os.Executable())
	Env     []string // extra environment for the trial processes

	mu      sync.Mutex
	queue   []*Trial
	running map[string]*exec.Cmd
	ended   []Ended
}

// NewLocal checks the settings and returns the local backend.
func NewLocal(dir string, workers int) (*Local, error) {
	if workers < 1 {
		return nil, fmt.Errorf("backend local: workers=%d: want at least 1 trial process at a time", workers)
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, fmt.Errorf("backend local: cannot find the lens binary to run trials with: %w", err)
	}
	return &Local{Dir: dir, Workers: workers, Command: []string{exe}, running: map[string]*exec.Cmd{}}, nil
}

// Name is "local".
func (l *Local) Name() string { return BackendLocal }

func (l *Local) threads() int {
	if l.Threads > 0 {
		return l.Threads
	}
	return max(1, runtime.NumCPU()/l.Workers)
}

// Submit queues the trials; Poll starts them as slots free up.
func (l *Local) Submit(ctx context.Context, trials []*Trial) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.running == nil {
		l.running = map[string]*exec.Cmd{}
	}
	for _, t := range trials {
		t.State, t.Job = StateQueued, ""
		l.queue = append(l.queue, t)
	}
	return l.startLocked()
}

func (l *Local) startLocked() error {
	for len(l.running) < l.Workers && len(l.queue) > 0 {
		t := l.queue[0]
		l.queue = l.queue[1:]
		if err := l.startOne(t); err != nil {
			return err
		}
	}
	return nil
}

func (l *Local) startOne(t *Trial) error {
	if err := os.MkdirAll(logDir(l.Dir), 0o755); err != nil {
		return err
	}
	logf, err := os.OpenFile(filepath.Join(logDir(l.Dir), t.ID+".log"), os.O_CREATE|os.O_APPEND|os.O_WRONLY, 0o644)
	if err != nil {
		return err
	}
	args := append(slices.Clone(l.Command[1:]), "trial", "run", l.Dir, t.ID, "--threads", strconv.Itoa(l.threads()))
	cmd := exec.Command(l.Command[0], args...)
	cmd.Stdout, cmd.Stderr = logf, logf
	// The trial inherits this process's environment (what cmd.Environ
	// returns for a nil Env) plus the backend's variables.
	cmd.Env = append(cmd.Environ(), l.Env...)
	cmd.SysProcAttr = trialProcAttr()
	if err := cmd.Start(); err != nil {
		logf.Close()
		return fmt.Errorf("start trial %s: %w", t.ID, err)
	}
	t.State, t.Job = StateRunning, strconv.Itoa(cmd.Process.Pid)
	l.running[t.ID] = cmd
	go func() {
		err := cmd.Wait()
		logf.Close()
		state := "exit 0"
		var ee *exec.ExitError
		if errors.As(err, &ee) {
			state = ee.ProcessState.String()
		} else if err != nil {
			state = err.Error()
		}
		l.mu.Lock()
		delete(l.running, t.ID)
		l.ended = append(l.ended, Ended{ID: t.ID, State: state})
		l.mu.Unlock()
	}()
	return nil
}

// Poll reports ended processes and starts queued trials in their slots.
func (l *Local) Poll(ctx context.Context) ([]Ended, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	out := l.ended
	l.ended = nil
	return out, l.startLocked()
}

// Stop sends SIGTERM to a running trial, or drops a queued one.
func (l *Local) Stop(t *Trial) error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for i, q := range l.queue {
		if q.ID == t.ID {
			l.queue = slices.Delete(l.queue, i, i+1)
			l.ended = append(l.ended, Ended{ID: t.ID, State: "not started"})
			return nil
		}
	}
	if cmd, ok := l.running[t.ID]; ok {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			return fmt.Errorf("stop trial %s (pid %d): %w", t.ID, cmd.Process.Pid, err)
		}
	}
	return nil
}

// StopAll drops the queue and sends SIGTERM to every running trial.
func (l *Local) StopAll() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	for _, q := range l.queue {
		l.ended = append(l.ended, Ended{ID: q.ID, State: "not started"})
	}
	l.queue = nil
	var errs []error
	for id, cmd := range l.running {
		if err := cmd.Process.Signal(syscall.SIGTERM); err != nil && !errors.Is(err, os.ErrProcessDone) {
			errs = append(errs, fmt.Errorf("stop trial %s: %w", id, err))
		}
	}
	return errors.Join(errs...)
}
