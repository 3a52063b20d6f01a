package sweep

import "syscall"

// trialProcAttr puts a local trial in its own process group, so a Ctrl-C
// reaches only the driver (which stops trials with SIGTERM, once), and has
// the kernel send it SIGTERM if the driver dies: the trial checkpoints and
// ends cancelled instead of training on unwatched.
func trialProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGTERM}
}
