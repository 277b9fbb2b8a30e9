//go:build unix

package demonode

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"sync"
	"syscall"
	"time"
)

// Process is a node running in a child OS process, in its own process
// group. Its owner ends it with Stop, Exit or Kill; each waits until the
// process has been reaped.
type Process struct {
	ID    string
	cmd   *exec.Cmd
	stdin io.WriteCloser
	mu    sync.Mutex // guards writes to stdin
	done  chan struct{}
	err   error // the process's exit, once done is closed
}

// Spawn starts argv (a program that calls MaybeRunNode first) as the node
// cfg describes, and returns once the node is ready. output, if not nil,
// receives every other line the node writes to its standard output, from
// one goroutine; the node's standard error is this process's. If the node
// does not become ready before ctx ends, or exits first, it is killed and
// Spawn fails.
func Spawn(ctx context.Context, argv []string, cfg NodeConfig, output func(line string)) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("demonode: no command to run")
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	cmd := exec.Command(argv[0], argv[1:]...)
	cmd.Env = append(os.Environ(), EnvConfig+"="+string(raw))
	cmd.Stderr = os.Stderr
	cmd.SysProcAttr = sysProcAttr()
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		stdin.Close()
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("demonode: start node %s: %w", cfg.ID, err)
	}
	p := &Process{ID: cfg.ID, cmd: cmd, stdin: stdin, done: make(chan struct{})}
	ready := make(chan struct{})
	go func() {
		sc := bufio.NewScanner(stdout)
		seen := false
		for sc.Scan() {
			switch {
			case !seen && sc.Text() == "ready":
				seen = true
				close(ready)
			case output != nil:
				output(sc.Text())
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		p.err = cmd.Wait()
		close(p.done)
	}()
	select {
	case <-ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("demonode: node %s exited before it was ready: %v", cfg.ID, p.err)
	case <-ctx.Done():
		p.Kill()
		return nil, fmt.Errorf("demonode: node %s not ready: %w", cfg.ID, ctx.Err())
	}
}

// Pid returns the node's process id.
func (p *Process) Pid() int { return p.cmd.Process.Pid }

// Done is closed once the process has exited and been reaped.
func (p *Process) Done() <-chan struct{} { return p.done }

// Kill sends SIGKILL to the node's process group (kill -9) and waits until
// the process is reaped.
func (p *Process) Kill() {
	select {
	case <-p.done:
		return
	default:
	}
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// Stop stops the node gracefully (it hands its children to the other
// nodes and leaves), and kills it if it has not exited when ctx ends.
func (p *Process) Stop(ctx context.Context) error {
	p.mu.Lock()
	_ = p.stdin.Close()
	p.mu.Unlock()
	return p.wait(ctx)
}

// Exit tells the node to exit at once, without a graceful stop (flushing
// its CPU profile, if it writes one): its children are taken over once its
// lease expires, as after a crash. It kills the node if it has not exited
// when ctx ends.
func (p *Process) Exit(ctx context.Context) error {
	p.mu.Lock()
	_, _ = io.WriteString(p.stdin, "exit\n")
	_ = p.stdin.Close()
	p.mu.Unlock()
	return p.wait(ctx)
}

func (p *Process) wait(ctx context.Context) error {
	select {
	case <-p.done:
		return p.err
	case <-ctx.Done():
		p.Kill()
		return fmt.Errorf("demonode: node %s killed: did not exit in time: %w", p.ID, ctx.Err())
	}
}

// stopTimeout bounds a graceful stop before the node is killed.
const stopTimeout = 20 * time.Second
