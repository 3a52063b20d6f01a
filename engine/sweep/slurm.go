package sweep

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"sort"
	"strconv"
	"strings"
)

// SlurmOptions are the resources of each array task and how to submit.
type SlurmOptions struct {
	Partition   string   // --partition (default: the cluster's default)
	CPUsPerTask int      // --cpus-per-task, also the trial's threads (default 1)
	Mem         string   // --mem, e.g. "4G"
	Time        string   // --time, e.g. "01:00:00"
	Device      string   // "cuda" asks for GPUs (--gres=gpu:GPUs)
	GPUs        int      // GPUs per task when Device is "cuda" (default 1)
	MaxRunning  int      // the array's %M cap (default: no cap)
	JobName     string   // --job-name (default lens-SWEEP)
	Extra       []string // more sbatch options, verbatim ("--account=abc")
	Lens        string   // the lens binary on the compute nodes (default this one)
}

// Slurm submits a sweep's trials as one array job (sbatch --array), follows
// it with squeue (and sacct where accounting runs), resubmits single tasks
// with sbatch --array=<indexes>, and cancels tasks with scancel.
type Slurm struct {
	Dir  string
	Opts SlurmOptions

	index map[string]int    // trial id -> array index (line of trials.txt)
	tasks map[string]*Trial // "JOB_TASK" -> trial, for tasks not yet seen ending
	gone  map[string]int    // "JOB_TASK" -> polls in a row squeue and sacct did not know it
}

// Terminal states of a Slurm job (squeue %T, sacct State).
var slurmTerminal = map[string]bool{
	"COMPLETED": true, "FAILED": true, "CANCELLED": true, "TIMEOUT": true, "OUT_OF_MEMORY": true,
	"NODE_FAIL": true, "PREEMPTED": true, "BOOT_FAIL": true, "DEADLINE": true,
}

// NewSlurm writes trials.txt (every trial of the sweep, one per line: the
// array index is the line number minus one) and sweep.sbatch.
func NewSlurm(sw *Sweep, opts SlurmOptions) (*Slurm, error) {
	if opts.CPUsPerTask == 0 {
		opts.CPUsPerTask = 1
	}
	if opts.CPUsPerTask < 0 || opts.MaxRunning < 0 || opts.GPUs < 0 {
		return nil, fmt.Errorf("backend slurm: cpus_per_task, max_running and gpus must not be negative")
	}
	if opts.Device != "" && opts.Device != "cpu" && opts.Device != "cuda" {
		return nil, fmt.Errorf("backend slurm: device=%q: want cpu or cuda", opts.Device)
	}
	if opts.Device == "cuda" && opts.GPUs == 0 {
		opts.GPUs = 1
	}
	if opts.JobName == "" {
		opts.JobName = "lens-" + unsafeName.ReplaceAllString(sw.Name, "_")
	}
	if opts.Lens == "" {
		exe, err := os.Executable()
		if err != nil {
			return nil, fmt.Errorf("backend slurm: cannot find the lens binary: %w", err)
		}
		opts.Lens = exe
	}
	dir, err := filepath.Abs(sw.Dir())
	if err != nil {
		return nil, err
	}
	s := &Slurm{Dir: dir, Opts: opts, index: map[string]int{}, tasks: map[string]*Trial{}, gone: map[string]int{}}
	var lines []string
	for i, t := range sw.Trials {
		s.index[t.ID] = i
		lines = append(lines, t.ID)
	}
	if err := writeFileAtomic(filepath.Join(dir, "trials.txt"), []byte(strings.Join(lines, "\n")+"\n")); err != nil {
		return nil, err
	}
	if err := os.MkdirAll(logDir(dir), 0o755); err != nil {
		return nil, err
	}
	if err := writeFileAtomic(s.scriptPath(), []byte(s.Script(len(lines)))); err != nil {
		return nil, err
	}
	return s, nil
}

// Name is "slurm".
func (s *Slurm) Name() string { return BackendSlurm }

func (s *Slurm) scriptPath() string { return filepath.Join(s.Dir, "sweep.sbatch") }

// Script is the batch script: an array over trials.txt whose every task
// runs `lens trial run DIR ID`. --requeue lets Slurm rerun a preempted or
// requeued task; the trial then resumes from its checkpoint.
func (s *Slurm) Script(n int) string {
	o := s.Opts
	var b strings.Builder
	b.WriteString("#!/bin/bash\n# Written by lens for the sweep in this directory; lens submits it with sbatch.\n")
	fmt.Fprintf(&b, "#SBATCH --job-name=%s\n", o.JobName)
	fmt.Fprintf(&b, "#SBATCH --array=%s\n", s.arraySpec(seq(n)))
	fmt.Fprintf(&b, "#SBATCH --cpus-per-task=%d\n", o.CPUsPerTask)
	if o.Mem != "" {
		fmt.Fprintf(&b, "#SBATCH --mem=%s\n", o.Mem)
	}
	if o.Time != "" {
		fmt.Fprintf(&b, "#SBATCH --time=%s\n", o.Time)
	}
	if o.Partition != "" {
		fmt.Fprintf(&b, "#SBATCH --partition=%s\n", o.Partition)
	}
	if o.Device == "cuda" {
		fmt.Fprintf(&b, "#SBATCH --gres=gpu:%d\n", o.GPUs)
	}
	for _, e := range o.Extra {
		fmt.Fprintf(&b, "#SBATCH %s\n", e)
	}
	b.WriteString("#SBATCH --requeue\n#SBATCH --open-mode=append\n")
	fmt.Fprintf(&b, "#SBATCH --output=%s\n", filepath.Join(s.Dir, "logs", "%A_%a.out"))
	b.WriteString("set -eu\n")
	fmt.Fprintf(&b, "trial=$(sed -n \"$((SLURM_ARRAY_TASK_ID+1))p\" %s)\n", shellQuote(filepath.Join(s.Dir, "trials.txt")))
	fmt.Fprintf(&b, "exec %s trial run %s \"$trial\" --threads \"${SLURM_CPUS_PER_TASK:-%d}\"\n",
		shellQuote(o.Lens), shellQuote(s.Dir), o.CPUsPerTask)
	return b.String()
}

func seq(n int) []int {
	out := make([]int, n)
	for i := range out {
		out[i] = i
	}
	return out
}

// arraySpec writes indexes as sbatch --array ranges ("0-3,7,9-10%M").
func (s *Slurm) arraySpec(idx []int) string {
	idx = slices.Clone(idx)
	sort.Ints(idx)
	var parts []string
	for i := 0; i < len(idx); {
		j := i
		for j+1 < len(idx) && idx[j+1] == idx[j]+1 {
			j++
		}
		if i == j {
			parts = append(parts, strconv.Itoa(idx[i]))
		} else {
			parts = append(parts, fmt.Sprintf("%d-%d", idx[i], idx[j]))
		}
		i = j + 1
	}
	spec := strings.Join(parts, ",")
	if s.Opts.MaxRunning > 0 {
		spec += "%" + strconv.Itoa(s.Opts.MaxRunning)
	}
	return spec
}

func shellQuote(s string) string {
	if s != "" && strings.IndexFunc(s, func(r rune) bool {
		return !(r == '/' || r == '.' || r == '_' || r == '-' || r == '+' || r == ':' ||
			(r >= '0' && r <= '9') || (r >= 'a' && r <= 'z') || (r >= 'A' && r <= 'Z'))
	}) < 0 {
		return s
	}
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// run runs a Slurm command and returns its stdout; a failure carries the
// command's stderr verbatim.
func run(ctx context.Context, name string, args ...string) (string, error) {
	cmd := exec.CommandContext(ctx, name, args...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		msg := strings.TrimSpace(errb.String())
		if msg == "" {
			msg = strings.TrimSpace(out.String())
		}
		if msg == "" {
			msg = err.Error()
		}
		return out.String(), fmt.Errorf("%s %s: %s", name, strings.Join(args, " "), msg)
	}
	return out.String(), nil
}

// Submit submits the trials as one array job.
func (s *Slurm) Submit(ctx context.Context, trials []*Trial) error {
	if len(trials) == 0 {
		return nil
	}
	var idx []int
	for _, t := range trials {
		i, ok := s.index[t.ID]
		if !ok {
			return fmt.Errorf("backend slurm: trial %s is not in trials.txt", t.ID)
		}
		idx = append(idx, i)
	}
	out, err := run(ctx, "sbatch", "--parsable", "--array="+s.arraySpec(idx), s.scriptPath())
	if err != nil {
		return fmt.Errorf("sbatch rejected the sweep's array job: %w", err)
	}
	// --parsable prints "JOBID" or "JOBID;CLUSTER".
	job, _, _ := strings.Cut(strings.TrimSpace(out), ";")
	if _, err := strconv.Atoi(job); err != nil {
		return fmt.Errorf("sbatch printed %q, not a job id", strings.TrimSpace(out))
	}
	for _, t := range trials {
		t.State, t.Job = StateQueued, fmt.Sprintf("%s_%d", job, s.index[t.ID])
		s.tasks[t.Job] = t
		delete(s.gone, t.Job)
	}
	return nil
}

func (s *Slurm) jobIDs() []string {
	seen := map[string]bool{}
	var out []string
	for task := range s.tasks {
		job, _, _ := strings.Cut(task, "_")
		if !seen[job] {
			seen[job] = true
			out = append(out, job)
		}
	}
	sort.Strings(out)
	return out
}

// Poll asks squeue for the state of every task, including finished ones
// slurmctld still remembers (-t all), and sacct for the ones it forgot. A
// task neither knows for three polls in a row is taken as ended; the
// trial's shard then says how.
func (s *Slurm) Poll(ctx context.Context) ([]Ended, error) {
	jobs := s.jobIDs()
	if len(jobs) == 0 {
		return nil, nil
	}
	out, err := run(ctx, "squeue", "-h", "-r", "-t", "all", "-j", strings.Join(jobs, ","), "-o", "%i %T")
	if err != nil && !strings.Contains(err.Error(), "Invalid job id") {
		return nil, err
	}
	states := parseStates(out, " ")
	var missing []string
	for task := range s.tasks {
		if _, ok := states[task]; !ok {
			missing = append(missing, task)
		}
	}
	if len(missing) > 0 {
		// Accounting may be off (no slurmdbd): sacct then fails, and the
		// three-polls rule decides.
		if acct, err := run(ctx, "sacct", "-n", "-P", "-X", "-j", strings.Join(jobs, ","), "-o", "JobID,State"); err == nil {
			for task, st := range parseStates(acct, "|") {
				if _, ok := states[task]; !ok {
					states[task] = st
				}
			}
		}
	}
	var ended []Ended
	for task, t := range s.tasks {
		st, ok := states[task]
		switch {
		case !ok:
			if s.gone[task]++; s.gone[task] >= 3 {
				ended = append(ended, Ended{ID: t.ID, State: "unknown to squeue and sacct"})
			}
		case slurmTerminal[st]:
			ended = append(ended, Ended{ID: t.ID, State: st})
		case st == "RUNNING" || st == "COMPLETING":
			t.State = StateRunning
			delete(s.gone, task)
		default:
			t.State = StateQueued // PENDING, REQUEUED, SUSPENDED...
			delete(s.gone, task)
		}
	}
	for _, e := range ended {
		t := s.tasks[s.trialTask(e.ID)]
		delete(s.tasks, t.Job)
		delete(s.gone, t.Job)
	}
	return ended, nil
}

func (s *Slurm) trialTask(id string) string {
	for task, t := range s.tasks {
		if t.ID == id {
			return task
		}
	}
	return ""
}

// parseStates reads "JOB_TASK STATE" lines (sacct's "CANCELLED by 0" is
// cut to its first word).
func parseStates(out, sep string) map[string]string {
	m := map[string]string{}
	for _, line := range strings.Split(out, "\n") {
		id, st, ok := strings.Cut(strings.TrimSpace(line), sep)
		if !ok {
			continue
		}
		st, _, _ = strings.Cut(strings.TrimSpace(st), " ")
		m[id] = strings.TrimRight(st, "+")
	}
	return m
}

// Stop cancels one task with scancel (SIGTERM first, so the trial can
// checkpoint).
func (s *Slurm) Stop(t *Trial) error {
	if t.Job == "" {
		return nil
	}
	if _, err := run(context.Background(), "scancel", t.Job); err != nil {
		return fmt.Errorf("stop trial %s: %w", t.ID, err)
	}
	return nil
}

// StopAll cancels every array job of the sweep.
func (s *Slurm) StopAll() error {
	jobs := s.jobIDs()
	if len(jobs) == 0 {
		return nil
	}
	_, err := run(context.Background(), "scancel", jobs...)
	if err != nil {
		return errors.New("stop the sweep's jobs: " + err.Error())
	}
	return nil
}
