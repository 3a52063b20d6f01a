//go:build !linux

package sweep

import "syscall"

// trialProcAttr: Pdeathsig is Linux-only; elsewhere trials share the
// driver's process group.
func trialProcAttr() *syscall.SysProcAttr { return nil }
