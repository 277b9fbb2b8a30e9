package cohort_test

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// onNode counts the children of where that run on node.
func onNode(where map[string]string, node string) int {
	n := 0
	for _, on := range where {
		if on == node {
			n++
		}
	}
	return n
}

// Children are placed only on the nodes that run their supervisor; a
// supervisor stopped on one node of a running cluster releases its
// children there, and the others take them over at once, not at the end
// of a lease that never ends (the node stays up). Calls through the
// stopped handle fail at once with ErrSupervisorStopped.
func TestDistributedStopOnOneNodeHandsChildrenOver(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNodeTTL(t, cl, "a", nil, supervisor.DistributedOptions{}, 10*time.Second)
	b := startDNodeTTL(t, cl, "b", nil, supervisor.DistributedOptions{}, 10*time.Second)
	// c can run counters but does not run the supervisor "users".
	c := startNode(t, cohort.Config{NodeID: "c", Endpoints: cl.Endpoints(), LeaseTTL: 10 * time.Second})
	if err := c.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, a.Node, "a", "b", "c")
	ids := startCounters(t, a.sup, 30)
	where := waitAllRunning(t, a.sup, ids, 10*time.Second)
	if n := onNode(where, "c"); n != 0 {
		t.Fatalf("%d children placed on c, which does not run the supervisor: %v", n, where)
	}
	if onNode(where, "a") == 0 {
		t.Fatalf("no child on a: %v", where)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.sup.Stop(ctx)
	where = waitAllRunning(t, b.sup, ids, 5*time.Second)
	if n := onNode(where, "b"); n != len(ids) {
		t.Fatalf("after a's supervisor stopped, %d of %d children run on b: %v", n, len(ids), where)
	}
	for _, id := range ids {
		if _, err := b.sup.Call(ctx, id, "incr"); err != nil {
			t.Fatalf("call %s on b: %v", id, err)
		}
	}

	// The stopped handle fails at once, not at the deadline.
	began := time.Now()
	if _, err := a.sup.Call(ctx, ids[0], "get"); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("Call through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if err := a.sup.Cast(context.Background(), ids[0], "get"); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("Cast through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if _, err := a.sup.Whereis(ids[0]); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("Whereis through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if err := a.sup.TerminateChild(context.Background(), ids[0]); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("TerminateChild through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if _, err := a.sup.WhichChildren(ctx); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("WhichChildren through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if _, err := a.sup.CountChildren(ctx); !errors.Is(err, supervisor.ErrSupervisorStopped) {
		t.Fatalf("CountChildren through a stopped supervisor = %v, want ErrSupervisorStopped", err)
	}
	if time.Since(began) > 5*time.Second {
		t.Fatalf("calls through a stopped supervisor took %v", time.Since(began))
	}
	if _, err := b.sup.Whereis(ids[0]); err != nil {
		t.Fatalf("TerminateChild through a stopped supervisor removed the child: %v", err)
	}

	// Asking the node again starts the supervisor afresh, and it takes
	// children again.
	again, err := a.Node.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if again == a.sup {
		t.Fatal("DistributedSupervisor returned the stopped supervisor")
	}
	deadline := time.Now().Add(10 * time.Second)
	for onNode(waitAllRunning(t, b.sup, ids, 5*time.Second), "a") == 0 {
		if time.Now().After(deadline) {
			t.Fatal("no child moved back to a after its supervisor restarted")
		}
		time.Sleep(20 * time.Millisecond)
	}
	for _, id := range ids {
		if v, err := again.Call(ctx, id, "get"); err != nil || v != 1 {
			t.Fatalf("%s = %v, %v through the restarted supervisor; want 1", id, v, err)
		}
	}
}

// Drain on a node that stays in the cluster hands its children, with
// their state, to the other nodes, and places none on it again.
func TestDistributedDrainWithoutLeaving(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNodeTTL(t, cl, "a", nil, supervisor.DistributedOptions{StableWindow: 50 * time.Millisecond}, 10*time.Second)
	b := startDNodeTTL(t, cl, "b", nil, supervisor.DistributedOptions{StableWindow: 50 * time.Millisecond}, 10*time.Second)
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	ids := startCounters(t, a.sup, 20)
	waitAllRunning(t, a.sup, ids, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	for _, id := range ids {
		for range 2 {
			if _, err := b.sup.Call(ctx, id, "incr"); err != nil {
				t.Fatal(err)
			}
		}
	}
	a.sup.Drain(ctx)
	if n := len(a.sup.LocalChildren()); n != 0 {
		t.Fatalf("%d children still on a after Drain", n)
	}
	// A drained node has nothing to rebalance: Rebalance returns at once.
	rctx, rcancel := context.WithTimeout(ctx, 5*time.Second)
	if err := a.sup.Rebalance(rctx); err != nil {
		t.Fatalf("Rebalance on a drained node = %v", err)
	}
	rcancel()
	where := waitAllRunning(t, b.sup, ids, 5*time.Second)
	if n := onNode(where, "b"); n != len(ids) {
		t.Fatalf("after Drain, %d of %d children run on b: %v", n, len(ids), where)
	}
	for _, id := range ids {
		if v, err := b.sup.Call(ctx, id, "get"); err != nil || v != 2 {
			t.Fatalf("%s = %v, %v after Drain; want 2 (handed-off state)", id, v, err)
		}
	}
	for range 10 {
		ref, id, err := b.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "counter"})
		if err != nil {
			t.Fatal(err)
		}
		if ref.Node != "b" {
			t.Fatalf("child %s started on %s after a drained", id, ref.Node)
		}
	}
}

// initCount counts the Inits of a kind's children, by id.
type initCount struct {
	mu sync.Mutex
	n  map[string]int
}

func (s *initCount) factory() actor.Actor { return &counted{s: s} }

func (s *initCount) of(id string) int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.n[id]
}

type counted struct{ s *initCount }

func (c *counted) Init(_ *actor.Context, args any) error {
	c.s.mu.Lock()
	c.s.n[args.(supervisor.InitArgs).ID]++
	c.s.mu.Unlock()
	return nil
}

func (c *counted) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }

// A temporary child runs once: stopping its supervisor on its node
// removes it, and the supervisor started there again does not run it a
// second time.
func TestDistributedStopRemovesTemporaryChildren(t *testing.T) {
	s := &initCount{n: map[string]int{}}
	nodes := startDNodesWithKind(t, "once", s.factory, "a", "b")
	a := nodes[0]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	var onA []string
	for i := 0; len(onA) < 3; i++ {
		if i > 100 {
			t.Fatal("no temporary child placed on a in 100 initCount")
		}
		ref, id, err := a.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "once", Restart: supervisor.Temporary})
		if err != nil {
			t.Fatal(err)
		}
		if ref.Node == "a" {
			onA = append(onA, id)
		}
	}
	a.sup.Stop(ctx)
	etcdtest.WaitFor(t, 5*time.Second, 10*time.Millisecond, "the temporary children's specs to go", func() bool {
		for _, id := range onA {
			if _, err := nodes[1].sup.Whereis(id); !errors.Is(err, supervisor.ErrChildNotFound) {
				return false
			}
		}
		return true
	})
	again, err := a.Node.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	// A child started after the restart, placed on a, shows a runs
	// children again; by then a has passed over every spec it holds.
	for i := 0; ; i++ {
		if i > 100 {
			t.Fatal("no child placed on a after its supervisor restarted")
		}
		ref, _, err := again.StartChild(ctx, supervisor.ChildSpec{Kind: "once", Restart: supervisor.Temporary})
		if err != nil {
			t.Fatal(err)
		}
		if ref.Node == "a" {
			break
		}
	}
	for _, id := range onA {
		if n := s.of(id); n != 1 {
			t.Fatalf("temporary child %s started %d times", id, n)
		}
	}
}

// Calls made through the supervisor while a node stops gracefully all
// succeed, each exactly once: the node hands its children off while it
// is still a member, and tells its peers which calls it did not read.
func TestDistributedCallsDuringNodeStop(t *testing.T) {
	incrDuringNodeStop(t, func(ctx context.Context, d *supervisor.Distributed, id string) error {
		_, err := d.Call(ctx, id, "incr")
		return err
	})
}

// Casts made all through a node's Stop reach the children it hands over:
// each is handled once, by the old instance before its handoff or by the
// new one after.
func TestDistributedCastsDuringNodeStop(t *testing.T) {
	incrDuringNodeStop(t, func(ctx context.Context, d *supervisor.Distributed, id string) error {
		return d.Cast(ctx, id, "incr")
	})
}

// incrDuringNodeStop has a's goroutines send "incr" to 20 counters with
// incr, one goroutine per counter, all through b's Stop, and checks that
// none failed and that each counter counted exactly what was sent.
func incrDuringNodeStop(t *testing.T, incr func(context.Context, *supervisor.Distributed, string) error) {
	a, b := startPair(t, supervisor.DistributedOptions{})
	ids := startCounters(t, a.sup, 20)
	waitAllRunning(t, a.sup, ids, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var (
		wg     sync.WaitGroup
		mu     sync.Mutex
		done   = make(chan struct{})
		sent   = map[string]int{}
		failed []error
	)
	for _, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				select {
				case <-done:
					return
				default:
				}
				cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
				err := incr(cctx, a.sup, id)
				ccancel()
				mu.Lock()
				if err != nil {
					failed = append(failed, fmt.Errorf("%s: %w", id, err))
				} else {
					sent[id]++
				}
				mu.Unlock()
			}
		}()
	}
	time.Sleep(100 * time.Millisecond)
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond)
	close(done)
	wg.Wait()
	// A message that reaches b after it stopped reading is failed by b as
	// not delivered, and sent again where the child runs next: none may
	// fail.
	if len(failed) > 0 {
		t.Fatalf("%d messages failed while b stopped, one with: %v", len(failed), failed[0])
	}
	for _, id := range ids {
		if v, err := a.sup.Call(ctx, id, "get"); err != nil || v != sent[id] {
			t.Errorf("%s = %v, %v after %d incr messages", id, v, err, sent[id])
		}
	}
}

// startDNodesWithKind starts nodes ids, as startDNode does, on a new etcd,
// each registering kind with f as well, and waits until they see each
// other.
func startDNodesWithKind(t *testing.T, kind string, f supervisor.Factory, ids ...string) []dnode {
	t.Helper()
	cl := etcdtest.Start(t)
	nodes := make([]dnode, len(ids))
	for i, id := range ids {
		nodes[i] = startDNode(t, cl, id, nil, supervisor.DistributedOptions{})
		if err := nodes[i].RegisterKind(kind, f); err != nil {
			t.Fatal(err)
		}
	}
	waitMembers(t, nodes[0].Node, ids...)
	return nodes
}

// Many goroutines asking a node for one supervisor at once get one
// instance, and the node stays published as running it.
func TestDistributedSupervisorConcurrentStarts(t *testing.T) {
	cl := etcdtest.Start(t)
	b := startDNode(t, cl, "b", nil, supervisor.DistributedOptions{})
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	if err := a.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	const callers = 8
	got := make(chan *supervisor.Distributed, callers)
	for range callers {
		go func() {
			d, err := a.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
			if err != nil {
				t.Error(err)
			}
			got <- d
		}()
	}
	first := <-got
	for range callers - 1 {
		if d := <-got; d != first {
			t.Fatal("concurrent DistributedSupervisor calls returned different instances")
		}
	}
	waitPublished(t, b.Node, "a", true)
	ids := startCounters(t, b.sup, 30)
	if n := onNode(waitAllRunning(t, b.sup, ids, 10*time.Second), "a"); n == 0 {
		t.Fatal("no child placed on a")
	}
}

// Drain while children are being started leaves none on the drained node:
// a reconcile pass in progress when Drain begins is waited for.
func TestDistributedDrainDuringStarts(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNodeTTL(t, cl, "a", nil, supervisor.DistributedOptions{}, 10*time.Second)
	d := startDNodeTTL(t, cl, "d", nil, supervisor.DistributedOptions{}, 10*time.Second)
	waitMembers(t, a.Node, "a", "d")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for round := range 4 {
		specs := make([]supervisor.ChildSpec, 400)
		for i := range specs {
			specs[i] = supervisor.ChildSpec{ID: fmt.Sprintf("r%d-%03d", round, i), Kind: "counter"}
		}
		started := make(chan error, 1)
		go func() { _, err := a.sup.StartChildren(ctx, specs); started <- err }()
		// Drain once d has started children of this round.
		etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "d to start children", func() bool { return len(d.sup.LocalChildren()) > 0 })
		d.sup.Drain(ctx)
		if err := <-started; err != nil {
			t.Fatal(err)
		}
		if n := len(d.sup.LocalChildren()); n != 0 {
			t.Fatalf("round %d: %d children on d after Drain", round, n)
		}
		d.sup.Stop(ctx)
		again, err := d.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
		if err != nil {
			t.Fatal(err)
		}
		d.sup = again
	}
	cs, err := a.sup.WhichChildren(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if len(cs) != 1600 {
		t.Fatalf("%d children, want 1600", len(cs))
	}
}

// A temporary child pinned to a node that went away is not started by the
// node that comes back under the same id: the earlier incarnation may
// have run it. Its spec is removed instead.
func TestDistributedTemporaryNotRunByALaterIncarnation(t *testing.T) {
	cl := etcdtest.Start(t)
	s := &initCount{n: map[string]int{}}
	// y runs no supervisor, so nothing removes the spec before x is back.
	y := startNode(t, cohort.Config{NodeID: "y", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	// The spec as an earlier incarnation of x left it: pinned to x, with
	// no owner (x died).
	spec, err := json.Marshal(supervisor.ChildSpec{ID: "t1", Kind: "once", Restart: supervisor.Temporary, Node: "x"})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := y.Client().Put(ctx, y.Prefix()+"/sup/users/specs/t1", string(spec)); err != nil {
		t.Fatal(err)
	}
	x := startNode(t, cohort.Config{NodeID: "x", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	if err := x.RegisterKind("once", s.factory); err != nil {
		t.Fatal(err)
	}
	xs, err := x.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the stale temporary spec to go", func() bool {
		_, err := xs.Whereis("t1")
		return errors.Is(err, supervisor.ErrChildNotFound)
	})
	// A temporary child pinned to the present x runs, once.
	ref, _, err := xs.StartChild(ctx, supervisor.ChildSpec{ID: "t2", Kind: "once", Restart: supervisor.Temporary, Node: "x"})
	if err != nil || ref.Node != "x" {
		t.Fatalf("StartChild pinned to x = %v, %v", ref, err)
	}
	if _, err := x.Call(ctx, ref, "hi"); err != nil { // returns once Init has run
		t.Fatal(err)
	}
	if n := s.of("t1"); n != 0 {
		t.Fatalf("the stale temporary child started %d times", n)
	}
	if n := s.of("t2"); n != 1 {
		t.Fatalf("the temporary child started %d times, want 1", n)
	}
}

// A supervisor stopped with a context that has already ended still
// withdraws its node from placement: children go to the other nodes.
func TestDistributedStopWithEndedContextWithdraws(t *testing.T) {
	a, b := startPair(t, supervisor.DistributedOptions{})
	ended, cancel := context.WithCancel(context.Background())
	cancel()
	b.sup.Stop(ended)
	waitPublished(t, a.Node, "b", false)
	ids := startCounters(t, a.sup, 20)
	if n := onNode(waitAllRunning(t, a.sup, ids, 10*time.Second), "b"); n != 0 {
		t.Fatalf("%d children placed on b after its supervisor stopped", n)
	}
}

// However starts and stops of one supervisor interleave on a node, and
// however short the stops' contexts, the node is published as running it
// exactly while a live instance exists: no offer is lost or left behind.
func TestDistributedSupervisorChurnKeepsPublicationExact(t *testing.T) {
	a, b := startPair(t, supervisor.DistributedOptions{})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for g := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 10 {
				d, err := b.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
				if err != nil {
					t.Error(err)
					return
				}
				if (g+i)%2 == 0 {
					sctx, scancel := context.WithTimeout(ctx, 2*time.Millisecond)
					d.Stop(sctx)
					scancel()
				}
			}
		}()
	}
	wg.Wait()
	d, err := b.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	waitPublished(t, a.Node, "b", true)
	d.Stop(ctx)
	waitPublished(t, a.Node, "b", false)
}

// waitPublished waits until observer's ring shows member id published as
// running the supervisor "users" (want) or as a member not running it.
func waitPublished(t *testing.T, observer *cohort.Node, id string, want bool) {
	t.Helper()
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, fmt.Sprintf("%s to see %s running the supervisor: %v", observer.ID(), id, want), func() bool {
		m, ok := observer.Ring().Snapshot().Member(id)
		return ok && m.RunsSupervisor("users") == want
	})
}

// startPair starts nodes a and b running the supervisor "users" with
// opts, on a new etcd, once they see each other. Their leases are long:
// the tests that use them stop nodes gracefully, and wait for no lease to
// expire.
func startPair(t *testing.T, opts supervisor.DistributedOptions) (dnode, dnode) {
	t.Helper()
	cl := etcdtest.Start(t)
	a := startDNodeTTL(t, cl, "a", nil, opts, 10*time.Second)
	b := startDNodeTTL(t, cl, "b", nil, opts, 10*time.Second)
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	return a, b
}

// barrier is met once n instances are in Terminate at the same time.
type barrier struct {
	n   int
	mu  sync.Mutex
	in  int
	all chan struct{}
	met atomic.Int32 // instances that saw the barrier met
}

// barrierChild's Terminate waits for the barrier, or gives up after 3 s.
type barrierChild struct{ b *barrier }

func (c *barrierChild) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }

func (c *barrierChild) Terminate(*actor.Context, error) {
	c.b.mu.Lock()
	c.b.in++
	if c.b.in == c.b.n {
		close(c.b.all)
	}
	c.b.mu.Unlock()
	select {
	case <-c.b.all:
		c.b.met.Add(1)
	case <-time.After(3 * time.Second):
	}
}

// Stop stops a supervisor's children on the node all at once, as OTP
// stops a dynamic supervisor's: each is in Terminate while the others
// are, rather than after them.
func TestDistributedStopStopsChildrenAtOnce(t *testing.T) {
	const children = 8
	b := &barrier{n: children, all: make(chan struct{})}
	a := startDNodesWithKind(t, "slow", func() actor.Actor { return &barrierChild{b} }, "a")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for range children {
		if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "slow", Shutdown: 10 * time.Second}); err != nil {
			t.Fatal(err)
		}
	}
	a.sup.Stop(ctx)
	if met := b.met.Load(); met != children {
		t.Fatalf("%d of %d children were in Terminate together", met, children)
	}
}

// stateful holds as many bytes of state as its Args say, and hands them
// off when it moves.
type stateful struct{ state []byte }

func (s *stateful) Init(_ *actor.Context, args any) error {
	ia := args.(supervisor.InitArgs)
	if ia.Handoff != nil {
		s.state = ia.Handoff
		return nil
	}
	n, err := strconv.Atoi(string(ia.Args))
	if err != nil {
		return err
	}
	s.state = bytes.Repeat([]byte{'s'}, n)
	s.state[0] = 'i' // set at Init, not handed off
	return nil
}

func (s *stateful) HandleCall(_ *actor.Context, msg any) (any, error) {
	if msg == "state" {
		return fmt.Sprintf("%c%d", s.state[0], len(s.state)), nil
	}
	return nil, actor.ErrUnhandled
}

func (s *stateful) Handoff(*actor.Context) ([]byte, error) {
	out := bytes.Clone(s.state)
	out[0] = 'h'
	return out, nil
}

// Children whose handoff states add up to more than one etcd request
// holds all move with their state when their node stops; a state over
// MaxHandoffBytes moves without it, and the stopped event says so; Args
// over MaxArgsBytes are refused.
func TestDistributedHandoffOfLargeStates(t *testing.T) {
	cl := etcdtest.Start(t)
	var mu sync.Mutex
	var stopped []supervisor.DistEvent
	start := func(id string, listen bool) (*cohort.Node, *supervisor.Distributed) {
		n := startNode(t, cohort.Config{NodeID: id, Endpoints: cl.Endpoints(), LeaseTTL: 10 * time.Second})
		if err := n.RegisterKind("stateful", func() actor.Actor { return &stateful{} }); err != nil {
			t.Fatal(err)
		}
		var o supervisor.DistributedOptions
		if listen {
			o.Listener = func(e supervisor.DistEvent) {
				if e.Type == supervisor.DistChildStopped {
					mu.Lock()
					stopped = append(stopped, e)
					mu.Unlock()
				}
			}
		}
		d, err := n.DistributedSupervisor(context.Background(), "big", o)
		if err != nil {
			t.Fatal(err)
		}
		return n, d
	}
	a, da := start("a", false)
	b, _ := start("b", true)
	waitMembers(t, a, "a", "b")
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "a to see b run the supervisor", func() bool {
		for i := range 20 {
			if node, _ := da.NodeFor(fmt.Sprintf("probe-%d", i)); node == "b" {
				return true
			}
		}
		return false
	})
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	const size = 100 << 10
	var onB []string
	huge := ""
	for i := 0; len(onB) < 24 || huge == ""; i++ {
		id := fmt.Sprintf("s-%03d", i)
		if node, _ := da.NodeFor(id); node != "b" {
			continue
		}
		n := size
		if huge == "" {
			huge, n = id, supervisor.MaxHandoffBytes+1
		} else {
			onB = append(onB, id)
		}
		if _, _, err := da.StartChild(ctx, supervisor.ChildSpec{ID: id, Kind: "stateful", Args: []byte(strconv.Itoa(n))}); err != nil {
			t.Fatal(err)
		}
	}
	for id, node := range waitAllRunning(t, da, append([]string{huge}, onB...), 10*time.Second) {
		if node != "b" {
			t.Fatalf("%s runs on %s, want b (where a placed it)", id, node)
		}
	}
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	for _, id := range onB {
		v, err := da.Call(ctx, id, "state")
		if err != nil {
			t.Fatal(err)
		}
		if want := fmt.Sprintf("h%d", size); v != want {
			t.Errorf("%s after the move: state %v, want %s (handed off)", id, v, want)
		}
	}
	if v, err := da.Call(ctx, huge, "state"); err != nil || v != fmt.Sprintf("i%d", supervisor.MaxHandoffBytes+1) {
		t.Errorf("child with an oversized handoff: state %v, %v; want it started afresh from its Args", v, err)
	}
	mu.Lock()
	var reason error
	for _, e := range stopped {
		if e.ChildID == huge {
			reason = e.Reason
		}
	}
	mu.Unlock()
	if !errors.Is(reason, supervisor.ErrMoved) || !strings.Contains(fmt.Sprint(reason), "MaxHandoffBytes") {
		t.Errorf("stopped event of the oversized handoff: reason %v, want ErrMoved naming MaxHandoffBytes", reason)
	}
	_, _, err := da.StartChild(ctx, supervisor.ChildSpec{ID: "args", Kind: "stateful", Args: make([]byte, supervisor.MaxArgsBytes+1)})
	if !errors.Is(err, supervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "MaxArgsBytes") {
		t.Fatalf("oversized Args: %v, want ErrInvalidSpec naming MaxArgsBytes", err)
	}
}
