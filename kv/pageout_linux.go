package kv

import (
	"bufio"
	"bytes"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"syscall"
)

// madvPageout is MADV_PAGEOUT (Linux 5.4), absent from package syscall.
const madvPageout = 21

// pageOutSealed asks the kernel to reclaim this process's resident pages
// of the store's value-log files other than the newest (the one Badger
// appends to). Badger maps its files and writes through the mapping, so
// every page it wrote stays in our resident set until the kernel runs
// short of memory: at 10⁸ metric points that was ~0.9 GB of the peak RSS.
// A sealed file has been synced, so its pages are clean and reclaiming
// them loses nothing; a later read faults them back from disk. Unlike
// MADV_DONTNEED, MADV_PAGEOUT never discards data, so a range unmapped
// and reused between reading the map and the call comes to no harm. It
// reports false when the kernel does not support it.
func pageOutSealed(dir string) bool {
	// The kernel lists files by absolute, resolved path.
	if abs, err := filepath.Abs(dir); err == nil {
		dir = abs
	}
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	maps, err := os.ReadFile("/proc/self/maps")
	if err != nil {
		return false
	}
	type region struct{ lo, hi uintptr }
	byFile := map[string][]region{}
	newest := ""
	sc := bufio.NewScanner(bytes.NewReader(maps))
	for sc.Scan() {
		// 7f12a000-7f12b000 rw-s 00000000 fd:01 123 /path/000001.vlog
		f := strings.Fields(sc.Text())
		if len(f) < 6 || !strings.HasSuffix(f[5], ".vlog") || filepath.Dir(f[5]) != dir {
			continue
		}
		lo, hi, ok := strings.Cut(f[0], "-")
		if !ok {
			continue
		}
		l, err1 := strconv.ParseUint(lo, 16, 64)
		h, err2 := strconv.ParseUint(hi, 16, 64)
		if err1 != nil || err2 != nil || h <= l {
			continue
		}
		byFile[f[5]] = append(byFile[f[5]], region{uintptr(l), uintptr(h)})
		// Value-log files are numbered with fixed width, so the
		// greatest name is the newest.
		newest = max(newest, f[5])
	}
	for name, rs := range byFile {
		if name == newest {
			continue
		}
		for _, r := range rs {
			_, _, errno := syscall.Syscall(syscall.SYS_MADVISE, r.lo, r.hi-r.lo, madvPageout)
			if errno == syscall.EINVAL {
				return false
			}
		}
	}
	return true
}
