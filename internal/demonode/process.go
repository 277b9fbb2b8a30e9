//go:build unix

package demonode

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cohort-go/cohort/internal/proctest"
)

// Process is a node running in a child OS process, in its own process
// group. Its owner ends it with Stop, Exit or Kill; each waits until the
// process has been reaped.
type Process struct {
	ID string
	*proctest.Process
}

// Spawn starts argv (a program that calls MaybeRunNode first) as the node
// cfg describes, and returns once the node is ready. output, if not nil,
// receives every other line the node writes to its standard output, from
// one goroutine; the node's standard error is this process's. If the node
// does not become ready before ctx's deadline, or exits first, it is
// killed and Spawn fails.
func Spawn(ctx context.Context, argv []string, cfg NodeConfig, output func(line string)) (*Process, error) {
	if len(argv) == 0 {
		return nil, errors.New("demonode: no command to run")
	}
	raw, err := json.Marshal(cfg)
	if err != nil {
		return nil, err
	}
	p, err := proctest.Start(proctest.Spec{Name: "demonode: node " + cfg.ID, Path: argv[0], Args: argv[1:],
		Env: []string{EnvConfig + "=" + string(raw)}, Stderr: os.Stderr, Group: true, OnLine: output,
		ReadyWithin: untilDeadline(ctx)})
	if err != nil {
		return nil, err
	}
	return &Process{ID: cfg.ID, Process: p}, nil
}

// untilDeadline is the time left before ctx's deadline, or 0 (no limit)
// if it has none.
func untilDeadline(ctx context.Context) time.Duration {
	if dl, ok := ctx.Deadline(); ok {
		return max(time.Until(dl), time.Millisecond)
	}
	return 0
}

// Stop stops the node gracefully (it hands its children to the other
// nodes and leaves), and kills it if it has not exited by ctx's deadline.
func (p *Process) Stop(ctx context.Context) error {
	return p.end(ctx)
}

// Exit tells the node to exit at once, without a graceful stop (flushing
// its CPU profile, if it writes one): its children are taken over once its
// lease expires, as after a crash. It kills the node if it has not exited
// by ctx's deadline.
func (p *Process) Exit(ctx context.Context) error {
	_ = p.Tell("exit")
	return p.end(ctx)
}

func (p *Process) end(ctx context.Context) error {
	limit := untilDeadline(ctx)
	if !p.Process.Stop(limit) {
		return fmt.Errorf("demonode: node %s killed: did not exit within %v", p.ID, limit)
	}
	return p.Err()
}

// stopTimeout bounds a graceful stop before the node is killed.
const stopTimeout = 20 * time.Second
