//go:build unix

package kv

import (
	"errors"
	"syscall"
)

// pidAlive reports whether a process with this pid exists (it may belong to
// another user: EPERM still means alive).
func pidAlive(pid int) bool {
	if pid <= 0 {
		return false
	}
	err := syscall.Kill(pid, 0)
	return err == nil || errors.Is(err, syscall.EPERM)
}
