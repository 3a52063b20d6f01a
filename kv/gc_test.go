package kv

import (
	"fmt"
	"math/rand/v2"
	"os"
	"os/exec"
	"path/filepath"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// testVlogBytes is the value-log file size of the GC tests: small, so that
// a few dozen 2 MB checkpoints fill many files.
const testVlogBytes = 4 << 20

// smallVlog makes stores opened during the test use testVlogBytes files.
func smallVlog(t *testing.T) {
	old := vlogFileBytes
	vlogFileBytes = testVlogBytes
	t.Cleanup(func() { vlogFileBytes = old })
}

// gcTensors is one checkpoint: n tensors of size float32s each, random
// bits (so that nothing compresses and a mix-up between steps shows).
func gcTensors(rng *rand.Rand, n, size int) []Tensor {
	ts := make([]Tensor, n)
	for i := range ts {
		d := make([]float32, size)
		for j := range d {
			d[j] = rng.Float32()*2 - 1
		}
		ts[i] = Tensor{Name: fmt.Sprintf("layer%03d.lora_A", i), Shape: []int{size}, Data: d}
	}
	return ts
}

func tensorBytes(ts []Tensor) int64 {
	var n int64
	for _, t := range ts {
		n += int64(4 * len(t.Data))
	}
	return n
}

// diskBound is the most a store may occupy after a GC pass with live
// bytes of values: every sealed value-log file is at least half live
// (gcRatio) once the pass is done, so sealed files hold at most 2·live;
// the file being written is never rewritten (up to one vlogFileBytes),
// and a rewrite can have started the next one (another); plus the LSM
// tree, memtable log, DISCARD and MANIFEST, at most base (measured on the
// empty store, doubled).
func diskBound(live, base int64) int64 {
	return 2*live + 2*vlogFileBytes + 2*base
}

// TestGCBoundsRotation rotates checkpoints (keep_last 3, as engine/runs
// does) with tensors of several sizes, and checks that the store's disk
// use stays bounded by the live bytes while the run writes, after Close,
// and that every kept checkpoint reads back bit-identical.
func TestGCBoundsRotation(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~80 MB per case")
	}
	const (
		saves = 40
		keep  = 3
	)
	for _, tc := range []struct {
		name     string
		n, size  int // tensors per checkpoint, float32s per tensor
		chunkTo  int // smallChunks, 0 for the default
		inValLog bool
	}{
		{name: "3KB", n: 600, size: 768},
		{name: "37KB", n: 50, size: 9472},
		{name: "98KB", n: 20, size: 25088},
		{name: "1MB-chunked", n: 2, size: 262144, chunkTo: 256 << 10},
	} {
		t.Run(tc.name, func(t *testing.T) {
			smallVlog(t)
			if tc.chunkTo > 0 {
				smallChunks(t, tc.chunkTo)
			}
			dir := filepath.Join(t.TempDir(), ".lens")
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			defer func() { s.Close() }()
			base := diskBytes(dir)
			m := newRun(t, s, "rot")
			rng := rand.New(rand.NewPCG(1, uint64(tc.size)))
			saved := map[int][]Tensor{}
			var written, peak int64
			for i := 1; i <= saves; i++ {
				step := i * 100
				ts := gcTensors(rng, tc.n, tc.size)
				var drop []int
				if i > keep {
					drop = []int{(i - keep) * 100}
					delete(saved, (i-keep)*100)
				}
				require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: step}, ts, drop...))
				saved[step] = ts
				written += tensorBytes(ts)
				peak = max(peak, diskBytes(dir))
			}
			live := int64(keep) * tensorBytes(saved[saves*100])
			// While the run writes, up to 2·vlogFileBytes more may be
			// deleted and not yet reclaimed (maybeGC's trigger).
			require.Less(t, peak, diskBound(live, base)+2*vlogFileBytes,
				"peak disk use while rotating: %d MB written, %d MB live", written>>20, live>>20)
			require.NoError(t, s.Close())
			after := diskBytes(dir)
			t.Logf("%s: written %d MB, live %d MB, peak %d MB, after close %d MB, bound %d MB",
				tc.name, written>>20, live>>20, peak>>20, after>>20, diskBound(live, base)>>20)
			require.Less(t, after, diskBound(live, base), "after Close")
			// The bound means something: without reclaiming, the store
			// would hold all that was written.
			require.Less(t, diskBound(live, base), written)

			s, err = Open(dir, Options{})
			require.NoError(t, err)
			cps, err := s.Checkpoints(m.ID)
			require.NoError(t, err)
			require.Len(t, cps, keep)
			for _, c := range cps {
				_, got, err := s.LoadCheckpoint(m.ID, c.Step)
				require.NoError(t, err)
				require.True(t, sameTensors(saved[c.Step], got), "checkpoint %d differs after GC", c.Step)
			}
			problems, err := s.Fsck()
			require.NoError(t, err)
			require.Empty(t, problems)
		})
	}
}

// TestGCAfterDeletingRuns deletes all runs but one and checks that GC
// (what lens rm and lens gc run) gives their space back, and that the
// kept run reads back bit-identical.
func TestGCAfterDeletingRuns(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~60 MB")
	}
	smallVlog(t)
	dir := filepath.Join(t.TempDir(), ".lens")
	s, err := Open(dir, Options{})
	require.NoError(t, err)
	defer func() { s.Close() }()
	base := diskBytes(dir)
	rng := rand.New(rand.NewPCG(2, 2))
	var ids []string
	saved := map[string][]Tensor{}
	var written int64
	for r := range 15 {
		m := newRun(t, s, fmt.Sprintf("r%d", r))
		ids = append(ids, m.ID)
		for _, step := range []int{1, 2} {
			ts := gcTensors(rng, 20, 25088)
			require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: step}, ts))
			saved[fmt.Sprint(m.ID, step)] = ts
			written += tensorBytes(ts)
		}
	}
	for _, id := range ids[1:] {
		require.NoError(t, s.DeleteRun(id))
	}
	st, err := s.GC()
	require.NoError(t, err)
	live := 2 * tensorBytes(saved[fmt.Sprint(ids[0], 1)])
	t.Logf("written %d MB, live %d MB, before %d MB, after %d MB, %d files rewritten",
		written>>20, live>>20, st.BytesBefore>>20, st.BytesAfter>>20, st.FilesRewritten)
	require.Positive(t, st.FilesRewritten)
	require.Equal(t, diskBytes(dir), st.BytesAfter)
	require.Less(t, st.BytesAfter, diskBound(live, base))
	require.Less(t, diskBound(live, base), st.BytesBefore)
	for _, step := range []int{1, 2} {
		_, got, err := s.LoadCheckpoint(ids[0], step)
		require.NoError(t, err)
		require.True(t, sameTensors(saved[fmt.Sprint(ids[0], step)], got))
	}
	problems, err := s.Fsck()
	require.NoError(t, err)
	require.Empty(t, problems)
}

// The kill test runs this test binary again as TestGCChild, which runs
// GC on a store with rotated checkpoints and is killed with SIGKILL at a
// fault point of the pass, or a few milliseconds into the rewrites.
const (
	envGCStore = "LENS_TEST_GC_STORE"
	envGCPoint = "LENS_TEST_GC_POINT"
)

func TestGCChild(t *testing.T) {
	dir := os.Getenv(envGCStore)
	if dir == "" {
		t.Skip("run by TestKillDuringGC only")
	}
	vlogFileBytes = testVlogBytes
	point := os.Getenv(envGCPoint)
	kill := func() {
		syscall.Kill(os.Getpid(), syscall.SIGKILL)
		select {}
	}
	s, err := Open(dir, Options{Fault: func(p string, step int) {
		switch {
		case point == "mid" && p == FaultGCCompacted:
			go func() { time.Sleep(3 * time.Millisecond); kill() }()
		case p == point && (p == FaultGCCompacted || step == 1):
			kill()
		}
	}})
	require.NoError(t, err)
	_, err = s.GC()
	require.NoError(t, err)
	if point == "mid" {
		select {} // the kill may come after the pass
	}
	t.Fatalf("GC ended without reaching %s", point)
}

func TestKillDuringGC(t *testing.T) {
	if testing.Short() {
		t.Skip("writes ~40 MB per case")
	}
	for _, point := range []string{FaultGCCompacted, FaultGCRewrote, "mid"} {
		t.Run(point, func(t *testing.T) {
			smallVlog(t)
			autoGC = false // the child's pass is the first
			t.Cleanup(func() { autoGC = true })
			dir := filepath.Join(t.TempDir(), ".lens")
			s, err := Open(dir, Options{})
			require.NoError(t, err)
			base := diskBytes(dir)
			m := newRun(t, s, "rot")
			rng := rand.New(rand.NewPCG(3, 3))
			saved := map[int][]Tensor{}
			for i := 1; i <= 20; i++ {
				var drop []int
				if i > 3 {
					drop = []int{i - 3}
					delete(saved, i-3)
				}
				saved[i] = gcTensors(rng, 20, 25088)
				require.NoError(t, s.SaveCheckpoint(m.ID, CheckpointMeta{Step: i}, saved[i], drop...))
			}
			require.NoError(t, s.Close())

			cmd := exec.Command(os.Args[0], "-test.run=^TestGCChild$", "-test.count=1")
			cmd.Env = append(os.Environ(), envGCStore+"="+dir, envGCPoint+"="+point)
			out, err := cmd.CombinedOutput()
			ws, ok := cmd.ProcessState.Sys().(syscall.WaitStatus)
			require.True(t, ok && ws.Signaled(), "child was not killed: %v\n%s", err, out)

			check := func(s *Store) {
				t.Helper()
				problems, err := s.Fsck()
				require.NoError(t, err)
				require.Empty(t, problems)
				cps, err := s.Checkpoints(m.ID)
				require.NoError(t, err)
				require.Len(t, cps, 3)
				for _, c := range cps {
					_, got, err := s.LoadCheckpoint(m.ID, c.Step)
					require.NoError(t, err)
					require.True(t, sameTensors(saved[c.Step], got), "checkpoint %d differs", c.Step)
				}
			}
			ro, err := Open(dir, Options{ReadOnly: true})
			require.NoError(t, err)
			check(ro)
			require.NoError(t, ro.Close())

			s, err = Open(dir, Options{})
			require.NoError(t, err)
			defer s.Close()
			check(s)
			st, err := s.GC()
			require.NoError(t, err)
			check(s)
			live := 3 * tensorBytes(saved[20])
			require.Less(t, st.BytesAfter, diskBound(live, base))
		})
	}
}
