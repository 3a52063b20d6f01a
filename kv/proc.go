package kv

import (
	"fmt"
	"os"
	"strings"
)

// processCommand returns the command line of pid from /proc, or "" where
// there is no /proc.
func processCommand(pid int) string {
	b, err := os.ReadFile(fmt.Sprintf("/proc/%d/cmdline", pid))
	if err != nil {
		return ""
	}
	return strings.TrimSpace(strings.ReplaceAll(string(b), "\x00", " "))
}
