// Package proctest runs the child processes of the multi-process tests and
// of the examples: a program (often the test binary itself, started again
// with an environment that makes its TestMain act as a node) that writes
// "ready" on its standard output once it serves and runs until its standard
// input closes.
//
// Start waits for that line; Stop closes the standard input and kills the
// process if it has not exited in time; Kill ends it at once. Each of them
// returns only once the process has been reaped and its output read, so a
// test that ends every process it started leaves none behind.
//
// The package also holds what the actors of such processes share: Every,
// which sends an actor a message at an interval, and (on Linux) Mono, a
// clock whose readings compare across processes.
package proctest

import (
	"bufio"
	"fmt"
	"io"
	"os"
	"os/exec"
	"strings"
	"sync"
	"time"
)

// Spec says what Start runs.
type Spec struct {
	// Name names the process in Start's errors, as in "node a".
	Name string
	// Path is the program; Args are its arguments.
	Path string
	Args []string
	// Env is added to this process's environment for the child.
	Env []string
	// Stderr receives the child's standard error; nil discards it.
	Stderr io.Writer
	// Group puts the child in a process group of its own, which Kill ends
	// as a whole; on Linux the kernel also kills the child if this process
	// dies first. It has no effect on systems other than Unix.
	Group bool
	// OnLine, if not nil, receives every line the child writes to its
	// standard output but the ready line, in order, from one goroutine.
	OnLine func(line string)
	// ReadyWithin bounds Start's wait for the ready line; 0 waits as long
	// as it takes.
	ReadyWithin time.Duration
}

// TestBinary returns a Spec that runs the current test binary again,
// running none of its tests (-test.run=^$), with env added to its
// environment: its TestMain, or an init function, sees env and runs the
// child's part.
func TestBinary(name string, env ...string) Spec {
	return Spec{Name: name, Path: os.Args[0], Args: []string{"-test.run=^$"}, Env: env}
}

// Process is a running child process. Its methods are safe to call from
// several goroutines.
type Process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex // guards stdin
	stdin io.WriteCloser
	done  chan struct{} // closed once the output is read and the process reaped
	err   error         // the process's exit, once done is closed
}

// Start starts the process s describes and returns once it has written its
// ready line: a line that is "ready", or that starts with "ready ". If the
// process exits first, or is not ready within s.ReadyWithin, Start kills
// it, waits until it is reaped, and fails.
func Start(s Spec) (*Process, error) {
	cmd := exec.Command(s.Path, s.Args...)
	cmd.Env = append(os.Environ(), s.Env...)
	cmd.Stderr = s.Stderr
	if s.Group {
		cmd.SysProcAttr = groupAttr()
	}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		_ = stdin.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", s.Name, err)
	}
	p := &Process{cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan struct{})
	go p.read(stdout, ready, s.OnLine)
	var limit <-chan time.Time
	if s.ReadyWithin > 0 {
		t := time.NewTimer(s.ReadyWithin)
		defer t.Stop()
		limit = t.C
	}
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %v", s.Name, p.err)
	case <-limit:
		p.Kill()
		return nil, fmt.Errorf("%s not ready within %v", s.Name, s.ReadyWithin)
	}
}

// read passes the child's standard output to onLine, closing ready at the
// ready line, until the output ends; then it reaps the child.
func (p *Process) read(stdout io.Reader, ready chan<- struct{}, onLine func(string)) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), 1<<20)
	seen := false
	for sc.Scan() {
		line := sc.Text()
		if !seen && (line == "ready" || strings.HasPrefix(line, "ready ")) {
			seen = true
			close(ready)
			continue
		}
		if onLine != nil {
			onLine(line)
		}
	}
	_, _ = io.Copy(io.Discard, stdout)
	p.err = p.cmd.Wait()
	close(p.done)
}

// Pid returns the process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited, its output has been read
// and it has been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Alive reports whether Done is still open.
func (p *Process) Alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// Tell writes line, and a newline, to the process's standard input. It
// fails once Stop has closed it, or when the process no longer reads it.
func (p *Process) Tell(line string) error {
	p.mu.Lock()
	defer p.mu.Unlock()
	_, err := io.WriteString(p.stdin, line+"\n")
	return err
}

// Err returns how the process exited (nil for a zero exit status), once
// Done is closed; before that it returns nil.
func (p *Process) Err() error {
	select {
	case <-p.done:
		return p.err
	default:
		return nil
	}
}

// Signal sends sig to the process (not to its group): for instance
// SIGSTOP to pause it and SIGCONT to resume it.
func (p *Process) Signal(sig os.Signal) error { return p.cmd.Process.Signal(sig) }

// Stop asks the process to end by closing its standard input, after
// resuming it should it be paused, and waits up to limit (0: as long as it
// takes) for it to exit; then it kills it. It reports whether the process
// ended on its own; it returns true at once for a process that has ended.
func (p *Process) Stop(limit time.Duration) bool {
	if !p.Alive() {
		return true
	}
	resume(p.cmd.Process)
	p.mu.Lock()
	_ = p.stdin.Close()
	p.mu.Unlock()
	if limit <= 0 {
		<-p.done
		return true
	}
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case <-p.done:
		return true
	case <-t.C:
		p.Kill()
		return false
	}
}

// Kill sends SIGKILL to the process, or to its whole group if Spec.Group
// was set, and waits until it is reaped. It does nothing to a process that
// has ended.
func (p *Process) Kill() {
	if !p.Alive() {
		return
	}
	kill(p.cmd)
	<-p.done
}
