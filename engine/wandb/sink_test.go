package wandb

import (
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/stretchr/testify/require"

	"lens/engine/runs"
	"lens/engine/wandb/wandbtest"
	"lens/kv"
)

// A real training run logged online: one line per step with every metric
// the store has at that step (eval ones merged into their step's line),
// config equal to the spec, summary and completion at the end.
func TestOnlineSinkOnTrainingRun(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	dir := t.TempDir()
	sink, err := NewSink(testOpts(srv, dir))
	require.NoError(t, err)
	meta := trainRun(t, st, 8, sink)
	require.Equal(t, ModeOnline, sink.Mode())
	r := requireRun(t, srv, st, meta, 0)
	require.Len(t, r.Lines, 9, "steps 0 (the eval before training) to 8")
	require.Equal(t, []string{"test"}, r.Tags)
	for i, l := range r.Lines {
		m, err := ParseLine(l)
		require.NoError(t, err)
		require.Equal(t, i%2 == 0, m["eval/opticks"] != 0, "eval/opticks in the lines of eval steps only (step %d)", i)
		if i > 0 {
			require.Contains(t, m, "loss")
		}
	}
	require.Zero(t, srv.BadAuth())
	events, err := st.Events(meta.ID)
	require.NoError(t, err)
	for _, e := range events {
		require.NotEqual(t, "sink_error", e.Kind, e.Message)
	}
	// The mirror is complete and marked synced: a later sync sends nothing.
	c, err := readCursor(filepath.Join(dir, meta.ID))
	require.NoError(t, err)
	require.True(t, c.Complete)
	require.Equal(t, 9, c.Acked)
	before := srv.Requests()
	res, err := Sync(t.Context(), dir, testOpts(srv, ""))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 0, res[0].Sent)
	require.Equal(t, before, srv.Requests(), "a synced folder needs no request")
}

// Offline, then Sync: the server ends with the same lines.
func TestOfflineThenSync(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	dir := t.TempDir()
	o := testOpts(srv, dir)
	o.Mode = ModeOffline
	sink, err := NewSink(o)
	require.NoError(t, err)
	meta := trainRun(t, st, 6, sink)
	require.Zero(t, srv.Requests(), "offline sends nothing")
	f, err := readFolder(filepath.Join(dir, meta.ID))
	require.NoError(t, err)
	require.Equal(t, stateFinished, f.run.State)
	requireLines(t, storeSteps(t, st, meta.ID), func() []string {
		var s []string
		for _, l := range f.lines {
			s = append(s, l.text)
		}
		return s
	}())

	res, err := Sync(t.Context(), dir, testOpts(srv, ""))
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 7, res[0].Sent)
	require.True(t, res[0].Complete)
	requireRun(t, srv, st, meta, 0)
}

// Without a key an online sink logs offline and says so once.
func TestMissingKeyFallsBackOffline(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	meta := syntheticRun(t, st, 10, 5)
	dir := t.TempDir()
	var logs logBuffer
	o := testOpts(srv, dir)
	o.APIKey, o.Logger = "", logs.logger()
	sink, err := NewSink(o)
	require.NoError(t, err)
	feed(t, sink, st, meta)
	require.Equal(t, ModeOffline, sink.Mode())
	require.Zero(t, srv.Requests())
	require.Equal(t, 1, strings.Count(logs.String(), EnvAPIKey+" is not set"), logs.String())
	require.Contains(t, logs.String(), "lens wandb sync")
	_, err = Sync(t.Context(), dir, testOpts(srv, ""))
	require.NoError(t, err)
	requireRun(t, srv, st, meta, 0)
}

// Metrics of a step that arrive in several calls make one line; steps
// that a resumed run logs again are not sent twice.
func TestSinkMergesAndResumes(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	meta := syntheticRun(t, st, 12, 4)
	dir := t.TempDir()
	o := testOpts(srv, dir)
	// First session: steps 0..7, then the process "dies" (no Finish).
	s1, err := NewSink(o)
	require.NoError(t, err)
	require.NoError(t, s1.Start(meta))
	all := storeSteps(t, st, meta.ID)
	for s := 0; s <= 7; s++ {
		for k, v := range all[s] {
			require.NoError(t, s1.Log(s, map[string]float64{k: v}))
		}
	}
	require.NoError(t, s1.Log(8, map[string]float64{"loss": all[8]["loss"]})) // emits step 7
	require.Eventually(t, func() bool {
		r := srv.Run(srv.Entity, "proj", RunID(meta.ID))
		return r != nil && len(r.Lines) == 8
	}, 5*time.Second, 5*time.Millisecond, "the sender sends steps 0..7")
	require.NoError(t, s1.dir.flush()) // the batch reached the disk before the "crash"
	s1.cancel()

	// Second session resumes from the checkpoint at step 4: steps 5..8
	// come again and must not be sent twice.
	s2, err := NewSink(o)
	require.NoError(t, err)
	require.NoError(t, s2.Start(meta))
	for s := 5; s <= 12; s++ {
		require.NoError(t, s2.Log(s, all[s]))
	}
	require.NoError(t, s2.Finish(meta))
	r := srv.Run(srv.Entity, "proj", RunID(meta.ID))
	require.Zero(t, r.Overlaps)
	requireLines(t, all, r.Lines)
	f, err := readFolder(filepath.Join(dir, meta.ID))
	require.NoError(t, err)
	require.Len(t, f.lines, 13, "the mirror has each step once too")
}

// A server that keeps failing: the sink gives up with an error naming the
// folder, runs records it once, and sync with the store finishes the run.
func TestSinkGivesUpThenSyncFinishes(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	dir := t.TempDir()
	srv.SetFault(func(r *wandbtest.Run, lines int) wandbtest.Fault {
		if len(r.Lines) >= 3 {
			return wandbtest.Fail500
		}
		return wandbtest.OK
	})
	o := testOpts(srv, dir)
	o.ChunkLines = 1
	var logs logBuffer
	o.Logger = logs.logger()
	sink, err := NewSink(o)
	require.NoError(t, err)
	meta := trainRun(t, st, 10, sink, &slowSink{d: 20 * time.Millisecond})
	events, err := st.Events(meta.ID)
	require.NoError(t, err)
	var msgs []string
	for _, e := range events {
		if e.Kind == "sink_error" {
			msgs = append(msgs, e.Message)
		}
	}
	require.Len(t, msgs, 1, "reported once")
	require.Contains(t, msgs[0], "W&B upload stopped")
	require.Contains(t, msgs[0], filepath.Join(dir, meta.ID))
	require.Contains(t, msgs[0], "lens wandb sync")
	require.NotContains(t, logs.String(), testKey)

	srv.SetFault(nil)
	o2 := testOpts(srv, "")
	o2.Store = st
	res, err := Sync(t.Context(), dir, o2)
	require.NoError(t, err)
	require.Len(t, res, 1)
	require.Equal(t, 3, res[0].Skipped)
	requireRun(t, srv, st, meta, 0)
	f, err := readFolder(filepath.Join(dir, meta.ID))
	require.NoError(t, err)
	require.Equal(t, stateFinished, f.run.State)
}

// slowSink slows training down so that the background sender gets to run.
type slowSink struct{ d time.Duration }

func (s *slowSink) Name() string                      { return "slow" }
func (s *slowSink) Start(kv.RunMeta) error            { return nil }
func (s *slowSink) Log(int, map[string]float64) error { time.Sleep(s.d); return nil }
func (s *slowSink) Finish(kv.RunMeta) error           { return nil }

var _ runs.Sink = (*slowSink)(nil)

// A torn last line (a crash mid-write) is dropped when the folder is
// opened again.
func TestFolderDropsTornLine(t *testing.T) {
	dir := t.TempDir()
	info := runInfo{ID: "lens-x", LensID: "x", DisplayName: "x", Config: map[string]any{}}
	f, err := openFolder(dir, info, "proj", "")
	require.NoError(t, err)
	f.append(line{step: 1, text: `{"_step":1,"loss":2}`})
	require.NoError(t, f.close())
	h, err := os.OpenFile(filepath.Join(dir, "x", historyFileName), os.O_APPEND|os.O_WRONLY, 0)
	require.NoError(t, err)
	_, err = h.WriteString(`{"_step":2,"lo`)
	require.NoError(t, err)
	require.NoError(t, h.Close())
	g, err := readFolder(filepath.Join(dir, "x"))
	require.NoError(t, err)
	require.Len(t, g.lines, 1)
	g2, err := openFolder(dir, info, "proj", "")
	require.NoError(t, err)
	g2.append(line{step: 2, text: `{"_step":2,"loss":1}`})
	require.NoError(t, g2.close())
	b, err := os.ReadFile(filepath.Join(dir, "x", historyFileName))
	require.NoError(t, err)
	require.Equal(t, "{\"_step\":1,\"loss\":2}\n{\"_step\":2,\"loss\":1}\n", string(b))
}

// The same, step by step: once the sender has given up, the next Log
// says so; the folder stops there and Sync with the store sends the rest.
func TestSinkGiveUpMidRun(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	meta := syntheticRun(t, st, 20, 5)
	all := storeSteps(t, st, meta.ID)
	dir := t.TempDir()
	srv.SetFault(func(r *wandbtest.Run, _ int) wandbtest.Fault {
		if len(r.Lines) >= 6 {
			return wandbtest.Fail500
		}
		return wandbtest.OK
	})
	o := testOpts(srv, dir)
	o.ChunkLines = 2
	var logs logBuffer
	o.Logger = logs.logger()
	sink, err := NewSink(o)
	require.NoError(t, err)
	require.NoError(t, sink.Start(meta))
	step := 0
	require.Eventually(t, func() bool {
		err = sink.Log(step, all[step])
		step++
		return err != nil || step > 20
	}, 10*time.Second, 10*time.Millisecond)
	require.Error(t, err, "the sink gave up before the run ended")
	require.Contains(t, err.Error(), "HTTP 500")
	require.Equal(t, ModeOffline, sink.Mode())
	require.NoError(t, sink.Log(step, all[step]), "after the error the sink is quiet")

	srv.SetFault(nil)
	o2 := testOpts(srv, "")
	o2.Logger, o2.Store = logs.logger(), st
	res, err := Sync(t.Context(), dir, o2)
	require.NoError(t, err)
	require.Equal(t, 6, res[0].Skipped)
	require.Contains(t, logs.String(), "uploading the run from the store")
	requireRun(t, srv, st, meta, 0)
	// Synced for good: nothing more to do.
	before := srv.Requests()
	_, err = Sync(t.Context(), dir, o2)
	require.NoError(t, err)
	require.Equal(t, before, srv.Requests())
}
