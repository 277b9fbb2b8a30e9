//go:build linux

package e2e

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"
)

// proc is a re-executed test binary in its own process group. Its stdout
// is read line by line into onLine; its stderr goes to a file that is
// scanned for data races and panics when the test ends.
type proc struct {
	name   string
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	stderr string
	ready  chan string   // the text after "ready", once
	done   chan struct{} // closed once the process has exited and its output is read

	mu       sync.Mutex
	paused   bool
	exitErr  error
	finished bool
}

// procs tracks every process a test started, so that all of them are
// reaped on every path and their stderr checked.
type procs struct {
	t   testing.TB
	dir string

	mu   sync.Mutex
	all  []*proc
	logs []string
	seq  int
}

func newProcs(t testing.TB) *procs {
	ps := &procs{t: t, dir: t.TempDir()}
	t.Cleanup(ps.cleanup)
	return ps
}

// start runs the test binary with env in a new process group; it is sent
// SIGKILL if the test process dies. onLine gets every stdout line but
// "ready ...", which start waits for (up to limit).
func (ps *procs) start(name string, env []string, onLine func(string), limit time.Duration) (*proc, error) {
	ps.mu.Lock()
	ps.seq++
	errPath := filepath.Join(ps.dir, fmt.Sprintf("%s-%d.stderr", name, ps.seq))
	ps.mu.Unlock()
	errFile, err := os.Create(errPath)
	if err != nil {
		return nil, err
	}
	defer errFile.Close()
	cmd := exec.Command(os.Args[0], "-test.run=^$")
	cmd.Env = append(os.Environ(), env...)
	cmd.Stderr = errFile
	cmd.SysProcAttr = &syscall.SysProcAttr{Setpgid: true, Pdeathsig: syscall.SIGKILL}
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("start %s: %w", name, err)
	}
	p := &proc{name: name, cmd: cmd, stdin: stdin, stderr: errPath, ready: make(chan string, 1), done: make(chan struct{})}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	go func() {
		sc := bufio.NewScanner(stdout)
		sc.Buffer(make([]byte, 64<<10), 1<<20)
		readySeen := false
		for sc.Scan() {
			line := sc.Text()
			if !readySeen && strings.HasPrefix(line, "ready") {
				readySeen = true
				p.ready <- strings.TrimSpace(strings.TrimPrefix(line, "ready"))
				continue
			}
			if onLine != nil {
				onLine(line)
			}
		}
		_, _ = io.Copy(io.Discard, stdout)
		err := cmd.Wait()
		p.mu.Lock()
		p.exitErr, p.finished = err, true
		p.mu.Unlock()
		close(p.done)
	}()
	select {
	case <-p.ready:
		return p, nil
	case <-p.done:
		return nil, fmt.Errorf("%s exited before it was ready: %v; stderr: %s", name, p.err(), tail(errPath, 2000))
	case <-time.After(limit):
		p.kill()
		return nil, fmt.Errorf("%s not ready within %v; stderr: %s", name, limit, tail(errPath, 2000))
	}
}

func (p *proc) err() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.exitErr
}

// alive reports whether the process has not exited.
func (p *proc) alive() bool {
	select {
	case <-p.done:
		return false
	default:
		return true
	}
}

// logger returns a logger that writes, at info level and above, to a file
// kept with the processes' stderr.
func (ps *procs) logger(name string) *zap.Logger {
	path := filepath.Join(ps.dir, name+".stderr")
	cfg := zap.NewProductionConfig()
	cfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	cfg.OutputPaths = []string{path}
	cfg.Sampling = nil
	log, err := cfg.Build()
	if err != nil {
		ps.t.Fatal(err)
	}
	ps.mu.Lock()
	ps.logs = append(ps.logs, path)
	ps.mu.Unlock()
	return log
}

// kill sends SIGKILL to the process group and waits until it is reaped.
func (p *proc) kill() {
	_ = syscall.Kill(-p.cmd.Process.Pid, syscall.SIGKILL)
	<-p.done
}

// pause stops the process with SIGSTOP.
func (p *proc) pause() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = true
	return syscall.Kill(p.cmd.Process.Pid, syscall.SIGSTOP)
}

// resume continues a paused process with SIGCONT.
func (p *proc) resume() error {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.paused = false
	return syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
}

// stop asks the process to end by closing its stdin and waits up to limit
// for it to exit; then it kills it. It reports whether the process ended
// on its own.
func (p *proc) stop(limit time.Duration) bool {
	if !p.alive() {
		return true
	}
	_ = syscall.Kill(p.cmd.Process.Pid, syscall.SIGCONT)
	_ = p.stdin.Close()
	select {
	case <-p.done:
		return true
	case <-time.After(limit):
		p.kill()
		return false
	}
}

// cleanup ends every process still running and reports data races,
// panics and fatal errors found in their stderr.
func (ps *procs) cleanup() {
	ps.mu.Lock()
	all := append([]*proc(nil), ps.all...)
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.stop(15 * time.Second)
		}()
	}
	wg.Wait()
	if ps.t.Failed() {
		keep, err := os.MkdirTemp("", "cohort-e2e-")
		if err == nil {
			paths := slices.Clone(ps.logs)
			for _, p := range all {
				paths = append(paths, p.stderr)
			}
			for _, path := range paths {
				if b, err := os.ReadFile(path); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(path)), b, 0o644)
				}
			}
			ps.t.Logf("stderr of every process kept in %s", keep)
		}
	}
	for _, p := range all {
		b, err := os.ReadFile(p.stderr)
		if err != nil {
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if i := bytes.Index(b, []byte(bad)); i >= 0 {
				ps.t.Errorf("%s stderr has %q:\n%s", p.name, bad, b[i:min(len(b), i+6000)])
			}
		}
	}
}

// tail returns the last n bytes of a file, for error messages.
func tail(path string, n int) string {
	b, err := os.ReadFile(path)
	if err != nil {
		return err.Error()
	}
	if len(b) > n {
		b = b[len(b)-n:]
	}
	return string(b)
}

// sourceOf names the process that opened connection c to one of the
// test's proxies: the node id for a node process, else the process's
// name, or "" when no process of the test holds the other end. It finds
// the socket of the connection's far end in /proc/net/tcp and the process
// that has it open among the test's processes; a proxy calls it before it
// forwards a byte, so a link between two given nodes can be cut alone.
func (ps *procs) sourceOf(c net.Conn) string {
	local, ok1 := c.LocalAddr().(*net.TCPAddr)
	remote, ok2 := c.RemoteAddr().(*net.TCPAddr)
	if !ok1 || !ok2 {
		return ""
	}
	inode := socketInode(remote.Port, local.Port)
	if inode == "" {
		return ""
	}
	want := "socket:[" + inode + "]"
	ps.mu.Lock()
	all := slices.Clone(ps.all)
	ps.mu.Unlock()
	for _, p := range all {
		if !p.alive() {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", p.cmd.Process.Pid)
		fds, err := os.ReadDir(dir)
		if err != nil {
			continue
		}
		for _, fd := range fds {
			if l, err := os.Readlink(filepath.Join(dir, fd.Name())); err == nil && l == want {
				return strings.TrimPrefix(p.name, "node-")
			}
		}
	}
	return ""
}

// socketInode returns the inode of the TCP socket whose local port is
// localPort and whose peer's port is remotePort, from /proc/net/tcp and
// tcp6 (all sockets of the test are on the loopback interface).
func socketInode(localPort, remotePort int) string {
	for _, table := range []string{"/proc/net/tcp", "/proc/net/tcp6"} {
		b, err := os.ReadFile(table)
		if err != nil {
			continue
		}
		for _, line := range strings.Split(string(b), "\n")[1:] {
			f := strings.Fields(line)
			if len(f) < 10 {
				continue
			}
			if hexPort(f[1]) == localPort && hexPort(f[2]) == remotePort && f[9] != "0" {
				return f[9]
			}
		}
	}
	return ""
}

// hexPort parses the port of an address of /proc/net/tcp ("0100007F:1F90").
func hexPort(addr string) int {
	_, port, ok := strings.Cut(addr, ":")
	if !ok {
		return -1
	}
	v, err := strconv.ParseUint(port, 16, 16)
	if err != nil {
		return -1
	}
	return int(v)
}
