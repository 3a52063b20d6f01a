package kv

import (
	"maps"
	"strings"
	"testing"
)

func TestFsck(t *testing.T) {
	tests := []struct {
		name    string
		damage  func(t *testing.T, s *Store, id string)
		key     string // problem key; "<id>" stands for the run id
		message string
	}{
		{"metric value length", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, metricKey(id, "loss", 3), []byte{1, 2, 3})
		}, "run/<id>/metric/loss/3", "3 bytes, not a block"},
		{"metric block checksum", func(t *testing.T, s *Store, id string) {
			b := encodeBlock([]Point{{1, 2}}, 0)
			b[len(b)-1] ^= 1
			rawSet(t, s, metricKey(id, "loss", 0), b)
		}, "run/<id>/metric/loss/0", "checksum mismatch"},
		{"status index missing", func(t *testing.T, s *Store, id string) {
			rawDelete(t, s, idxStatusKey(StatusRunning, id))
		}, "rec/<id>", "missing from the status index"},
		{"stale status", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, idxStatusKey(StatusDone, id), nil)
		}, "idx/status/done/<id>", "stale"},
		{"format-1 record left", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, v1RunMetaKey(id), []byte("{}"))
		}, "run/<id>/meta", "not migrated"},
		{"chunk damaged", func(t *testing.T, s *Store, id string) {
			k := chunkKey(ckptTensorKey(id, 2, "big"), 1)
			v := rawGet(t, s, k)
			v[7] ^= 1
			rawSet(t, s, k, v)
		}, "run/<id>/ckpt/2/x/big/1", "chunk checksum mismatch"},
		{"chunk missing", func(t *testing.T, s *Store, id string) {
			rawDelete(t, s, chunkKey(ckptTensorKey(id, 2, "big"), 0))
		}, "run/<id>/ckpt/2/x/big/0", "missing"},
		{"chunk unlisted", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, chunkKey(ckptTensorKey(id, 2, "big"), 9), []byte("x"))
		}, "run/<id>/ckpt/2/x/big/9", "not listed"},
		{"run record not JSON", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, runMetaKey(id), []byte("{"))
		}, "rec/<id>", "corrupt value"},
		{"checkpoint meta not JSON", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, ckptMetaKey(id, 1), []byte("nope"))
		}, "run/<id>/ckpt/1/meta", "corrupt value"},
		{"checkpoint tensor missing", func(t *testing.T, s *Store, id string) {
			rawDelete(t, s, ckptTensorKey(id, 1, "w"))
		}, "run/<id>/ckpt/1/t/w", "listed in the meta but missing"},
		{"checkpoint tensor unlisted", func(t *testing.T, s *Store, id string) {
			b, _ := encodeTensor(testTensor("x", 1))
			rawSet(t, s, ckptTensorKey(id, 1, "x"), b)
		}, "run/<id>/ckpt/1/t/x", "not listed"},
		{"event not JSON", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, eventKey(id, 1), []byte("]"))
		}, "run/<id>/event/1", "corrupt value"},
		{"collected tag", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, collectKey(id, "acts", 1, "m"), []byte("z"))
		}, "run/<id>/collect/acts/1/m", "unknown kind tag"},
		{"name index missing", func(t *testing.T, s *Store, id string) {
			rawDelete(t, s, idxNameKey("n", id))
		}, "rec/<id>", "missing from the name index"},
		{"dangling index", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, idxNameKey("ghost", "gone"), nil)
		}, "idx/name/ghost/gone", "does not exist"},
		{"stale tag", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, idxTagKey("zzz", id), nil)
		}, "idx/tag/zzz/<id>", "stale"},
		{"keys of a run with no record", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, metricKey("ghost", "loss", 0), encodeBlock([]Point{{1, 1}}, 0))
		}, "run/ghost/", "no record"},
		{"unknown key", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, []byte("junk"), nil)
		}, "junk", "no known layout"},
		{"unknown key under a run", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, []byte("run/"+id+"/what"), nil)
		}, "run/<id>/what", "no known layout"},
		{"blob tensor", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, blobTensorKey("ns", "k", "w"), []byte("LTNS"))
		}, "blob/ns/k/t/w", "truncated"},
		{"version", func(t *testing.T, s *Store, id string) {
			rawSet(t, s, []byte(keyVersion), []byte("7"))
		}, keyVersion, "format version"},
	}
	smallChunks(t, 64)
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := openTemp(t)
			m := RunMeta{ID: s.NewRunID(), Name: "n", Tags: []string{"t"}}
			if err := s.CreateRun(m); err != nil {
				t.Fatal(err)
			}
			s.AddMetric(m.ID, "loss", 1, 0.5)
			s.AddEvent(m.ID, Event{Kind: "info"})
			s.PutCollectedJSON(m.ID, "acts", 1, "m", 1)
			if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 1}, []Tensor{testTensor("w", 2)}); err != nil {
				t.Fatal(err)
			}
			if err := s.PutBlob("ns", "k", []Tensor{testTensor("w", 2)}, nil); err != nil {
				t.Fatal(err)
			}
			if err := s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 2}, []Tensor{testTensor("big", 40)}); err != nil {
				t.Fatal(err)
			}
			if p, err := s.Fsck(); err != nil || len(p) != 0 {
				t.Fatalf("healthy store: %v %v", p, err)
			}

			tt.damage(t, s, m.ID)
			before := rawDump(t, s, nil)
			problems, err := s.Fsck()
			if err != nil {
				t.Fatal(err)
			}
			want := strings.ReplaceAll(tt.key, "<id>", m.ID)
			found := false
			for _, p := range problems {
				if p.Key == want && strings.Contains(p.Message, tt.message) {
					found = true
				}
			}
			if !found {
				t.Errorf("Fsck = %v, want a problem at %s saying %q", problems, want, tt.message)
			}
			if !maps.EqualFunc(before, rawDump(t, s, nil), func(a, b []byte) bool { return string(a) == string(b) }) {
				t.Error("Fsck changed the store")
			}
		})
	}
}
