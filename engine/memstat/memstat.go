// Package memstat reads how much memory the process has used at most: the
// peak resident set size, VmHWM in /proc/self/status (the kernel's
// high-water mark, which includes memory outside the Go heap, such as
// mmapped safetensors files). It reads /proc, not the environment, so
// engine code may call it; where /proc is absent (not Linux) it reports 0.
package memstat

import (
	"bytes"
	"os"
	"strconv"
)

// PeakRSS returns the process's peak resident set size in bytes, or 0
// where it cannot be read.
func PeakRSS() int64 { return peakFrom("/proc/self/status") }

// RSS returns the process's resident set size now (VmRSS), or 0 where it
// cannot be read.
func RSS() int64 { return fieldFrom("/proc/self/status", "VmRSS:") }

// ResetPeak lowers the peak resident set size to the current one (Linux
// 4.0 and later: 5 written to /proc/self/clear_refs), so that PeakRSS
// then tells the most the process held since: a test measures what one
// call holds at most. The error says where it cannot.
func ResetPeak() error { return os.WriteFile("/proc/self/clear_refs", []byte("5"), 0) }

func peakFrom(path string) int64 { return fieldFrom(path, "VmHWM:") }

// fieldFrom reads a "Name:  N kB" line of a /proc status file, in bytes.
func fieldFrom(path, field string) int64 {
	b, err := os.ReadFile(path)
	if err != nil {
		return 0
	}
	for _, l := range bytes.Split(b, []byte("\n")) {
		v, ok := bytes.CutPrefix(l, []byte(field))
		if !ok {
			continue
		}
		v = bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(v), []byte("kB")))
		kb, err := strconv.ParseInt(string(v), 10, 64)
		if err != nil {
			return 0
		}
		return kb * 1024
	}
	return 0
}
