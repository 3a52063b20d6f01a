package memstat

import (
	"os"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"testing"
)

func TestPeakFrom(t *testing.T) {
	dir := t.TempDir()
	for _, tc := range []struct {
		name, status string
		want         int64
	}{
		{"linux", "Name:\tlens\nVmPeak:\t  999 kB\nVmHWM:\t    2048 kB\nVmRSS:\t 1000 kB\n", 2048 * 1024},
		{"no field", "Name:\tlens\n", 0},
		{"garbled", "VmHWM:\t lots kB\n", 0},
	} {
		p := filepath.Join(dir, tc.name)
		if err := os.WriteFile(p, []byte(tc.status), 0o600); err != nil {
			t.Fatal(err)
		}
		if got := peakFrom(p); got != tc.want {
			t.Errorf("%s: %d, want %d", tc.name, got, tc.want)
		}
	}
	if peakFrom(filepath.Join(dir, "absent")) != 0 {
		t.Error("a missing file gave a peak")
	}
}

// TestPeakRSSGrows: touching 64 MB more than the process has ever held
// raises the high-water mark by about that much.
func TestPeakRSSGrows(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("VmHWM is Linux's")
	}
	before := PeakRSS()
	if before <= 0 {
		t.Fatalf("peak RSS %d", before)
	}
	buf := make([]byte, before+64<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	after := PeakRSS()
	runtime.KeepAlive(buf)
	if after < before+64<<20 {
		t.Errorf("peak RSS %d after touching %d bytes, was %d", after, len(buf), before)
	}
}

// TestResetPeak: after ResetPeak the peak is near the current RSS, below a
// peak reached earlier and given back since.
func TestResetPeak(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("VmHWM is Linux's")
	}
	buf := make([]byte, 256<<20)
	for i := 0; i < len(buf); i += 4096 {
		buf[i] = 1
	}
	runtime.KeepAlive(buf)
	buf = nil
	debug.FreeOSMemory()
	high := PeakRSS()
	if err := ResetPeak(); err != nil {
		t.Skipf("cannot reset the peak here: %v", err)
	}
	now, peak := RSS(), PeakRSS()
	if now <= 0 || peak > high-128<<20 || peak > now+16<<20 {
		t.Errorf("after the reset: peak %d, RSS %d, peak before %d", peak, now, high)
	}
}
