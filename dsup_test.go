package cohort_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
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

// dcounter is a distributed child: it counts "incr" calls, crashes on
// "crash", exits normally on "done", and hands its count off on a move.
type dcounter struct {
	id string
	n  int
}

func (c *dcounter) Init(_ *actor.Context, args any) error {
	ia := args.(supervisor.InitArgs)
	c.id = ia.ID
	if ia.Handoff != nil {
		n, err := strconv.Atoi(string(ia.Handoff))
		if err != nil {
			return err
		}
		c.n = n
	}
	return nil
}

func (c *dcounter) HandleCall(ctx *actor.Context, msg any) (any, error) {
	switch msg {
	case "incr":
		c.n++
		return c.n, nil
	case "get":
		return c.n, nil
	case "node":
		return ctx.Self().Node, nil
	case "crash":
		panic("counter " + c.id + " crashed")
	case "done":
		ctx.Stop(actor.Normal)
		return c.n, nil
	}
	return nil, actor.ErrUnhandled
}

// HandleCast takes "incr" as HandleCall does.
func (c *dcounter) HandleCast(_ *actor.Context, msg any) error {
	if msg == "incr" {
		c.n++
		return nil
	}
	return actor.ErrUnhandled
}

func (c *dcounter) Handoff(*actor.Context) ([]byte, error) { return []byte(strconv.Itoa(c.n)), nil }

type dnode struct {
	*cohort.Node
	sup *supervisor.Distributed
}

func startDNode(t testing.TB, cl *etcdtest.Cluster, id string, endpoints []string, opts supervisor.DistributedOptions) dnode {
	t.Helper()
	return startDNodeTTL(t, cl, id, endpoints, opts, 2*time.Second)
}

// startDNodeTTL is startDNode with a lease TTL of ttl. Tests that do not
// wait for a lease to expire use a long one: a node of a loaded test
// machine that misses its renewals fences its children, as it should,
// and fails a test that is about something else.
func startDNodeTTL(t testing.TB, cl *etcdtest.Cluster, id string, endpoints []string, opts supervisor.DistributedOptions, ttl time.Duration) dnode {
	t.Helper()
	if endpoints == nil {
		endpoints = cl.Endpoints()
	}
	n := startNode(t, cohort.Config{NodeID: id, Endpoints: endpoints, LeaseTTL: ttl})
	if err := n.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	d, err := n.DistributedSupervisor(context.Background(), "users", opts)
	if err != nil {
		t.Fatal(err)
	}
	return dnode{n, d}
}

// waitAllRunning waits until every child in ids runs exactly once in the
// cluster, as of one revision, and returns where each runs.
func waitAllRunning(t testing.TB, d *supervisor.Distributed, ids []string, within time.Duration) map[string]string {
	t.Helper()
	deadline := time.Now().Add(within)
	for {
		cs, err := d.WhichChildren(context.Background())
		if err == nil {
			where := map[string]string{}
			for _, c := range cs {
				if c.Status == supervisor.StatusRunning {
					where[c.ID] = c.Node
				}
			}
			all := true
			for _, id := range ids {
				if where[id] == "" {
					all = false
				}
			}
			if all {
				return where
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("children not all running within %v: %+v %v", within, cs, err)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func startCounters(t testing.TB, d *supervisor.Distributed, n int) []string {
	t.Helper()
	ids := make([]string, n)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%03d", i)
		if _, _, err := d.StartChild(context.Background(), supervisor.ChildSpec{ID: ids[i], Kind: "counter"}); err != nil {
			t.Fatalf("start %s: %v", ids[i], err)
		}
	}
	return ids
}

func TestDistributedPlacementAndCalls(t *testing.T) {
	cl := etcdtest.Start(t)
	var nodes []dnode
	for _, id := range []string{"a", "b", "c"} {
		nodes = append(nodes, startDNode(t, cl, id, nil, supervisor.DistributedOptions{}))
	}
	waitMembers(t, nodes[0].Node, "a", "b", "c")
	ids := startCounters(t, nodes[0].sup, 30)
	where := waitAllRunning(t, nodes[1].sup, ids, 10*time.Second)
	perNode := map[string]int{}
	for _, id := range ids {
		perNode[where[id]]++
		if want, _ := nodes[2].sup.NodeFor(id); want != where[id] {
			t.Errorf("%s runs on %s, ring says %s", id, where[id], want)
		}
	}
	if len(perNode) != 3 {
		t.Fatalf("children on %d nodes, want 3: %v", len(perNode), perNode)
	}
	ctx := context.Background()
	// Any node reaches any child by id, wherever it runs.
	for i, id := range ids {
		from := nodes[i%3].sup
		v, err := from.Call(ctx, id, "incr")
		if err != nil || v != 1 {
			t.Fatalf("call %s from node %d = %v, %v", id, i%3, v, err)
		}
		on, err := from.Call(ctx, id, "node")
		if err != nil || on != where[id] {
			t.Fatalf("%s answered from %v (%v), placed on %s", id, on, err, where[id])
		}
	}
	total := 0
	for _, n := range nodes {
		total += len(n.sup.LocalChildren())
	}
	if total != len(ids) {
		t.Fatalf("%d local children across nodes, want %d", total, len(ids))
	}
	if _, _, err := nodes[0].sup.StartChild(ctx, supervisor.ChildSpec{ID: ids[0], Kind: "counter"}); !errors.Is(err, supervisor.ErrAlreadyStarted) {
		t.Fatalf("duplicate start: %v", err)
	}
	if _, _, err := nodes[0].sup.StartChild(ctx, supervisor.ChildSpec{ID: "x", Kind: "nobody-has-this"}); !errors.Is(err, supervisor.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v", err)
	}
	if _, _, err := nodes[0].sup.StartChild(ctx, supervisor.ChildSpec{ID: "bad/id", Kind: "counter"}); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("bad id: %v", err)
	}
	if err := nodes[1].sup.TerminateChild(ctx, ids[0]); err != nil {
		t.Fatal(err)
	}
	if _, err := nodes[2].sup.Call(ctx, ids[0], "get"); !errors.Is(err, supervisor.ErrChildNotFound) {
		t.Fatalf("call to terminated child: %v", err)
	}
	n, err := nodes[0].sup.CountChildren(ctx)
	if err != nil || n.Specs != len(ids)-1 || n.Running != len(ids)-1 {
		t.Fatalf("counts %+v, %v", n, err)
	}
}

// A node that dies (cut off from etcd) loses its children; they run on the
// survivors once its lease is gone, each exactly once.
func TestDistributedFailover(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{})
	b := startDNode(t, cl, "b", nil, supervisor.DistributedOptions{})
	victim := startDNode(t, cl, "victim", []string{proxy.Addr()}, supervisor.DistributedOptions{})
	waitMembers(t, a.Node, "a", "b", "victim")
	ids := startCounters(t, a.sup, 30)
	where := waitAllRunning(t, a.sup, ids, 10*time.Second)
	onVictim := 0
	for _, id := range ids {
		if where[id] == "victim" {
			onVictim++
		}
	}
	if onVictim == 0 {
		t.Fatal("no child on the victim")
	}
	proxy.Cut()
	died := time.Now()
	deadline := died.Add(2*time.Second + 5*time.Second)
	for {
		cs, err := a.sup.WhichChildren(context.Background())
		if err == nil {
			ok := len(cs) == len(ids)
			for _, c := range cs {
				if c.Status != supervisor.StatusRunning || c.Node == "victim" {
					ok = false
				}
			}
			if ok {
				break
			}
		}
		if time.Now().After(deadline) {
			t.Fatalf("children not back on survivors by TTL+5s: %+v", cs)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Logf("%d children of the dead node running elsewhere %v after its death", onVictim, time.Since(died))
	// The victim fenced itself: none of its children still runs there.
	if n := len(victim.sup.LocalChildren()); n != 0 {
		t.Fatalf("victim still runs %d children", n)
	}
	for _, id := range ids {
		if _, err := b.sup.Call(context.Background(), id, "get"); err != nil {
			t.Fatalf("call %s after failover: %v", id, err)
		}
	}
	// The victim is cut off: its Stop gives up on etcd quickly.
	quick, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
	defer cancel()
	victim.Stop(quick)
}

// A joining node takes its share; moved children keep their state through
// Handoff, and calls made during the moves are not lost.
func TestDistributedJoinMovesWithHandoff(t *testing.T) {
	cl := etcdtest.Start(t)
	opts := supervisor.DistributedOptions{StableWindow: 100 * time.Millisecond}
	a := startDNode(t, cl, "a", nil, opts)
	b := startDNode(t, cl, "b", nil, opts)
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	ids := startCounters(t, a.sup, 40)
	waitAllRunning(t, a.sup, ids, 10*time.Second)
	ctx := context.Background()
	for _, id := range ids {
		if _, err := b.sup.Call(ctx, id, "incr"); err != nil {
			t.Fatal(err)
		}
	}
	// Keep calling while c joins and children move.
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var callErr error
	var mu sync.Mutex
	counts := map[string]int{}
	for _, id := range ids {
		counts[id] = 1
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; ; i++ {
			select {
			case <-stop:
				return
			default:
			}
			id := ids[i%len(ids)]
			cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
			_, err := a.sup.Call(cctx, id, "incr")
			cancel()
			mu.Lock()
			if err != nil && callErr == nil {
				callErr = fmt.Errorf("incr %s: %w", id, err)
			}
			if err == nil {
				counts[id]++
			}
			mu.Unlock()
		}
	}()
	c := startDNode(t, cl, "c", nil, opts)
	deadline := time.Now().Add(15 * time.Second)
	for {
		moved := len(c.sup.LocalChildren())
		settled := true
		for _, id := range ids {
			if want, _ := a.sup.NodeFor(id); want == "c" {
				if r, err := a.sup.Whereis(id); err != nil || r.Node != "c" {
					settled = false
				}
			}
		}
		if moved > 0 && settled {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("join did not converge: c runs %d", moved)
		}
		time.Sleep(10 * time.Millisecond)
	}
	close(stop)
	wg.Wait()
	if callErr != nil {
		t.Fatalf("a call during the moves failed: %v", callErr)
	}
	for _, id := range ids {
		v, err := b.sup.Call(ctx, id, "get")
		if err != nil || v != counts[id] {
			t.Fatalf("%s = %v (%v) after moves, want %d: state lost", id, v, err, counts[id])
		}
	}
}

// A node's graceful stop drains its children to the others with state.
func TestDistributedGracefulStopDrains(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{})
	b := startDNode(t, cl, "b", nil, supervisor.DistributedOptions{})
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	ids := startCounters(t, a.sup, 20)
	where := waitAllRunning(t, a.sup, ids, 10*time.Second)
	ctx := context.Background()
	for _, id := range ids {
		for range 3 {
			if _, err := a.sup.Call(ctx, id, "incr"); err != nil {
				t.Fatal(err)
			}
		}
	}
	stopped := time.Now()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitAllRunning(t, a.sup, ids, 5*time.Second)
	t.Logf("drained in %v", time.Since(stopped))
	for _, id := range ids {
		v, err := a.sup.Call(ctx, id, "get")
		if err != nil || v != 3 {
			t.Fatalf("%s (was on %s) = %v, %v after drain; want 3", id, where[id], v, err)
		}
	}
}

func TestDistributedRestartTypes(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{ClusterMaxRestarts: 2,
		Intensity: supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}})
	ctx := context.Background()
	// Permanent: a crash restarts it (fresh state).
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "perm", Kind: "counter"}); err != nil {
		t.Fatal(err)
	}
	a.sup.Call(ctx, "perm", "incr")
	before, _ := a.sup.Whereis("perm")
	a.sup.Call(ctx, "perm", "crash")
	if v, err := a.sup.Call(ctx, "perm", "get"); err != nil || v != 0 {
		t.Fatalf("permanent after crash = %v, %v", v, err)
	}
	if after, _ := a.sup.Whereis("perm"); after == before {
		t.Fatal("restarted child kept its Ref")
	}
	// Transient exiting normally: spec deleted.
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "trans", Kind: "counter", Restart: supervisor.Transient}); err != nil {
		t.Fatal(err)
	}
	if _, err := a.sup.Call(ctx, "trans", "done"); err != nil {
		t.Fatalf("transient child's last call: %v", err)
	}
	waitGone(t, a.sup, "trans")
	// Temporary crashing: not restarted, spec deleted.
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "temp", Kind: "counter", Restart: supervisor.Temporary}); err != nil {
		t.Fatal(err)
	}
	a.sup.Call(ctx, "temp", "crash")
	waitGone(t, a.sup, "temp")
	// Crash loop: more than 1 restart a minute, twice, marks it failed.
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "loop", Kind: "counter"}); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		cctx, cancel := context.WithTimeout(ctx, time.Second)
		_, err := a.sup.Call(cctx, "loop", "crash")
		cancel()
		if errors.Is(err, supervisor.ErrChildFailed) {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("crash loop never marked failed; last %v", err)
		}
	}
	cs, _ := a.sup.WhichChildren(ctx)
	for _, c := range cs {
		if c.ID == "loop" && (c.Status != supervisor.StatusFailed || c.Failures != 2) {
			t.Fatalf("loop child %+v", c)
		}
	}
	// Starting a failed child again says so, and what to do.
	_, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "loop", Kind: "counter"})
	if !errors.Is(err, supervisor.ErrChildFailed) || !errors.Is(err, supervisor.ErrAlreadyStarted) || !strings.Contains(err.Error(), "TerminateChild") {
		t.Fatalf("StartChild of a failed child = %v", err)
	}
}

func waitGone(t *testing.T, d *supervisor.Distributed, id string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if _, err := d.Whereis(id); errors.Is(err, supervisor.ErrChildNotFound) {
			return
		}
		if time.Now().After(deadline) {
			cs, err := d.WhichChildren(context.Background())
			t.Fatalf("%s still has a spec; children: %+v, %v", id, cs, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// Many nodes calling FindOrStart for one id at once get one instance.
func TestDistributedFindOrStartRace(t *testing.T) {
	cl := etcdtest.Start(t)
	var nodes []dnode
	for _, id := range []string{"a", "b", "c"} {
		nodes = append(nodes, startDNode(t, cl, id, nil, supervisor.DistributedOptions{}))
	}
	waitMembers(t, nodes[0].Node, "a", "b", "c")
	ctx := context.Background()
	refs := make(chan actor.Ref, 30)
	var wg sync.WaitGroup
	for i := range 30 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ref, err := nodes[i%3].sup.FindOrStart(ctx, supervisor.ChildSpec{ID: "ring-7", Kind: "counter"})
			if err != nil {
				t.Error(err)
				return
			}
			refs <- ref
		}()
	}
	wg.Wait()
	close(refs)
	var first actor.Ref
	for r := range refs {
		if first.IsZero() {
			first = r
		}
		if r != first {
			t.Fatalf("two instances: %v and %v", first, r)
		}
	}
	n, _ := nodes[0].sup.CountChildren(ctx)
	if n.Specs != 1 || n.Running != 1 {
		t.Fatalf("counts %+v", n)
	}
}

// Specs survive a full stop of every node while etcd keeps its data.
func TestDistributedSpecsSurviveFullRestart(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{})
	ids := startCounters(t, a.sup, 10)
	waitAllRunning(t, a.sup, ids, 5*time.Second)
	if err := a.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	a2 := startDNode(t, cl, "a2", nil, supervisor.DistributedOptions{})
	waitAllRunning(t, a2.sup, ids, 5*time.Second)
}

// Children are placed only on nodes that offer their kind (and role).
func TestDistributedEligibility(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx := context.Background()
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{Role: "worker"})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints(), Roles: []string{"worker"}})
	if err := b.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	bs, err := b.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{Role: "worker"})
	if err != nil {
		t.Fatal(err)
	}
	c := startNode(t, cohort.Config{NodeID: "c", Endpoints: cl.Endpoints(), Roles: []string{"worker"}})
	if _, err := c.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{Role: "worker"}); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, a.Node, "a", "b", "c")
	// An id with no spec yet goes among the nodes that run the supervisor
	// with its role: never to a, which runs it without the role.
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "NodeFor of new ids to give b and c only", func() bool {
		seen := map[string]bool{}
		for i := range 64 {
			n, _ := a.sup.NodeFor(fmt.Sprintf("new-%d", i))
			seen[n] = true
		}
		return len(seen) == 2 && seen["b"] && seen["c"]
	})
	// a offers the kind but not the role; c has the role but not the kind.
	ids := startCounters(t, a.sup, 20)
	where := waitAllRunning(t, a.sup, ids, 10*time.Second)
	for id, n := range where {
		if n != "b" {
			t.Fatalf("%s placed on %s, only b is eligible", id, n)
		}
	}
	// The owner key is written before the child is spawned: wait for b to
	// have started them all.
	deadline := time.Now().Add(5 * time.Second)
	for len(bs.LocalChildren()) != len(ids) {
		if time.Now().After(deadline) {
			t.Fatalf("b runs %d of %d", len(bs.LocalChildren()), len(ids))
		}
		time.Sleep(5 * time.Millisecond)
	}
	// Pinned to a node: runs there and nowhere else.
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "pinned", Kind: "counter", Node: "c"}); !errors.Is(err, supervisor.ErrUnknownKind) {
		t.Fatalf("pin to a node without the kind: %v", err)
	}
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "pinned", Kind: "counter", Node: "b"}); err != nil {
		t.Fatal(err)
	}
}

// With manual balance nothing moves on a join until Rebalance.
func TestDistributedManualRebalance(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx := context.Background()
	opts := supervisor.DistributedOptions{Balance: supervisor.BalanceManual, StableWindow: 10 * time.Millisecond, MaxChildren: 25, MoveBatch: 3}
	a := startDNode(t, cl, "a", nil, opts)
	ids := startCounters(t, a.sup, 24)
	waitAllRunning(t, a.sup, ids, 5*time.Second)
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "counter"}); err != nil {
		t.Fatalf("25th child: %v", err)
	}
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "counter"}); !errors.Is(err, supervisor.ErrMaxChildren) {
		t.Fatalf("26th child: %v", err)
	}
	b := startDNode(t, cl, "b", nil, opts)
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	// b is in the ring, a's pass after the change has run (Rebalance-free):
	// nothing moved.
	time.Sleep(100 * time.Millisecond)
	if n := len(b.sup.LocalChildren()); n != 0 {
		t.Fatalf("%d children moved without Rebalance", n)
	}
	if err := a.sup.Rebalance(ctx); err != nil {
		t.Fatal(err)
	}
	// Rebalance returns once every move is done, over several batches.
	for _, c := range a.sup.LocalChildren() {
		if want, _ := a.sup.NodeFor(c.ID); want != "a" {
			t.Fatalf("%s still on a after Rebalance returned; it belongs on %s", c.ID, want)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for len(b.sup.LocalChildren()) == 0 {
		if time.Now().After(deadline) {
			t.Fatal("Rebalance moved nothing")
		}
		time.Sleep(5 * time.Millisecond)
	}
	for _, id := range ids {
		want, _ := a.sup.NodeFor(id)
		waitOn(t, a.sup, id, want)
	}
}

func waitOn(t *testing.T, d *supervisor.Distributed, id, node string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for {
		if r, err := d.Whereis(id); err == nil && r.Node == node {
			return
		}
		if time.Now().After(deadline) {
			r, err := d.Whereis(id)
			t.Fatalf("%s not on %s: %v %v", id, node, r, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

// A Locator replaces the hash ring; TerminateChildRef stops by instance.
func TestDistributedLocatorAndTerminateByRef(t *testing.T) {
	cl := etcdtest.Start(t)
	last := func(_ string, nodes []string) string { return nodes[len(nodes)-1] }
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{Locator: last})
	b := startDNode(t, cl, "b", nil, supervisor.DistributedOptions{Locator: last})
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor
	ids := startCounters(t, a.sup, 10)
	for id, n := range waitAllRunning(t, a.sup, ids, 5*time.Second) {
		if n != "b" {
			t.Fatalf("%s on %s; the locator puts everything on b", id, n)
		}
	}
	ctx := context.Background()
	ref, err := a.sup.Whereis(ids[3])
	if err != nil {
		t.Fatal(err)
	}
	if err := a.sup.TerminateChildRef(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if _, err := b.sup.Whereis(ids[3]); !errors.Is(err, supervisor.ErrChildNotFound) {
		t.Fatalf("terminated child still known: %v", err)
	}
	if err := a.sup.TerminateChildRef(ctx, ref); !errors.Is(err, supervisor.ErrChildNotFound) {
		t.Fatalf("second terminate: %v", err)
	}
}

// StartChildren stores many specs across several transactions, skips ids
// that exist (keeping the spec stored first), stores nothing when one spec
// is invalid, and respects MaxChildren for the whole batch.
func TestDistributedStartChildren(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx := context.Background()
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{MaxChildren: 1000})
	b := startDNode(t, cl, "b", nil, supervisor.DistributedOptions{MaxChildren: 1000})
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true) // placement counts b only once a sees it run the supervisor

	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "s0042", Kind: "counter", Restart: supervisor.Transient}); err != nil {
		t.Fatal(err)
	}
	specs := make([]supervisor.ChildSpec, 450)
	for i := range specs {
		specs[i] = supervisor.ChildSpec{ID: fmt.Sprintf("s%04d", i), Kind: "counter"}
	}
	specs[449].ID = "" // generated
	ids, err := a.sup.StartChildren(ctx, specs)
	if err != nil {
		t.Fatal(err)
	}
	if len(ids) != len(specs) || ids[0] != "s0000" || ids[449] == "" {
		t.Fatalf("ids: %d returned, first %q, last %q", len(ids), ids[0], ids[449])
	}
	where := waitAllRunning(t, b.sup, ids, 10*time.Second)
	if len(where) != 450 {
		t.Fatalf("%d running, want 450", len(where))
	}
	kids, err := b.sup.WhichChildren(ctx)
	if err != nil {
		t.Fatal(err)
	}
	seen := false
	for _, k := range kids {
		if k.ID == "s0042" {
			seen = true
			if k.Restart != supervisor.Transient {
				t.Fatalf("s0042 = %+v, want the spec stored first (transient)", k)
			}
		}
	}
	if !seen {
		t.Fatal("s0042 missing from WhichChildren")
	}

	bad := []supervisor.ChildSpec{{ID: "t1", Kind: "counter"}, {ID: "bad/id", Kind: "counter"}}
	if _, err := a.sup.StartChildren(ctx, bad); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("invalid spec: %v, want ErrInvalidSpec", err)
	}
	dup := []supervisor.ChildSpec{{ID: "t4", Kind: "counter"}, {ID: "t5", Kind: "counter"}, {ID: "t4", Kind: "counter"}}
	if _, err := a.sup.StartChildren(ctx, dup); !errors.Is(err, supervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "same id") {
		t.Fatalf("one id twice in a batch: %v, want ErrInvalidSpec", err)
	}
	unknown := []supervisor.ChildSpec{{ID: "t2", Kind: "counter"}, {ID: "t3", Kind: "nope"}}
	if _, err := a.sup.StartChildren(ctx, unknown); !errors.Is(err, supervisor.ErrUnknownKind) {
		t.Fatalf("unknown kind: %v, want ErrUnknownKind", err)
	}
	many := make([]supervisor.ChildSpec, 600)
	for i := range many {
		many[i] = supervisor.ChildSpec{Kind: "counter"}
	}
	if _, err := a.sup.StartChildren(ctx, many); !errors.Is(err, supervisor.ErrMaxChildren) {
		t.Fatalf("over MaxChildren: %v, want ErrMaxChildren", err)
	}
	n, err := a.sup.CountChildren(ctx)
	if err != nil {
		t.Fatal(err)
	}
	if n.Specs != 450 {
		t.Fatalf("%d specs after the refused batches, want 450", n.Specs)
	}
}

// stubborn is a distributed child whose Terminate does not return until
// its channel is closed.
type stubborn struct{ stuck <-chan struct{} }

func (s stubborn) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }
func (s stubborn) Terminate(*actor.Context, error)             { <-s.stuck }

// A node that loses its lease stops its children before another node can
// start them, even when a child's Terminate would outlast the lease: the
// fence gives it only until shortly after the lease's proven alive-until
// instant (its shutdown timeout of 30 s notwithstanding), then abandons
// it, and the lost lease is revoked only after that.
func TestDistributedFenceBeatsTakeover(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	stuck := make(chan struct{})
	type seen struct {
		e  supervisor.DistEvent
		at time.Time
	}
	var mu sync.Mutex
	var events []seen
	onA := func(_ string, nodes []string) string {
		for _, n := range nodes {
			if n == "a" {
				return n
			}
		}
		return nodes[0]
	}
	opts := supervisor.DistributedOptions{Locator: onA, Listener: func(e supervisor.DistEvent) {
		mu.Lock()
		events = append(events, seen{e, time.Now()})
		mu.Unlock()
	}}
	start := func(id string, endpoints []string) *supervisor.Distributed {
		n := startNode(t, cohort.Config{NodeID: id, Endpoints: endpoints, LeaseTTL: 3 * time.Second, LeaseMargin: 1500 * time.Millisecond})
		if err := n.RegisterKind("stubborn", func() actor.Actor { return stubborn{stuck} }); err != nil {
			t.Fatal(err)
		}
		d, err := n.DistributedSupervisor(context.Background(), "stubborn", opts)
		if err != nil {
			t.Fatal(err)
		}
		return d
	}
	a := start("a", []string{proxy.Addr()})
	b := start("b", cl.Endpoints())
	t.Cleanup(func() { close(stuck) }) // before the nodes stop
	deadline := time.Now().Add(10 * time.Second)
	for len(b.Nodes()) != 2 {
		if time.Now().After(deadline) {
			t.Fatal("nodes do not see each other")
		}
		time.Sleep(5 * time.Millisecond)
	}
	ctx := context.Background()
	ref, _, err := b.StartChild(ctx, supervisor.ChildSpec{ID: "s", Kind: "stubborn", Shutdown: 30 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	if ref.Node != "a" {
		t.Fatalf("child on %s, want a", ref.Node)
	}
	// The owner key is written before a starts the child: wait for the
	// start itself, or the pause could keep the claim's answer from a and
	// the child would never run there.
	deadline = time.Now().Add(10 * time.Second)
	for {
		mu.Lock()
		ran := slices.ContainsFunc(events, func(s seen) bool {
			return s.e.Type == supervisor.DistChildStarted && s.e.Node == "a" && s.e.ChildID == "s"
		})
		mu.Unlock()
		if ran {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("a did not start the child")
		}
		time.Sleep(5 * time.Millisecond)
	}
	proxy.Pause()
	t.Cleanup(proxy.Resume)
	var stopped, started time.Time
	deadline = time.Now().Add(15 * time.Second)
	for started.IsZero() {
		if time.Now().After(deadline) {
			t.Fatalf("child not taken over by b; stopped on a at %v", stopped)
		}
		time.Sleep(5 * time.Millisecond)
		mu.Lock()
		for _, s := range events {
			switch {
			case s.e.Type == supervisor.DistChildStopped && s.e.Node == "a" && s.e.ChildID == "s":
				stopped = s.at
			case s.e.Type == supervisor.DistChildStarted && s.e.Node == "b" && s.e.ChildID == "s":
				started = s.at
			}
		}
		mu.Unlock()
	}
	if stopped.IsZero() {
		t.Fatalf("b started the child at %v; a never reported it stopped", started)
	}
	if !stopped.Before(started) {
		t.Fatalf("b started the child %v before a had stopped it", stopped.Sub(started))
	}
	if len(a.LocalChildren()) != 0 {
		t.Fatalf("a still lists %v", a.LocalChildren())
	}
}

// oneshot stops itself, normally, with the first message it handles,
// which its Init sends it; inits counts its starts.
type oneshot struct{ inits *atomic.Int64 }

func (o oneshot) Init(c *actor.Context, _ any) error {
	o.inits.Add(1)
	return c.System().Cast(c.Context(), c.Self(), "stop")
}

func (o oneshot) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

func (o oneshot) HandleCast(c *actor.Context, _ any) error {
	c.Stop(actor.Normal)
	return nil
}

// A transient child that exits normally the moment it starts is seen to
// exit normally, not as gone: its spec is removed and it never runs again.
func TestDistributedTransientExitingAtStartIsRemoved(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startDNode(t, cl, "a", nil, supervisor.DistributedOptions{})
	var inits atomic.Int64
	if err := a.RegisterKind("oneshot", func() actor.Actor { return oneshot{inits: &inits} }); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	const n = 30
	for i := range n {
		id := fmt.Sprintf("once-%02d", i)
		// StartChild returns the Ref the child ran under, even when it
		// has already stopped and its spec is removed.
		ref, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: id, Kind: "oneshot", Restart: supervisor.Transient})
		if err != nil || ref.IsZero() {
			t.Fatalf("StartChild of %s: %v, %v; want its Ref", id, ref, err)
		}
		waitGone(t, a.sup, id)
	}
	if got := inits.Load(); got != n {
		t.Fatalf("%d starts of %d transient children that exited normally", got, n)
	}
}
