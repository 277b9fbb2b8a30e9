//go:build linux

package e2e

import (
	"bytes"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cohort-go/cohort/internal/proctest"
)

// proc is a re-executed test binary in its own process group. Its stdout
// is read line by line into onLine; its stderr goes to a file that is
// scanned for data races and panics when the test ends.
type proc struct {
	*proctest.Process
	name string
}

// procs tracks every process a test started, so that all of them are
// reaped on every path and their stderr checked.
type procs struct {
	t   testing.TB
	dir string

	mu      sync.Mutex
	all     []*proc
	stderrs []stderrFile // of every process started, ready or not
	logs    []string
	seq     int
}

// stderrFile is where a process's stderr goes.
type stderrFile struct{ name, path string }

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
	ps.stderrs = append(ps.stderrs, stderrFile{name, errPath})
	ps.mu.Unlock()
	errFile, err := os.Create(errPath)
	if err != nil {
		return nil, err
	}
	defer errFile.Close()
	s := proctest.TestBinary(name, env...)
	s.Stderr, s.Group, s.OnLine, s.ReadyWithin = errFile, true, onLine, limit
	pp, err := proctest.Start(s)
	if err != nil {
		return nil, fmt.Errorf("%w; stderr: %s", err, tail(errPath, 2000))
	}
	p := &proc{Process: pp, name: name}
	ps.mu.Lock()
	ps.all = append(ps.all, p)
	ps.mu.Unlock()
	return p, nil
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

// cleanup ends every process still running and reports data races,
// panics and fatal errors found in their stderr.
func (ps *procs) cleanup() {
	ps.mu.Lock()
	all := slices.Clone(ps.all)
	stderrs := slices.Clone(ps.stderrs)
	ps.mu.Unlock()
	var wg sync.WaitGroup
	for _, p := range all {
		wg.Add(1)
		go func() {
			defer wg.Done()
			p.Stop(15 * time.Second)
		}()
	}
	wg.Wait()
	if ps.t.Failed() {
		keep, err := os.MkdirTemp("", "cohort-e2e-")
		if err == nil {
			paths := slices.Clone(ps.logs)
			for _, e := range stderrs {
				paths = append(paths, e.path)
			}
			for _, path := range paths {
				if b, err := os.ReadFile(path); err == nil {
					_ = os.WriteFile(filepath.Join(keep, filepath.Base(path)), b, 0o644)
				}
			}
			ps.t.Logf("stderr of every process kept in %s", keep)
		}
	}
	for _, e := range stderrs {
		b, err := os.ReadFile(e.path)
		if err != nil {
			continue
		}
		for _, bad := range []string{"WARNING: DATA RACE", "panic: ", "fatal error: "} {
			if i := bytes.Index(b, []byte(bad)); i >= 0 {
				ps.t.Errorf("%s stderr has %q:\n%s", e.name, bad, b[i:min(len(b), i+6000)])
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
		if !p.Alive() {
			continue
		}
		dir := fmt.Sprintf("/proc/%d/fd", p.Pid())
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
