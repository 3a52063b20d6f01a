package wandb

import (
	"context"
	"encoding/json"
	"fmt"
	"io/fs"
	"math"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/engine/wandb/wandbtest"
	"lens/kv"
)

// offlineFolder records meta's metrics through an offline Sink into a
// new folder root and returns it.
func offlineFolder(t *testing.T, srv *wandbtest.Server, st *kv.Store, meta kv.RunMeta) string {
	dir := t.TempDir()
	o := testOpts(srv, dir)
	o.Mode = ModeOffline
	sink, err := NewSink(o)
	require.NoError(t, err)
	feed(t, sink, st, meta)
	return dir
}

// A sync cut short (server errors, answers lost, connection dropped,
// context cancelled) and run again ends with every line once: with the
// cursor, without it (the server's historyLineCount and history tail say
// where to go on), and without the tail (the count alone).
func TestInterruptedSyncResumes(t *testing.T) {
	const steps = 40 // 41 lines with step 0
	cases := []struct {
		name  string
		fault func(cancel func()) func(*wandbtest.Run, int) wandbtest.Fault
		fails bool
	}{
		{"server errors after 15 lines", func(func()) func(*wandbtest.Run, int) wandbtest.Fault {
			return func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 15 {
					return wandbtest.Fail500
				}
				return wandbtest.OK
			}
		}, true},
		{"answers lost after 10 lines", func(func()) func(*wandbtest.Run, int) wandbtest.Fault {
			return func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 10 {
					return wandbtest.TakeThenDrop
				}
				return wandbtest.OK
			}
		}, true},
		{"connection dropped after 10 lines", func(func()) func(*wandbtest.Run, int) wandbtest.Fault {
			return func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 10 {
					return wandbtest.DropUntaken
				}
				return wandbtest.OK
			}
		}, true},
		{"cancelled after 20 lines", func(cancel func()) func(*wandbtest.Run, int) wandbtest.Fault {
			return func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 20 {
					cancel() // the server still takes this chunk, the client never hears
				}
				return wandbtest.OK
			}
		}, true},
		{"rate limited once", func(func()) func(*wandbtest.Run, int) wandbtest.Fault {
			return func(r *wandbtest.Run, _ int) wandbtest.Fault { return wandbtest.TooManyThenOK }
		}, false},
	}
	resumes := []struct {
		name             string
		loseCursor, tail bool
	}{{"cursor", false, true}, {"no cursor", true, true}, {"no cursor no tail", true, false}}
	for _, c := range cases {
		for _, rs := range resumes {
			t.Run(c.name+"/"+rs.name, func(t *testing.T) {
				srv := newServer(t)
				srv.NoTail = !rs.tail
				st := openStore(t)
				meta := syntheticRun(t, st, steps, 5)
				dir := offlineFolder(t, srv, st, meta)
				runDir := filepath.Join(dir, meta.ID)
				ctx, cancel := context.WithCancel(t.Context())
				defer cancel()
				srv.SetFault(c.fault(cancel))
				_, err := Sync(ctx, dir, testOpts(srv, ""))
				r := srv.Run(srv.Entity, "proj", RunID(meta.ID))
				if !c.fails {
					require.NoError(t, err)
					requireRun(t, srv, st, meta, 0)
					return
				}
				require.Error(t, err)
				require.Less(t, len(r.Lines), steps+1, "the first sync stopped early")
				require.False(t, r.Complete)
				cur, cerr := readCursor(runDir)
				require.NoError(t, cerr)
				require.LessOrEqual(t, cur.Acked, len(r.Lines), "the cursor never runs ahead of the server")
				require.Greater(t, cur.Acked, 0)
				if rs.loseCursor {
					require.NoError(t, os.Remove(filepath.Join(runDir, cursorFileName)))
				}
				srv.SetFault(nil)
				res, err := Sync(t.Context(), dir, testOpts(srv, ""))
				require.NoError(t, err)
				require.Len(t, res, 1)
				require.Equal(t, len(r.Lines), res[0].Skipped, "went on where the server was")
				require.Equal(t, steps+1-len(r.Lines), res[0].Sent)
				requireRun(t, srv, st, meta, 0)
			})
		}
	}
}

// A run trained without W&B goes up from the store; a second upload
// sends nothing; an interrupted upload goes on without duplicates.
func TestSyncRunFromStore(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	meta := trainRun(t, st, 6)
	res, err := SyncRun(t.Context(), st, meta.ID, testOpts(srv, ""))
	require.NoError(t, err)
	require.Equal(t, 7, res.Sent)
	require.True(t, res.Complete)
	require.Contains(t, res.URL, "/proj/runs/"+RunID(meta.ID))
	requireRun(t, srv, st, meta, 0)
	res, err = SyncRun(t.Context(), st, meta.ID, testOpts(srv, ""))
	require.NoError(t, err)
	require.Equal(t, 0, res.Sent)
	require.Equal(t, 7, res.Skipped)
	requireRun(t, srv, st, meta, 0)

	for _, tail := range []bool{true, false} {
		t.Run(fmt.Sprintf("interrupted tail=%v", tail), func(t *testing.T) {
			srv := newServer(t)
			srv.NoTail = !tail
			meta := syntheticRun(t, st, 30, 7)
			srv.SetFault(func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 12 {
					return wandbtest.TakeThenDrop
				}
				return wandbtest.OK
			})
			_, err := SyncRun(t.Context(), st, meta.ID, testOpts(srv, ""))
			require.Error(t, err)
			require.Contains(t, err.Error(), "run it again")
			srv.SetFault(nil)
			_, err = SyncRun(t.Context(), st, meta.ID, testOpts(srv, ""))
			require.NoError(t, err)
			requireRun(t, srv, st, meta, 0)
		})
	}
}

// A failed run is marked complete with exit code 1.
func TestFailedRunExitCode(t *testing.T) {
	srv := newServer(t)
	st := openStore(t)
	meta := syntheticRun(t, st, 5, 5)
	require.NoError(t, st.UpdateRun(meta.ID, func(m *kv.RunMeta) error { m.Status = kv.StatusFailed; return nil }))
	meta, err := st.GetRun(meta.ID)
	require.NoError(t, err)
	dir := offlineFolder(t, srv, st, meta)
	_, err = Sync(t.Context(), dir, testOpts(srv, ""))
	require.NoError(t, err)
	requireRun(t, srv, st, meta, 1)
}

// The API key appears in no error, log line or file, even when the server
// echoes it back.
func TestKeyNeverLeaks(t *testing.T) {
	faults := []wandbtest.Fault{wandbtest.EchoAuth500, wandbtest.Unauthorized, wandbtest.Fail500}
	for _, fault := range faults {
		t.Run(fmt.Sprint(fault), func(t *testing.T) {
			srv := newServer(t)
			st := openStore(t)
			var logs logBuffer
			dir := t.TempDir()
			o := testOpts(srv, dir)
			o.Logger = logs.logger()
			o.ChunkLines = 2
			srv.SetFault(func(r *wandbtest.Run, _ int) wandbtest.Fault {
				if len(r.Lines) >= 4 {
					return fault
				}
				return wandbtest.OK
			})
			var errs []string
			sink, err := NewSink(o)
			require.NoError(t, err)
			meta := trainRun(t, st, 4, sink)
			events, err := st.Events(meta.ID)
			require.NoError(t, err)
			for _, e := range events {
				errs = append(errs, e.Message)
			}
			_, err = Sync(t.Context(), dir, o)
			require.Error(t, err)
			errs = append(errs, err.Error())
			_, err = SyncRun(t.Context(), st, meta.ID, o)
			require.Error(t, err)
			errs = append(errs, err.Error())
			if fault == wandbtest.EchoAuth500 {
				require.Contains(t, err.Error(), "["+keyName+" redacted]", "the echoed key was scrubbed, not dropped")
			}
			// A wrong key: the error says so, without either key.
			bad := o
			bad.APIKey = "wrong-" + testKey
			_, err = SyncRun(t.Context(), st, meta.ID, bad)
			require.Error(t, err)
			require.Contains(t, err.Error(), "401")
			errs = append(errs, err.Error())

			b, err := json.Marshal(o.APIKey)
			require.NoError(t, err)
			o.Logger.Info("options", "opts", o, "key", o.APIKey)
			texts := append(errs, logs.String(), fmt.Sprintf("%v %+v %#v %s %q %x", o, o, o, o.APIKey, o.APIKey, o.APIKey), string(b))
			require.NoError(t, filepath.WalkDir(dir, func(p string, d fs.DirEntry, err error) error {
				if err != nil || d.IsDir() {
					return err
				}
				c, err := os.ReadFile(p)
				texts = append(texts, string(c))
				return err
			}))
			header := wandbtest.AuthHeader(testKey)
			for _, s := range texts {
				require.NotContains(t, s, testKey)
				require.NotContains(t, s, strings.TrimPrefix(header, "Basic "))
			}
			require.NotEmpty(t, errs)
		})
	}
}

// Line format: sorted keys, exact floats, W&B's spelling of non-finite
// values, and a parser that reads them back.
func TestLineFormat(t *testing.T) {
	cases := []struct {
		vals map[string]float64
		want string
	}{
		{map[string]float64{"loss": 2.5, "lr": 1e-5}, `"loss":2.5,"lr":0.00001`},
		{map[string]float64{"tiny": 2e-7, "big": -3e22}, `"big":-3e+22,"tiny":2e-7`},
		{map[string]float64{"eval/opticks": 3}, `"eval/opticks":3`},
		{map[string]float64{"a": math.Nextafter(0.3, 1)}, `"a":0.30000000000000004`},
		{map[string]float64{"nan": nan(), "inf": inf(1), "ninf": inf(-1)}, `"inf":Infinity,"nan":NaN,"ninf":-Infinity`},
		{map[string]float64{`we"ird:NaN`: 1}, `"we\"ird:NaN":1`},
	}
	for _, c := range cases {
		l := formatLine(7, c.vals, 1.5, timeAt(1700000000.25))
		require.Equal(t, `{"_runtime":1.5,"_step":7,"_timestamp":1700000000.25,`+c.want+`}`, l)
		got, err := ParseLine(l)
		require.NoError(t, err)
		for k, v := range c.vals {
			if v != v {
				require.True(t, got[k] != got[k], k)
				continue
			}
			require.Equal(t, v, got[k], k)
		}
		step, ok := lineStep(l)
		require.True(t, ok)
		require.Equal(t, 7, step)
	}
}

func TestRunID(t *testing.T) {
	cases := []struct{ in, want string }{
		{"20261125-094512-3f9a", "lens-20261125-094512-3f9a"},
		{"my_run-1", "lens-my_run-1"},
	}
	for _, c := range cases {
		require.Equal(t, c.want, RunID(c.in))
	}
	// Ids W&B would not take are made safe and kept apart.
	a, b := RunID("Run A"), RunID("run-a")
	require.NotEqual(t, a, b)
	require.Regexp(t, `^lens-[a-z0-9_-]+$`, a)
	require.Equal(t, a, RunID("Run A"), "stable")
	require.LessOrEqual(t, len(RunID(strings.Repeat("x", 200))), 64)
}
