package wandb

import (
	"context"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"

	"lens/kv"
)

// Result says what an upload did for one run.
type Result struct {
	RunID    string // lens run id
	WandbID  string // W&B run id
	URL      string // the run's page
	Sent     int    // history lines sent now
	Skipped  int    // history lines the server already had
	Complete bool   // the run is marked finished on W&B
}

// target is one W&B run on one server.
type target struct {
	c       *client
	entity  string
	project string
	info    runInfo
	chunk   int
}

// connect creates or updates the run on the server (upsertBucket) and
// asks where its history stands (historyLineCount and the last _step of
// historyTail, the SDK's resume query).
func connect(ctx context.Context, c *client, o Options, project, entity string, info runInfo) (*target, serverHistory, error) {
	h := serverHistory{LastStep: -1}
	if project == "" {
		return nil, h, fmt.Errorf("wandb run %s: no project given", info.LensID)
	}
	if c.key == "" {
		return nil, h, fmt.Errorf("wandb run %s: %s is not set", info.LensID, EnvAPIKey)
	}
	if entity == "" {
		var err error
		if entity, err = c.viewerEntity(ctx); err != nil {
			return nil, h, err
		}
	}
	entity, n, err := c.upsert(ctx, entity, project, info)
	if err != nil {
		return nil, h, err
	}
	t := &target{c: c, entity: entity, project: project, info: info, chunk: o.ChunkLines}
	h, err = c.history(ctx, entity, project, info.ID)
	if err != nil {
		return nil, h, err
	}
	if h.Lines == 0 && n > 0 {
		h.Lines = n // a server that answers upsertBucket's count only
	}
	return t, h, nil
}

// url is the run's page: the app next to the API.
func (t *target) url() string {
	base := t.c.base
	if base == DefaultBaseURL {
		base = "https://wandb.ai"
	}
	return fmt.Sprintf("%s/%s/%s/runs/%s", base, t.entity, t.project, t.info.ID)
}

// errGap is a server with fewer lines than come before the first line at
// hand: sending would leave a hole.
var errGap = errors.New("the server is missing history lines that are not in this upload")

// resumePoint is the index of the first of lines (sorted by step, lines[0]
// at server line base) that the server does not have, judged by the step
// of its last line when known and by its line count otherwise.
func resumePoint(lines []line, base int, h serverHistory) (int, error) {
	var k int
	if h.LastStep >= 0 {
		k, _ = slices.BinarySearchFunc(lines, h.LastStep+1, func(l line, s int) int { return l.step - s })
	} else {
		k = min(h.Lines-base, len(lines))
	}
	if k <= 0 && h.Lines < base {
		return 0, fmt.Errorf("%w (server has %d lines, these start at line %d)", errGap, h.Lines, base)
	}
	return max(k, 0), nil
}

// push sends lines[k:], lines[k] at server line offset, in chunks, calling
// ack(offset, k) after each chunk the server took. When a request fails in
// a way that leaves it unknown whether the server took the lines (the
// connection dropped, a 5xx), the server is asked where history stands
// before the next try, so lines are neither sent twice nor skipped.
func (t *target) push(ctx context.Context, lines []line, k, offset int, ack func(offset, k int) error) (int, int, error) {
	failures := 0
	for k < len(lines) {
		end := min(k+t.chunk, len(lines))
		content := make([]string, 0, end-k)
		for _, l := range lines[k:end] {
			content = append(content, l.text)
		}
		req := fsRequest{Files: map[string]fsFile{historyFile: {Offset: offset, Content: content}}}
		err := t.c.fileStream(ctx, t.entity, t.project, t.info.ID, req)
		if err == nil {
			offset += end - k
			k = end
			failures = 0
			if ack != nil {
				if err := ack(offset, k); err != nil {
					return k, offset, err
				}
			}
			continue
		}
		what := fmt.Sprintf("wandb file_stream %s line %d", t.info.ID, offset)
		if !retryable(err) {
			return k, offset, fmt.Errorf("%s: %w", what, err)
		}
		failures++
		if failures >= t.c.retry.Attempts {
			return k, offset, fmt.Errorf("%s: gave up after %d attempts: %w", what, failures, err)
		}
		d := t.c.policy().Wait(failures, err)
		t.c.log.Warn("wandb: sending history failed, retrying", "run", t.info.ID, "line", offset, "wait", d, "err", err)
		if serr := t.c.sleep(ctx, d); serr != nil {
			return k, offset, fmt.Errorf("%s: %w (after: %v)", what, serr, err)
		}
		h, herr := t.c.history(ctx, t.entity, t.project, t.info.ID)
		if herr != nil || h.Lines <= offset {
			continue // nothing new arrived (or no answer): resend the same chunk
		}
		// The server took lines whose answer was lost: go on after them.
		nk := k + (h.Lines - offset)
		if h.LastStep >= 0 {
			nk, _ = slices.BinarySearchFunc(lines, h.LastStep+1, func(l line, s int) int { return l.step - s })
		}
		k, offset = min(max(nk, k), len(lines)), h.Lines
		if ack != nil {
			if err := ack(offset, k); err != nil {
				return k, offset, err
			}
		}
	}
	return k, offset, nil
}

// finish sends the summary and marks the run complete with exitCode.
func (t *target) finish(ctx context.Context, sum string, exitCode int) error {
	done := true
	req := fsRequest{Complete: &done, ExitCode: &exitCode}
	if sum != "" {
		req.Files = map[string]fsFile{summaryFile: {Offset: 0, Content: []string{sum}}}
	}
	// Repeating it is harmless (the summary replaces itself), so plain
	// retries are safe here.
	return t.c.withRetry(ctx, "wandb finish "+t.info.ID, func() error {
		return t.c.fileStream(ctx, t.entity, t.project, t.info.ID, req)
	})
}

// Sync uploads the offline folders in dir (a folder of run folders, or
// one run folder), resuming where an earlier sync stopped. Project and
// Entity in opts, when set, override the ones the folders name. It goes on
// past a failing run and returns every run's result and the errors.
func Sync(ctx context.Context, dir string, opts Options) ([]Result, error) {
	o := opts.withDefaults()
	dirs, err := runFolders(dir)
	if err != nil {
		return nil, err
	}
	c := newClient(o)
	var out []Result
	var errs []error
	for _, d := range dirs {
		r, err := syncFolder(ctx, c, o, d)
		if err != nil {
			errs = append(errs, err)
			if ctx.Err() != nil {
				break
			}
			continue
		}
		out = append(out, r)
	}
	return out, errors.Join(errs...)
}

// runFolders lists the run folders under dir, or dir itself if it is one.
func runFolders(dir string) ([]string, error) {
	if _, err := os.Stat(filepath.Join(dir, runFileName)); err == nil {
		return []string{dir}, nil
	}
	entries, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("wandb sync: %w", err)
	}
	var out []string
	for _, e := range entries {
		if _, err := os.Stat(filepath.Join(dir, e.Name(), runFileName)); e.IsDir() && err == nil {
			out = append(out, filepath.Join(dir, e.Name()))
		}
	}
	return out, nil
}

func syncFolder(ctx context.Context, c *client, o Options, dir string) (Result, error) {
	f, err := readFolder(dir)
	if err != nil {
		return Result{}, err
	}
	project, entity := f.run.Project, f.run.Entity
	if o.Project != "" {
		project = o.Project
	}
	if o.Entity != "" {
		entity = o.Entity
	}
	res := Result{RunID: f.run.LensID, WandbID: f.run.ID}
	finished := f.run.State != stateRunning
	end := f.run.HistoryOffset + len(f.lines)
	cur, err := readCursor(dir)
	if err != nil {
		return res, err
	}
	want := cursor{BaseURL: c.base, Entity: entity, Project: project, WandbID: f.run.ID}
	if cur.Complete && cur.Acked >= end && finished && cur.covers(want) {
		res.Skipped, res.Complete = len(f.lines), true
		return res, nil // nothing new since the last complete sync
	}
	if !finished && o.Store != nil {
		// A live upload that gave up leaves its folder unfinished; the store
		// has the whole run.
		if meta, err := o.Store.GetRun(f.run.LensID); err == nil && meta.Status != kv.StatusRunning {
			return syncFromStore(ctx, c, o, dir, f, meta, want)
		}
	}
	t, h, err := connect(ctx, c, o, project, entity, f.run.runInfo)
	if err != nil {
		return res, fmt.Errorf("offline run %s: %w", dir, err)
	}
	res.URL = t.url()
	want.Entity = t.entity
	k, err := resumePoint(f.lines, f.run.HistoryOffset, h)
	if err != nil {
		return res, fmt.Errorf("offline run %s: %w; upload it from the store with `lens wandb upload %s`", dir, err, f.run.LensID)
	}
	offset := h.Lines
	if cur.covers(want) && cur.Acked > offset && cur.Acked <= end {
		// The server acknowledged more than it now reports (its count may
		// lag): going back would send lines twice.
		o.Logger.Warn("wandb: the server reports fewer history lines than it acknowledged; going on after the acknowledged ones",
			"run", f.run.ID, "server", offset, "acknowledged", cur.Acked)
		k, offset = cur.Acked-f.run.HistoryOffset, cur.Acked
	}
	res.Skipped = k
	ack := func(off, _ int) error {
		return writeCursor(dir, cursor{BaseURL: want.BaseURL, Entity: want.Entity, Project: want.Project, WandbID: want.WandbID, Acked: off})
	}
	if err := ack(offset, k); err != nil {
		return res, err
	}
	nk, offset, err := t.push(ctx, f.lines, k, offset, ack)
	res.Sent = nk - k
	if err != nil {
		return res, fmt.Errorf("offline run %s: %w (sent %d of %d lines; run sync again to go on)", dir, err, nk, len(f.lines))
	}
	if !finished {
		return res, nil // still running or died: more may come
	}
	if err := t.finish(ctx, f.run.Summary, f.run.ExitCode); err != nil {
		return res, fmt.Errorf("offline run %s: %w", dir, err)
	}
	res.Complete = true
	c2 := want
	c2.Acked, c2.Complete = offset, true
	return res, writeCursor(dir, c2)
}

// syncFromStore finishes the upload of folder f from the store's record
// of its run, and marks the folder finished and synced.
func syncFromStore(ctx context.Context, c *client, o Options, dir string, f *folder, meta kv.RunMeta, want cursor) (Result, error) {
	o.Logger.Info("wandb: the offline folder stops before the run's end; uploading the run from the store", "run", meta.ID, "dir", dir)
	res, t, offset, err := uploadStored(ctx, c, o, o.Store, meta, want.Project, want.Entity)
	if err != nil || !res.Complete {
		return res, err
	}
	want.Entity = t.entity
	want.Acked, want.Complete = offset, true
	f.run.State, f.run.ExitCode = stateFailed, 1
	if code, _ := exitCode(meta.Status); code == 0 {
		f.run.State, f.run.ExitCode = stateFinished, 0
	}
	if err := f.writeRun(); err != nil {
		return res, err
	}
	return res, writeCursor(dir, want)
}

// SyncRun uploads run runID straight from the store: its config and one
// history line per step, going on after the lines the server already has
// (by historyLineCount and the step of its last line), so a run trained
// without W&B, or whose live upload stopped, can be sent later.
func SyncRun(ctx context.Context, st *kv.Store, runID string, opts Options) (Result, error) {
	o := opts.withDefaults()
	meta, err := st.GetRun(runID)
	if err != nil {
		return Result{}, fmt.Errorf("wandb upload: %w", err)
	}
	r, _, _, err := uploadStored(ctx, newClient(o), o, st, meta, o.Project, o.Entity)
	return r, err
}

// uploadStored is SyncRun for run meta into project and entity; it also
// returns the run's target and the server line after the last one sent.
func uploadStored(ctx context.Context, c *client, o Options, st *kv.Store, meta kv.RunMeta, project, entity string) (Result, *target, int, error) {
	info, err := infoOf(meta)
	if err != nil {
		return Result{}, nil, 0, err
	}
	res := Result{RunID: meta.ID, WandbID: info.ID}
	lines, sum, err := storeLines(st, meta)
	if err != nil {
		return res, nil, 0, fmt.Errorf("wandb upload %s: %w", meta.ID, err)
	}
	t, h, err := connect(ctx, c, o, project, entity, info)
	if err != nil {
		return res, nil, 0, err
	}
	res.URL = t.url()
	k, err := resumePoint(lines, 0, h)
	if err != nil {
		return res, t, h.Lines, fmt.Errorf("wandb upload %s: %w", meta.ID, err)
	}
	res.Skipped = k
	nk, offset, err := t.push(ctx, lines, k, h.Lines, nil)
	res.Sent = nk - k
	if err != nil {
		return res, t, offset, fmt.Errorf("wandb upload %s: %w (sent %d of %d lines; run it again to go on)", meta.ID, err, nk, len(lines))
	}
	code, finished := exitCode(meta.Status)
	if !finished {
		return res, t, offset, nil
	}
	if err := t.finish(ctx, formatObject(sum), code); err != nil {
		return res, t, offset, err
	}
	res.Complete = true
	return res, t, offset, nil
}

// String is a one-line account of r.
func (r Result) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s -> %s: %d lines sent, %d already there", r.RunID, r.WandbID, r.Sent, r.Skipped)
	if r.Complete {
		b.WriteString(", finished")
	}
	if r.URL != "" {
		b.WriteString(", " + r.URL)
	}
	return b.String()
}
