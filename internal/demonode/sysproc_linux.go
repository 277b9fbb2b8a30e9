package demonode

import "syscall"

// sysProcAttr puts a node in its own process group, so that Kill reaches
// everything it started, and has the kernel kill it if this process dies
// first.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
}
