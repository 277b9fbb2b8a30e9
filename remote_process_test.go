package cohort_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"runtime/pprof"
	"runtime/trace"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/registry"
	"github.com/cohort-go/cohort/supervisor"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// Environment of a peer process: the test binary re-executed as a cohort
// node (see TestMain).
const (
	envPeerID   = "COHORT_TEST_PEER"
	envPeerEtcd = "COHORT_TEST_PEER_ETCD"
	// envPeerProfile names a file for the peer's CPU profile, for
	// looking into the benchmarks.
	envPeerProfile = "COHORT_TEST_PEER_CPUPROFILE"
	// envPeerTrace names a file for the peer's execution trace.
	envPeerTrace = "COHORT_TEST_PEER_TRACE"
	// envPeerDsup, if set, has the peer run the distributed supervisor
	// "users" with the kind "counter" (dcounter).
	envPeerDsup = "COHORT_TEST_PEER_DSUP"
	// envPeerDataDir, if set, has the peer start an embedded etcd with
	// this data directory, in place of COHORT_TEST_PEER_ETCD.
	envPeerDataDir = "COHORT_TEST_PEER_DATADIR"
)

func TestMain(m *testing.M) {
	if id := os.Getenv(envPeerID); id != "" {
		os.Exit(runPeer(id, strings.Split(os.Getenv(envPeerEtcd), ",")))
	}
	code := m.Run()
	closeBenchFixture()
	os.Exit(code)
}

func init() {
	actor.MustRegisterType[*wrapperspb.Int64Value]("google.protobuf.Int64Value")
	actor.MustRegisterType[counterState]("cohort_test.counterState")
}

// counterState is what the peer's counter reports.
type counterState struct {
	Count int64
	Sum   int64
}

// counter counts Int64Value casts and sums their values.
type counter struct{ st counterState }

func (c *counter) HandleCall(_ *actor.Context, msg any) (any, error) {
	st := c.st
	if msg == "reset" {
		c.st = counterState{}
	}
	return st, nil
}

func (c *counter) HandleCast(_ *actor.Context, msg any) error {
	c.st.Count++
	c.st.Sum += msg.(*wrapperspb.Int64Value).Value
	return nil
}

// blocker takes calls and never answers them, except "count", which tells
// how many it holds.
type blocker struct{ held int }

func (b *blocker) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if msg == "count" {
		return b.held, nil
	}
	b.held++
	ctx.DeferReply()
	return nil, nil
}

// runPeer is the main of a peer process: a node serving "peer.echo",
// "peer.counter" and "peer.blocker" by global name until its stdin closes.
func runPeer(id string, endpoints []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	cfg := cohort.Config{NodeID: id, Endpoints: endpoints, LeaseTTL: 2 * time.Second}
	if dir := os.Getenv(envPeerDataDir); dir != "" {
		cfg.Endpoints, cfg.DataDir = nil, dir
	}
	n, err := cohort.Start(ctx, cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer start:", err)
		return 1
	}
	defer n.Stop(context.Background())
	for name, a := range map[string]actor.Actor{
		"peer.echo": actor.Func(func(_ *actor.Context, msg any) (any, error) {
			if v, ok := msg.(*wrapperspb.Int64Value); ok {
				return wrapperspb.Int64(v.Value + 1), nil
			}
			return msg, nil
		}),
		"peer.counter": &counter{},
		"peer.blocker": &blocker{},
	} {
		ref, err := n.System().Spawn(ctx, a, actor.Options{})
		if err == nil {
			err = n.Registry().Register(ctx, name, ref, nil)
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer spawn:", err)
			return 1
		}
	}
	if os.Getenv(envPeerDsup) != "" {
		err := n.RegisterKind("counter", func() actor.Actor { return &dcounter{} })
		if err == nil {
			_, err = n.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
		}
		if err != nil {
			fmt.Fprintln(os.Stderr, "peer supervisor:", err)
			return 1
		}
	}
	if path := os.Getenv(envPeerProfile); path != "" {
		f, err := os.Create(path)
		if err == nil && pprof.StartCPUProfile(f) == nil {
			defer f.Close()
			defer pprof.StopCPUProfile()
		}
	}
	if path := os.Getenv(envPeerTrace); path != "" {
		f, err := os.Create(path)
		if err == nil && trace.Start(f) == nil {
			defer f.Close()
			defer trace.Stop()
		}
	}
	fmt.Println("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	return 0
}

// peerProcess is a node in another OS process.
type peerProcess struct{ *proctest.Process }

// startPeer starts the test binary as node id on etcd endpoints and waits
// until it serves; the peer is stopped when t ends.
func startPeer(t testing.TB, id string, endpoints []string) *peerProcess {
	t.Helper()
	p, err := spawnPeer(id, endpoints)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

// spawnPeer starts the test binary as node id on etcd endpoints and waits
// up to 30s until it serves.
func spawnPeer(id string, endpoints []string) (*peerProcess, error) {
	return startPeerProcess(proctest.TestBinary("peer process "+id, envPeerID+"="+id, envPeerEtcd+"="+strings.Join(endpoints, ",")))
}

// startPeerProcess starts s, with the peer's standard error going to this
// process's, and waits up to 30s until it is ready.
func startPeerProcess(s proctest.Spec) (*peerProcess, error) {
	s.Stderr, s.ReadyWithin = os.Stderr, 30*time.Second
	p, err := proctest.Start(s)
	if err != nil {
		return nil, err
	}
	return &peerProcess{p}, nil
}

// stop ends the peer gracefully (closing its stdin), or kills it after 10s.
func (p *peerProcess) stop() { p.Stop(10 * time.Second) }

func TestRemoteKillDashNineFailsPendingCallsAtOnce(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	peer := startPeer(t, "b", cl.Endpoints())
	waitMembers(t, a, "a", "b")
	ctx := timeout(t, 60*time.Second)
	if v, err := a.Call(ctx, actor.Name("peer.echo"), wrapperspb.Int64(1)); err != nil || v.(*wrapperspb.Int64Value).Value != 2 {
		t.Fatalf("call to the peer process = %v, %v", v, err)
	}
	const callers = 4
	errs := make(chan error, callers)
	for range callers {
		go func() { _, err := a.Call(ctx, actor.Name("peer.blocker"), "hold"); errs <- err }()
	}
	for {
		held, err := actor.Call[int](ctx, a, actor.Name("peer.blocker"), "count")
		if err != nil {
			t.Fatal(err)
		}
		if held == callers {
			break
		}
		time.Sleep(time.Millisecond)
	}
	start := time.Now()
	peer.Kill()
	for range callers {
		if err := <-errs; !errors.Is(err, cohort.ErrNodeDown) {
			t.Fatalf("pending call after kill -9 = %v", err)
		}
	}
	// Far less than the 2s lease TTL: the broken connection, not the
	// membership change, failed the calls.
	if d := time.Since(start); d > time.Second {
		t.Fatalf("pending calls failed %v after kill -9", d)
	} else {
		t.Logf("pending calls failed %v after kill -9", d)
	}
	if _, err := a.Call(ctx, actor.Name("peer.echo"), "x"); !errors.Is(err, cohort.ErrNodeDown) && !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("call to the killed node = %v", err)
	}
}

// A call through the distributed supervisor to a child whose node was
// killed (kill -9), made once the connection to that node is known to be
// down, is held until the child runs again on a survivor and answers
// there: a node that cannot be connected to has read nothing, so the call
// is certainly not handled and may be sent again.
func TestDistributedCallsAfterKillDashNineAreHeld(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{})
	p, err := startPeerProcess(proctest.TestBinary("peer process b", envPeerID+"=b",
		envPeerEtcd+"="+strings.Join(cl.Endpoints(), ","), envPeerDsup+"=1"))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true)
	ctx := timeout(t, 60*time.Second)
	ids := startCounters(t, a.sup, 20)
	where := waitAllRunning(t, a.sup, ids, 10*time.Second)
	var onB []string
	for _, id := range ids {
		if where[id] == "b" {
			onB = append(onB, id)
		}
	}
	if len(onB) == 0 {
		t.Fatal("no child placed on b")
	}
	ref, err := a.sup.Whereis(onB[0])
	if err != nil {
		t.Fatal(err)
	}
	p.Kill()
	// Once a knows the connection is down, nothing more is sent on it.
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "a to see b's connection down", func() bool {
		_, err := a.Call(ctx, ref, "get")
		return errors.Is(err, cohort.ErrNodeDown)
	})
	wantCounts(t, ctx, a.sup, onB, 0, 15*time.Second, "after its node was killed (from its new instance)")
}

// A node that runs the embedded etcd with a data directory, killed
// (kill -9), starts again under its own id at once: the lease of its dead
// run, which etcd renews on every restart, is revoked, and the names of
// that run are gone with it.
func TestEmbeddedEtcdNodeRestartsAfterKillDashNine(t *testing.T) {
	dir := t.TempDir()
	p, err := startPeerProcess(proctest.TestBinary("peer with an embedded etcd", envPeerID+"=solo", envPeerDataDir+"="+dir))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	p.Kill()
	n := startNode(t, cohort.Config{NodeID: "solo", DataDir: dir, LeaseTTL: 2 * time.Second})
	ctx := timeout(t, 10*time.Second)
	if ent, err := n.Registry().Lookup(ctx, "peer.echo"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("name of the killed run = %+v, %v; want it gone", ent, err)
	}
	if members := n.Ring().Nodes(); len(members) != 1 || members[0].ID != "solo" {
		t.Fatalf("members = %v, want this node alone", members)
	}
}

// A node restarted under its id right after its process was killed
// (kill -9) starts, once the dead run's lease expires, without a retry
// loop of its own.
func TestNodeRestartedRightAfterKillDashNineStarts(t *testing.T) {
	cl := etcdtest.Start(t)
	peer := startPeer(t, "phoenix", cl.Endpoints())
	peer.Kill()
	n := startNode(t, cohort.Config{NodeID: "phoenix", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	ctx := timeout(t, 10*time.Second)
	if ent, err := n.Registry().Lookup(ctx, "peer.echo"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("name of the killed run = %+v, %v; want it gone", ent, err)
	}
}
