//go:build unix

package tokenize

import (
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/stretchr/testify/require"
)

// megabyte is 1 MiB of the fixture corpus (README and Go source).
func megabyte(t testing.TB) string {
	t.Helper()
	c, err := os.ReadFile(filepath.Join("testdata", "corpus.txt"))
	require.NoError(t, err)
	return strings.Repeat(string(c), 1<<20/len(c)+1)[:1<<20]
}

func cpuTime() time.Duration {
	var ru syscall.Rusage
	if err := syscall.Getrusage(syscall.RUSAGE_SELF, &ru); err != nil {
		return 0
	}
	return time.Duration(ru.Utime.Nano() + ru.Stime.Nano())
}

// TestEncodeMegabyte encodes 1 MiB with each fixture. The bound is on CPU
// time, not wall time, so a loaded machine does not fail it; about 0.4 s
// was measured, the bound catches a quadratic slip. The SentencePiece
// layout has no pre-tokenizer, so the whole text is one word for the merge
// queue.
func TestEncodeMegabyte(t *testing.T) {
	text := megabyte(t)
	for _, name := range []string{"sp_bpe", "bytelevel_bpe"} {
		tok := loadFixture(t, name)
		start, wall := cpuTime(), time.Now()
		ids := tok.Encode(text)
		cpu := cpuTime() - start
		t.Logf("%s: %d ids, %v CPU, %v wall", name, len(ids), cpu, time.Since(wall))
		require.Less(t, cpu, 2*time.Second, name)
		require.Less(t, len(ids), len(text)*2/3, "merges happened")
		require.Equal(t, text, tok.Decode(ids))
	}
}

func BenchmarkEncode(b *testing.B) {
	text := megabyte(b)
	for _, name := range []string{"sp_bpe", "bytelevel_bpe"} {
		tok := loadFixture(b, name)
		b.Run(name, func(b *testing.B) {
			b.SetBytes(int64(len(text)))
			for b.Loop() {
				tok.Encode(text)
			}
		})
	}
}
