//go:build unix

package proctest

import (
	"os"
	"os/exec"
	"syscall"
)

// kill sends SIGKILL to cmd's process, or to its process group if it
// leads one of its own.
func kill(cmd *exec.Cmd) {
	if a := cmd.SysProcAttr; a != nil && a.Setpgid && a.Pgid == 0 {
		_ = syscall.Kill(-cmd.Process.Pid, syscall.SIGKILL)
		return
	}
	_ = cmd.Process.Kill()
}

// resume sends SIGCONT to p, so that a paused process can act on what it
// is told next.
func resume(p *os.Process) { _ = p.Signal(syscall.SIGCONT) }
