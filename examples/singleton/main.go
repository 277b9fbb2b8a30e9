//go:build unix

// Command singleton shows a cluster-wide singleton with fenced writes. It
// starts an embedded etcd and three node processes on this machine (the
// program re-executes itself), each supervising the same singleton: a
// ledger writer that writes to etcd every 200ms, every write guarded by
// its fencing token. Then it kills the holder (kill -9), pauses the next
// one (SIGSTOP) for longer than the lease TTL and resumes it, and stops the
// third gracefully, printing who runs the writer, how long each takeover
// took, and the resumed holder's stale-token writes being rejected.
//
//	go run ./examples/singleton
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/supervisor"
)

const (
	ttl       = 2 * time.Second
	ledgerKey = "/demo/ledger"
)

func main() {
	node := flag.String("node", "", "run as the cluster node with this id (used by the demo itself)")
	endpoints := flag.String("endpoints", "", "etcd endpoints, comma-separated (with -node)")
	flag.Parse()
	var err error
	if *node != "" {
		err = runNode(*node, strings.Split(*endpoints, ","))
	} else {
		err = demo()
	}
	if err != nil {
		fmt.Fprintln(os.Stderr, "singleton:", err)
		os.Exit(1)
	}
}

// Ledger is the singleton: while its term lasts it appends to the ledger
// key in etcd, each write fenced by the term's token.
type Ledger struct {
	term      *supervisor.Term
	seq       int
	stopTicks func()
}

type tick struct{}

// Init starts the ledger's write timer.
func (l *Ledger) Init(ctx *actor.Context, _ any) error {
	say("elected with fencing token %d: writing the ledger", l.term.Token())
	l.stopTicks = proctest.Every(ctx.System(), ctx.Self(), 200*time.Millisecond, tick{})
	return nil
}

// HandleCall answers nothing; the ledger works on its timer.
func (l *Ledger) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

// HandleInfo writes the next ledger entry, fenced.
func (l *Ledger) HandleInfo(ctx *actor.Context, _ any) error {
	l.write(ctx.Context())
	return nil
}

func (l *Ledger) write(ctx context.Context) {
	l.seq++
	ctx, cancel := context.WithTimeout(ctx, time.Second)
	defer cancel()
	entry := fmt.Sprintf("%s token=%d seq=%d", l.term.Node(), l.term.Token(), l.seq)
	_, err := l.term.Write(ctx, clientv3.OpPut(ledgerKey, entry))
	switch {
	case errors.Is(err, supervisor.ErrFenced):
		say("write %q REJECTED by etcd: token %d is stale", entry, l.term.Token())
	case err != nil:
		say("write %q failed: %v", entry, err)
	}
}

// Terminate says why the ledger stops; after losing its term it tries
// one last write, which etcd rejects.
func (l *Ledger) Terminate(ctx *actor.Context, reason error) {
	l.stopTicks()
	say("ledger stopped: %v", reason)
	if errors.Is(reason, supervisor.ErrLeadershipLost) {
		l.write(context.Background())
	}
}

var nodeID string

func say(format string, args ...any) {
	fmt.Printf("  [%s] %s\n", nodeID, fmt.Sprintf(format, args...))
}

// runNode is one node process: it supervises the ledger singleton until its
// stdin closes, then stops gracefully.
func runNode(id string, endpoints []string) error {
	nodeID = id
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cohort.Config{NodeID: id, Endpoints: endpoints, LeaseTTL: ttl})
	if err != nil {
		return err
	}
	ledger := supervisor.Fenced("ledger", func(t *supervisor.Term) actor.Actor { return &Ledger{term: t} }, actor.Options{})
	if _, err := n.Supervise(ctx, n.Singleton(ledger)); err != nil {
		n.Stop(context.Background())
		return err
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return n.Stop(context.Background())
}

// spawn starts this program again as node id and waits up to 30s until
// it serves; the node's output goes to this process's.
func spawn(id string, endpoints []string) (*proctest.Process, error) {
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return proctest.Start(proctest.Spec{
		Name:        "node " + id,
		Path:        exe,
		Args:        []string{"-node", id, "-endpoints", strings.Join(endpoints, ",")},
		Stderr:      os.Stderr,
		OnLine:      func(line string) { fmt.Println(line) },
		ReadyWithin: 30 * time.Second,
	})
}

func demo() error {
	nodeID = "demo"
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	fmt.Println("starting an embedded etcd and three node processes (lease TTL 2s)")
	obs, err := cohort.Start(ctx, cohort.Config{NodeID: "observer", LeaseTTL: ttl})
	if err != nil {
		return err
	}
	defer obs.Stop(context.Background())
	procs := map[string]*proctest.Process{}
	defer func() {
		for _, p := range procs {
			p.Stop(0)
		}
	}()
	for _, id := range []string{"node-1", "node-2", "node-3"} {
		p, err := spawn(id, obs.Endpoints())
		if err != nil {
			return err
		}
		procs[id] = p
	}
	el, err := obs.Election("ledger")
	if err != nil {
		return err
	}
	octx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	leaders := el.Observe(octx)
	next := func(not string) (election.Leader, error) {
		for {
			select {
			case l, ok := <-leaders:
				if !ok {
					return election.Leader{}, ctx.Err()
				}
				if l.Value != not {
					return l, nil
				}
			case <-ctx.Done():
				return election.Leader{}, ctx.Err()
			}
		}
	}
	show := func() {
		time.Sleep(700 * time.Millisecond)
		if resp, err := obs.Client().Get(ctx, ledgerKey); err == nil && len(resp.Kvs) == 1 {
			fmt.Printf("ledger now: %s\n", resp.Kvs[0].Value)
		}
	}

	leader, err := next("")
	if err != nil {
		return err
	}
	fmt.Printf("\n== %s runs the ledger (fencing token %d); the others wait\n", leader.Value, leader.Rev)
	show()

	fmt.Printf("\n== kill -9 %s\n", leader.Value)
	at := time.Now()
	procs[leader.Value].Kill()
	delete(procs, leader.Value)
	leader, err = next(leader.Value)
	if err != nil {
		return err
	}
	fmt.Printf("== %s took over %v after the kill (token %d; lease TTL %v)\n", leader.Value, time.Since(at).Round(time.Millisecond), leader.Rev, ttl)
	show()

	paused := leader.Value
	fmt.Printf("\n== SIGSTOP %s for longer than the TTL\n", paused)
	at = time.Now()
	if err := procs[paused].Signal(syscall.SIGSTOP); err != nil {
		return err
	}
	leader, err = next(paused)
	if err != nil {
		return err
	}
	fmt.Printf("== %s took over %v after the pause (token %d)\n", leader.Value, time.Since(at).Round(time.Millisecond), leader.Rev)
	show()
	fmt.Printf("\n== SIGCONT %s: it finds its term over; its writes with the old token are rejected\n", paused)
	if err := procs[paused].Signal(syscall.SIGCONT); err != nil {
		return err
	}
	show()

	fmt.Printf("\n== graceful stop of %s\n", leader.Value)
	at = time.Now()
	stopping := procs[leader.Value]
	delete(procs, leader.Value)
	go stopping.Stop(0)
	old := leader.Value
	leader, err = next(old)
	if err != nil {
		return err
	}
	fmt.Printf("== %s took over %v after the stop began (token %d)\n", leader.Value, time.Since(at).Round(time.Millisecond), leader.Rev)
	show()
	<-stopping.Done()

	fmt.Println("\n== stopping")
	stopObserving()
	for id, p := range procs {
		p.Stop(0)
		delete(procs, id)
	}
	return nil
}
