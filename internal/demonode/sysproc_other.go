//go:build unix && !linux

package demonode

import "syscall"

// sysProcAttr puts a node in its own process group, so that Kill reaches
// everything it started.
func sysProcAttr() *syscall.SysProcAttr {
	return &syscall.SysProcAttr{Setpgid: true}
}
