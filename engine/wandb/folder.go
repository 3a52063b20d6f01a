package wandb

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"time"
)

// An offline folder, <dir>/<lens run id>/, holds one run ready to upload:
//
//	run.json       runFile: the W&B run (id, name, config), project,
//	               entity, state, exit code, summary
//	history.jsonl  wandb-history.jsonl lines, one per step; line i is
//	               server line run.json history_offset + i
//	sync.json      cursor: what the server has acknowledged
//
// History is appended and fsynced in batches; run.json and sync.json are
// replaced atomically (temporary file, fsync, rename).
const (
	runFileName     = "run.json"
	historyFileName = "history.jsonl"
	cursorFileName  = "sync.json"
)

// Run states in run.json.
const (
	stateRunning  = "running"
	stateFinished = "finished"
	stateFailed   = "failed"
)

// runFile is run.json.
type runFile struct {
	runInfo
	Project string `json:"project"`
	Entity  string `json:"entity,omitempty"`
	State   string `json:"state"`
	// ExitCode is sent with the run's completion (0 done, 1 otherwise).
	ExitCode int `json:"exitcode"`
	// Summary is wandb-summary.json (extended JSON), set when finished.
	Summary string `json:"summary,omitempty"`
	// HistoryOffset is the server line of history.jsonl's first line: a
	// run resumed online after its folder was lost starts a new folder at
	// the server's line count.
	HistoryOffset int       `json:"history_offset"`
	Created       time.Time `json:"created"`
}

// cursor is sync.json, rewritten after every chunk the server accepts.
type cursor struct {
	BaseURL  string `json:"base_url"`
	Entity   string `json:"entity"`
	Project  string `json:"project"`
	WandbID  string `json:"wandb_id"`
	Acked    int    `json:"acked"` // server history lines known to be there
	Complete bool   `json:"complete"`
}

// covers says whether c is a cursor for the run o names; an empty entity
// in o (the key's default) matches any.
func (c cursor) covers(o cursor) bool {
	return c.BaseURL == o.BaseURL && c.Project == o.Project && c.WandbID == o.WandbID && (o.Entity == "" || c.Entity == o.Entity)
}

// folder is an open offline folder.
type folder struct {
	dir     string
	run     runFile
	lines   []line   // history.jsonl as read, then as appended
	hist    *os.File // open for appending (writers only)
	pending []byte   // appended lines not yet written
}

// readFolder reads an offline folder without changing it. A last history
// line without its newline (a write cut short by a crash) is ignored.
func readFolder(dir string) (*folder, error) {
	f := &folder{dir: dir}
	b, err := os.ReadFile(filepath.Join(dir, runFileName))
	if err != nil {
		return nil, fmt.Errorf("offline run %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &f.run); err != nil {
		return nil, fmt.Errorf("offline run %s: %s: %w", dir, runFileName, err)
	}
	if f.run.ID == "" {
		return nil, fmt.Errorf("offline run %s: %s has no wandb_id", dir, runFileName)
	}
	if _, _, err := f.readHistory(); err != nil {
		return nil, err
	}
	return f, nil
}

// readHistory loads history.jsonl into f.lines and returns the length of
// its complete lines, and whether there is a torn tail after them.
func (f *folder) readHistory() (int64, bool, error) {
	path := filepath.Join(f.dir, historyFileName)
	b, err := os.ReadFile(path)
	if errors.Is(err, fs.ErrNotExist) {
		return 0, false, nil
	}
	if err != nil {
		return 0, false, fmt.Errorf("offline run %s: %w", f.dir, err)
	}
	end := bytes.LastIndexByte(b, '\n') + 1
	f.lines = f.lines[:0]
	for i, l := range bytes.Split(b[:end], []byte{'\n'}) {
		if len(l) == 0 {
			continue
		}
		step, ok := lineStep(string(l))
		if !ok {
			return 0, false, fmt.Errorf("offline run %s: %s line %d has no _step: %.80q", f.dir, historyFileName, i+1, l)
		}
		f.lines = append(f.lines, line{step: step, text: string(l)})
	}
	return int64(end), end < len(b), nil
}

// openFolder opens or creates the offline folder of run info under root
// for writing. An existing folder keeps its history (a resumed run goes
// on after its last step); run.json is refreshed from info.
func openFolder(root string, info runInfo, project, entity string) (*folder, error) {
	dir := filepath.Join(root, info.LensID)
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("offline folder %s: %w", dir, err)
	}
	f := &folder{dir: dir}
	if b, err := os.ReadFile(filepath.Join(dir, runFileName)); err == nil {
		if err := json.Unmarshal(b, &f.run); err != nil {
			return nil, fmt.Errorf("offline folder %s: %s: %w", dir, runFileName, err)
		}
	} else if !errors.Is(err, fs.ErrNotExist) {
		return nil, fmt.Errorf("offline folder %s: %w", dir, err)
	} else {
		f.run.Created = time.Now().UTC()
	}
	f.run.runInfo = info
	f.run.Project, f.run.Entity = project, entity
	f.run.State, f.run.ExitCode, f.run.Summary = stateRunning, 0, ""
	end, torn, err := f.readHistory()
	if err != nil {
		return nil, err
	}
	path := filepath.Join(dir, historyFileName)
	h, err := os.OpenFile(path, os.O_CREATE|os.O_WRONLY, 0o600)
	if err != nil {
		return nil, fmt.Errorf("offline folder %s: %w", dir, err)
	}
	if torn {
		if err := h.Truncate(end); err != nil {
			h.Close()
			return nil, fmt.Errorf("offline folder %s: drop the torn last line of %s: %w", dir, historyFileName, err)
		}
	}
	if _, err := h.Seek(end, 0); err != nil {
		h.Close()
		return nil, fmt.Errorf("offline folder %s: %w", dir, err)
	}
	f.hist = h
	if err := f.writeRun(); err != nil {
		h.Close()
		return nil, err
	}
	return f, nil
}

// lastStep is the step of the folder's last history line, -1 if none.
func (f *folder) lastStep() int {
	if len(f.lines) == 0 {
		return -1
	}
	return f.lines[len(f.lines)-1].step
}

// restart empties the history so that it starts at server line offset.
func (f *folder) restart(offset int) error {
	if err := f.hist.Truncate(0); err != nil {
		return fmt.Errorf("offline folder %s: %w", f.dir, err)
	}
	if _, err := f.hist.Seek(0, 0); err != nil {
		return fmt.Errorf("offline folder %s: %w", f.dir, err)
	}
	f.lines, f.pending = nil, nil
	f.run.HistoryOffset = offset
	return f.writeRun()
}

// append buffers l; flush writes it.
func (f *folder) append(l line) {
	f.lines = append(f.lines, l)
	f.pending = append(append(f.pending, l.text...), '\n')
}

// flush writes buffered lines and fsyncs them.
func (f *folder) flush() error {
	if len(f.pending) == 0 || f.hist == nil {
		return nil
	}
	if _, err := f.hist.Write(f.pending); err != nil {
		return fmt.Errorf("offline folder %s: write %s: %w", f.dir, historyFileName, err)
	}
	if err := f.hist.Sync(); err != nil {
		return fmt.Errorf("offline folder %s: sync %s: %w", f.dir, historyFileName, err)
	}
	f.pending = f.pending[:0]
	return nil
}

// close flushes and closes the history file.
func (f *folder) close() error {
	if f.hist == nil {
		return nil
	}
	err := f.flush()
	if cerr := f.hist.Close(); err == nil {
		err = cerr
	}
	f.hist = nil
	return err
}

func (f *folder) writeRun() error {
	return writeJSON(filepath.Join(f.dir, runFileName), f.run)
}

// readCursor reads sync.json; a missing one is the zero cursor.
func readCursor(dir string) (cursor, error) {
	var c cursor
	b, err := os.ReadFile(filepath.Join(dir, cursorFileName))
	if errors.Is(err, fs.ErrNotExist) {
		return c, nil
	}
	if err != nil {
		return c, fmt.Errorf("offline run %s: %w", dir, err)
	}
	if err := json.Unmarshal(b, &c); err != nil {
		return c, fmt.Errorf("offline run %s: %s: %w", dir, cursorFileName, err)
	}
	return c, nil
}

func writeCursor(dir string, c cursor) error {
	return writeJSON(filepath.Join(dir, cursorFileName), c)
}

// writeJSON replaces path with v as JSON, durably: a crash leaves the old
// file or the new one, never a mix.
func writeJSON(path string, v any) error {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	tmp := path + ".tmp"
	f, err := os.OpenFile(tmp, os.O_CREATE|os.O_WRONLY|os.O_TRUNC, 0o600)
	if err != nil {
		return fmt.Errorf("write %s: %w", path, err)
	}
	_, err = f.Write(append(b, '\n'))
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp, path)
	}
	if err != nil {
		os.Remove(tmp)
		return fmt.Errorf("write %s: %w", path, err)
	}
	if d, err := os.Open(filepath.Dir(path)); err == nil {
		d.Sync() // make the rename itself durable; not every filesystem supports it
		d.Close()
	}
	return nil
}
