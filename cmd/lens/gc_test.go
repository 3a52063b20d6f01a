package main

import (
	"encoding/json"
	"fmt"
	"math/rand/v2"
	"path/filepath"
	"testing"

	"github.com/stretchr/testify/require"

	"lens/kv"
)

// TestGCCommand deletes a 70 MB run in-process (DeleteRun alone leaves
// its values in the value log) and checks that lens gc --json gives the
// space back, that the kept run reads back bit-identical and fsck is clean.
func TestGCCommand(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 140 MB")
	}
	dir := t.TempDir()
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{})
	require.NoError(t, err)
	rng := rand.New(rand.NewPCG(7, 7))
	var ids []string
	var kept []kv.Tensor
	for r := range 2 {
		m := kv.RunMeta{ID: st.NewRunID(), Name: fmt.Sprintf("r%d", r), Script: "a.star"}
		require.NoError(t, st.CreateRun(m))
		ts := make([]kv.Tensor, 70)
		for i := range ts {
			d := make([]float32, 1<<18) // 1 MB
			for j := range d {
				d[j] = rng.Float32()
			}
			ts[i] = kv.Tensor{Name: fmt.Sprintf("t%02d", i), Shape: []int{len(d)}, Data: d}
		}
		require.NoError(t, st.SaveCheckpoint(m.ID, kv.CheckpointMeta{Step: 1}, ts))
		ids, kept = append(ids, m.ID), ts
	}
	require.NoError(t, st.DeleteRun(ids[0]))
	require.NoError(t, st.Close())

	out, stderr, code := lens(t, dir, "gc", "--json")
	require.Equal(t, 0, code, stderr)
	var stats kv.GCStats
	require.NoError(t, json.Unmarshal([]byte(out), &stats), out)
	t.Logf("lens gc: %+v", stats)
	// The first value-log file (64 MB, nearly all the deleted run) goes.
	require.Positive(t, stats.FilesRewritten)
	require.Less(t, stats.BytesAfter, stats.BytesBefore-50<<20)

	out, _, code = lens(t, dir, "fsck")
	require.Equal(t, 0, code, out)
	st, err = kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	_, got, err := st.LoadCheckpoint(ids[1], 1)
	require.NoError(t, err)
	require.Equal(t, kept, got)
	require.NoError(t, st.Close())

	out, stderr, code = lens(t, dir, "gc")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "on disk")
}
