package kv

import (
	"bufio"
	"bytes"
	"fmt"
	"math/rand/v2"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// sealedVlogRSS sums the resident kB of this process's mappings of dir's
// value-log files other than the newest, from /proc/self/smaps.
func sealedVlogRSS(t *testing.T, dir string) (kb int64, files int) {
	t.Helper()
	dir, err := filepath.EvalSymlinks(dir)
	if err != nil {
		t.Fatal(err)
	}
	b, err := os.ReadFile("/proc/self/smaps")
	if err != nil {
		t.Skipf("no /proc/self/smaps: %v", err)
	}
	rss := map[string]int64{}
	cur := ""
	sc := bufio.NewScanner(bytes.NewReader(b))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		switch {
		case len(f) >= 6 && strings.Contains(f[0], "-"):
			cur = ""
			if strings.HasSuffix(f[5], ".vlog") && filepath.Dir(f[5]) == dir {
				cur = f[5]
			}
		case cur != "" && len(f) == 3 && f[0] == "Rss:":
			var n int64
			fmt.Sscan(f[1], &n)
			rss[cur] += n
		}
	}
	newest := ""
	for name := range rss {
		newest = max(newest, name)
	}
	for name, n := range rss {
		if name != newest {
			kb += n
			files++
		}
	}
	return kb, files
}

// TestPageOutSealed writes more than two value-log files' worth of values,
// which stay resident in this process (Badger writes through its maps),
// and checks that pageOutSealed releases the sealed files' pages and that
// every value reads back intact afterwards.
func TestPageOutSealed(t *testing.T) {
	if testing.Short() {
		t.Skip("writes 192 MB")
	}
	s := openTemp(t)
	rng := rand.New(rand.NewPCG(1, 2))
	vals := map[string][]byte{}
	for i := range 3 * MaxValueBytes / (1 << 20) {
		v := make([]byte, 1<<20)
		for j := range v {
			v[j] = byte(rng.Uint32())
		}
		k := fmt.Sprintf("test/pageout/%04d", i)
		vals[k] = v
		rawSet(t, s, []byte(k), v)
	}
	before, files := sealedVlogRSS(t, s.dir)
	if files < 2 {
		t.Fatalf("%d sealed value-log files mapped, want at least 2", files)
	}
	if before < 32<<10 {
		t.Skipf("only %d kB of the sealed value-log files resident before: the kernel reclaimed them already", before)
	}
	if !pageOutSealed(s.dir) {
		t.Skip("the kernel does not support MADV_PAGEOUT")
	}
	after, _ := sealedVlogRSS(t, s.dir)
	t.Logf("resident pages of %d sealed value-log files: %d kB before, %d kB after", files, before, after)
	if after > before/8 {
		t.Errorf("sealed value-log files still have %d of %d kB resident", after, before)
	}
	for k, v := range vals {
		if got := rawGet(t, s, []byte(k)); !bytes.Equal(got, v) {
			t.Fatalf("%s reads back differently after the page-out", k)
		}
	}
}
