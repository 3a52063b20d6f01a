package main

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"

	"lens/kv"
)

// lens merge and lens fsck on a store holding a tensor stored in chunks
// (over the store's 16 MB chunk size): merged whole, checked clean, and a
// damaged chunk is named by fsck and refused by merge.
func TestMergeAndFsckChunkedTensors(t *testing.T) {
	dir := workspace(t, map[string]string{})
	shard := filepath.Join(dir, "shard")
	st, err := kv.Open(shard, kv.Options{})
	require.NoError(t, err)
	m := kv.RunMeta{ID: st.NewRunID(), Name: "full", Status: kv.StatusDone, Config: json.RawMessage(`{}`)}
	require.NoError(t, st.CreateRun(m))
	emb := kv.Tensor{Name: "model.embed_tokens.weight", Shape: []int{5000, 1000}, Data: make([]float32, 5_000_000)} // 20 MB
	for i := range emb.Data {
		emb.Data[i] = float32(i%977) / 977
	}
	require.NoError(t, st.SaveCheckpoint(m.ID, kv.CheckpointMeta{Step: 3}, []kv.Tensor{emb}))
	require.NoError(t, st.Close())

	out, stderr, code := lens(t, dir, "merge", shard)
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "added")
	out, stderr, code = lens(t, dir, "fsck")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "no problems")
	ws, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	_, ts, err := ws.LoadCheckpoint(m.ID, 3)
	require.NoError(t, err)
	require.Equal(t, emb.Data, ts[0].Data)
	require.NoError(t, ws.Close())

	// Damage one chunk of the shard's copy.
	rawShard(t, shard, func(txn *badger.Txn) error {
		it := txn.NewIterator(badger.IteratorOptions{Prefix: []byte("run/" + m.ID + "/ckpt/")})
		defer it.Close()
		for it.Rewind(); it.Valid(); it.Next() {
			k := it.Item().KeyCopy(nil)
			if strings.Contains(string(k), "/x/model.embed_tokens.weight/") {
				v, err := it.Item().ValueCopy(nil)
				if err != nil {
					return err
				}
				v[10] ^= 1
				return txn.Set(k, v)
			}
		}
		return nil
	})
	out, _, code = lens(t, dir, "fsck", "--store", shard)
	require.Equal(t, 1, code)
	require.Contains(t, out, "x/model.embed_tokens.weight/")
	require.Contains(t, out, "chunk checksum mismatch")
	_, stderr, code = lens(t, dir, "merge", shard)
	require.Equal(t, 1, code)
	require.Contains(t, stderr, "corrupt")
}

// A store written in format 1 (the record at run/<id>/meta, one 8-byte
// value per metric step) is migrated by the first command that opens it,
// and then lists, shows and passes fsck.
func TestMigratedStoreThroughCLI(t *testing.T) {
	dir := workspace(t, map[string]string{})
	id := "20261125-094512-3f9a"
	loss := 0.75
	rec, err := json.Marshal(kv.RunMeta{ID: id, Name: "old", Status: kv.StatusDone, Steps: 300, FinalLoss: &loss,
		Created: time.Date(2026, 11, 25, 9, 45, 12, 0, time.UTC)})
	require.NoError(t, err)
	rawShard(t, filepath.Join(dir, ".lens"), func(txn *badger.Txn) error {
		set := func(k string, v []byte) {
			if err == nil {
				err = txn.Set([]byte(k), v)
			}
		}
		set("store/version", []byte("1"))
		set("run/"+id+"/meta", rec)
		set("idx/name/old/"+id, nil)
		for step := 0; step < 300; step++ {
			k := binary.BigEndian.AppendUint64([]byte("run/"+id+"/metric/loss/"), uint64(step))
			set(string(k), binary.LittleEndian.AppendUint64(nil, math.Float64bits(1/float64(step+1))))
		}
		return err
	})
	out, stderr, code := lens(t, dir, "fsck")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, "no problems")
	out, stderr, code = lens(t, dir, "runs")
	require.Equal(t, 0, code, stderr)
	require.Contains(t, out, id)
	require.Contains(t, out, "300")
	st, err := kv.Open(filepath.Join(dir, ".lens"), kv.Options{ReadOnly: true})
	require.NoError(t, err)
	defer st.Close()
	pts, err := st.ReadMetric(id, "loss")
	require.NoError(t, err)
	require.Len(t, pts, 300)
	require.Equal(t, 1/float64(300), pts[299].Value)
}

// writeRunsJSON writes what json.Encoder writes for the list, a run a
// line: the first line holds the first run.
func TestWriteRunsJSON(t *testing.T) {
	loss, nan := 0.5, math.NaN()
	for _, list := range [][]kv.RunMeta{nil, {
		{ID: "a", Name: "<b>&", Config: json.RawMessage(`{"x": [1, 2], "s": "<&>"}`), FinalLoss: &loss, Tags: []string{"t"}, Args: map[string]string{"k": "v"}},
		{ID: "b", FinalLoss: &nan, Status: kv.StatusRunning, Progress: &kv.Progress{Step: 3, Loss: math.Inf(1)}},
		{ID: "c", Status: kv.StatusDone},
	}} {
		var want, got strings.Builder
		require.NoError(t, json.NewEncoder(&want).Encode(list))
		each := func(fn func(kv.RunMeta) error) error {
			for _, m := range list {
				if err := fn(m); err != nil {
					return err
				}
			}
			return nil
		}
		// The first line reaches the writer before the third run is read.
		firstLine := ""
		each3 := func(fn func(kv.RunMeta) error) error {
			return each(func(m kv.RunMeta) error {
				if len(list) > 2 && m.ID == list[2].ID {
					firstLine, _, _ = strings.Cut(got.String(), "\n")
				}
				return fn(m)
			})
		}
		require.NoError(t, writeRunsJSON(&got, each3))
		var compact bytes.Buffer
		require.NoError(t, json.Compact(&compact, []byte(got.String())))
		require.Equal(t, strings.TrimSuffix(want.String(), "\n"), compact.String())
		lines := strings.Split(strings.TrimSuffix(got.String(), "\n"), "\n")
		require.Len(t, lines, max(len(list), 1))
		if len(list) > 0 {
			first, err := list[0].MarshalJSON()
			require.NoError(t, err)
			require.Equal(t, "["+string(first)+",", lines[0])
			require.Equal(t, lines[0], firstLine, "flushed after the first line")
		}
	}
}
