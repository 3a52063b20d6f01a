package kv

import (
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"

	badger "github.com/dgraph-io/badger/v4"
	"github.com/stretchr/testify/require"
)

// bigTensor is over Badger's value limit (MaxValueBytes) once encoded.
func bigTensor(name string, mark float32) Tensor {
	const rows, cols = 8200, 2048 // 67 MB of float32
	t := Tensor{Name: name, Shape: []int{rows, cols}, Data: make([]float32, rows*cols)}
	for i := range t.Data {
		t.Data[i] = float32(i%9973)*0.25 - mark
	}
	return t
}

// A tensor over the value limit goes in checksummed chunks, in a checkpoint
// and in a blob, reads back exactly, passes Fsck and merges into another
// store.
func TestLargeTensors(t *testing.T) {
	if testing.Short() {
		t.Skip("writes a 67 MB tensor")
	}
	s := openTemp(t)
	m := newRun(t, s, "full")
	big := bigTensor("model.embed_tokens.weight", 1)
	small := testTensor("model.norm.weight", 16)
	require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: 10}, []Tensor{big, small}))
	require.NoError(t, s.PutBlob("base-model", "k", []Tensor{small, big}, []byte("cfg")))

	_, got, err := s.LoadCheckpoint(m.ID, 10)
	require.NoError(t, err)
	require.True(t, sameTensors(got, []Tensor{big, small}))
	require.Equal(t, big.Data, got[0].Data)
	blob, meta, err := s.GetBlob("base-model", "k")
	require.NoError(t, err)
	require.Equal(t, "cfg", string(meta))
	require.Equal(t, big.Data, blob[1].Data)
	n := 0
	require.NoError(t, s.db.View(func(txn *badger.Txn) error {
		return scanKeys(txn, chunkPrefixOf(ckptTensorKey(m.ID, 10, big.Name)), func([]byte) error { n++; return nil })
	}))
	require.Equal(t, 5, n, "chunks of 16 MB")
	problems, err := s.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)

	// Merge into a workspace: the chunks come along.
	ws := openTemp(t)
	o, err := ws.MergeRun(s, m.ID)
	require.NoError(t, err)
	require.Equal(t, MergeAdded, o)
	_, got, err = ws.LoadCheckpoint(m.ID, 10)
	require.NoError(t, err)
	require.Equal(t, big.Data, got[0].Data)
	problems, err = ws.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)

	// A damaged chunk is named on reading.
	k := chunkKey(ckptTensorKey(m.ID, 10, big.Name), 3)
	v := rawGet(t, s, k)
	v[100] ^= 1
	rawSet(t, s, k, v)
	_, _, err = s.LoadCheckpoint(m.ID, 10)
	require.ErrorIs(t, err, ErrCorrupt)
	require.Contains(t, err.Error(), "x/model.embed_tokens.weight/3")
	_, err = ws.MergeRun(s, m.ID)
	require.ErrorIs(t, err, ErrCorrupt)
}

const envBlobStore = "LENS_TEST_BLOB_STORE"

func TestBlobIntentChild(t *testing.T) {
	dir := os.Getenv(envBlobStore)
	if dir == "" {
		t.Skip("run by TestKillInsideBlob only")
	}
	chunkBytes = 64
	s, err := Open(dir, Options{Fault: func(p string, _ int) {
		if p == FaultBlobTensors {
			syscall.Kill(os.Getpid(), syscall.SIGKILL)
			select {}
		}
	}})
	require.NoError(t, err)
	require.NoError(t, s.PutBlob("base-model", "k", []Tensor{testTensor("w", 100)}, nil))
	t.Fatal("the put ended without reaching its fault point")
}

// A blob write killed after its chunks and before its meta is invisible,
// accepted by Fsck, and removed by the next writable open.
func TestKillInsideBlob(t *testing.T) {
	smallChunks(t, 64)
	dir := filepath.Join(t.TempDir(), ".lens")
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	require.NoError(t, s.PutBlob("base-model", "k", []Tensor{testTensor("old", 100)}, nil))
	require.NoError(t, s.Close())
	cmd := exec.Command(os.Args[0], "-test.run=^TestBlobIntentChild$", "-test.count=1")
	cmd.Env = append(os.Environ(), envBlobStore+"="+dir)
	out, err := cmd.CombinedOutput()
	ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
	require.True(t, ok && ws.Signaled(), "child was not killed: %v\n%s", err, out)

	ro, err := Open(dir, Options{ReadOnly: true})
	require.NoError(t, err)
	problems, err := ro.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems, "fsck right after the kill")
	ok, err = ro.HasBlob("base-model", "k")
	require.NoError(t, err)
	require.False(t, ok, "a blob cut short is visible")
	require.NoError(t, ro.Close())

	s, err = Open(dir, Options{})
	require.NoError(t, err)
	defer s.Close()
	left := rawDump(t, s, nil)
	for k := range left {
		require.NotContains(t, k, "blob/", "left behind: %s", k)
		require.NotContains(t, k, "intent/", "left behind: %s", k)
	}
}
