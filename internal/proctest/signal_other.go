//go:build !unix

package proctest

import (
	"os"
	"os/exec"
	"syscall"
)

// groupAttr returns nil: process groups are a Unix notion.
func groupAttr() *syscall.SysProcAttr { return nil }

// kill kills cmd's process.
func kill(cmd *exec.Cmd) { _ = cmd.Process.Kill() }

// resume does nothing: a process cannot be paused with a signal here.
func resume(*os.Process) {}
