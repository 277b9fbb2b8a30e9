package cohort_test

import (
	"context"
	"errors"
	"net"
	"os"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

func startNode(t testing.TB, cfg cohort.Config) *cohort.Node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cfg)
	if err != nil {
		t.Fatalf("start node %q: %v", cfg.NodeID, err)
	}
	t.Cleanup(func() { n.Stop(context.Background()) })
	return n
}

// waitMembers waits until n's ring holds exactly ids.
func waitMembers(t testing.TB, n *cohort.Node, ids ...string) {
	t.Helper()
	slices.Sort(ids)
	deadline := time.Now().Add(20 * time.Second)
	for {
		var got []string
		for _, m := range n.Ring().Nodes() {
			got = append(got, m.ID)
		}
		if slices.Equal(got, ids) {
			return
		}
		if time.Now().After(deadline) {
			t.Fatalf("node %s sees members %v, want %v", n.ID(), got, ids)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

type echo struct{}

func (echo) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func TestZeroConfigStartsEmbeddedEtcd(t *testing.T) {
	n := startNode(t, cohort.Config{})
	if n.ID() == "" || n.Prefix() != "/cohort/default" {
		t.Fatalf("id %q prefix %q", n.ID(), n.Prefix())
	}
	waitMembers(t, n, n.ID())
	ctx := context.Background()
	ref, err := n.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if ref.Node != n.ID() {
		t.Fatalf("ref node %q, want %q", ref.Node, n.ID())
	}
	if err := n.Registry().Register(ctx, "svc", ref, nil); err != nil {
		t.Fatal(err)
	}
	if v, err := n.Call(ctx, actor.Name("svc"), "hi"); err != nil || v != "hi" {
		t.Fatalf("call via global name = %v, %v", v, err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("stop: %v", err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatalf("second stop: %v", err)
	}
	if _, err := n.Call(ctx, ref, "x"); !errors.Is(err, actor.ErrSystemStopped) {
		t.Fatalf("call after stop = %v", err)
	}
}

func TestEmbeddedDataDirKeepsData(t *testing.T) {
	dir := t.TempDir()
	ctx := context.Background()
	n := startNode(t, cohort.Config{DataDir: dir, NodeID: "keeper"})
	if _, err := n.Client().Put(ctx, n.Prefix()+"/durable", "yes"); err != nil {
		t.Fatal(err)
	}
	if err := n.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := os.Stat(dir); err != nil {
		t.Fatalf("data dir removed: %v", err)
	}
	n2 := startNode(t, cohort.Config{DataDir: dir, NodeID: "keeper"})
	resp, err := n2.Client().Get(ctx, n2.Prefix()+"/durable")
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatalf("data lost across restart: %v %v", resp, err)
	}
}

func TestNodesSeeEachOther(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 10 * time.Second})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints(), LeaseTTL: 10 * time.Second})
	waitMembers(t, a, "a", "b")
	waitMembers(t, b, "a", "b")
	ctx := context.Background()
	ref, err := a.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.Registry().Register(ctx, "on-a", ref, []byte("meta")); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	for {
		e, err := b.Registry().Lookup(ctx, "on-a")
		if err == nil && e.Ref == ref && string(e.Value) == "meta" {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("b does not see a's name: %+v %v", e, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
	// A graceful stop removes the member at once, not after the TTL.
	start := time.Now()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitMembers(t, b, "b")
	// Seen well before the 10 s TTL: the leave was the deleted member key,
	// not the lease expiring.
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("graceful leave seen after %v", el)
	}
	// Its names go with its lease, revoked by Stop after the member key
	// was deleted: gone well before the TTL too.
	for {
		_, err := b.Registry().Lookup(ctx, "on-a")
		if errors.Is(err, actor.ErrNotFound) {
			break
		}
		if el := time.Since(start); el > 5*time.Second {
			t.Fatalf("a's name outlived its node by %v: %v", el, err)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func TestDuplicateNodeIDFails(t *testing.T) {
	cl := etcdtest.Start(t)
	startNode(t, cohort.Config{NodeID: "same", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	_, err := cohort.Start(context.Background(), cohort.Config{NodeID: "same", Endpoints: cl.Endpoints()})
	if !errors.Is(err, cohort.ErrDuplicateNode) || !strings.Contains(err.Error(), "is alive") {
		t.Fatalf("second node with same id: %v; want ErrDuplicateNode saying the first is alive", err)
	}
	// A start whose context ends first says what it was waiting for.
	ctx, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	_, err = cohort.Start(ctx, cohort.Config{NodeID: "same", Endpoints: cl.Endpoints()})
	if !errors.Is(err, cohort.ErrDuplicateNode) {
		t.Fatalf("second node with same id, short context: %v", err)
	}
}

func TestUnreachableEtcdFailsClearly(t *testing.T) {
	start := time.Now()
	_, err := cohort.Start(context.Background(), cohort.Config{
		Endpoints: []string{"127.0.0.1:1"}, DialTimeout: 500 * time.Millisecond,
	})
	if !errors.Is(err, cohort.ErrEtcdUnreachable) {
		t.Fatalf("start against nothing: %v", err)
	}
	if el := time.Since(start); el > 10*time.Second {
		t.Fatalf("took %v to fail", el)
	}
}

// DialTimeout bounds Start against a port that accepts connections and
// never answers, the probe of the endpoint included.
func TestDialTimeoutBoundsStartAgainstASilentPort(t *testing.T) {
	lis, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer lis.Close()
	go func() {
		for {
			c, err := lis.Accept()
			if err != nil {
				return
			}
			defer c.Close() // held open, silent, until the test ends
		}
	}()
	const dial = 2 * time.Second
	start := time.Now()
	_, err = cohort.Start(context.Background(), cohort.Config{Endpoints: []string{lis.Addr().String()}, DialTimeout: dial})
	if !errors.Is(err, cohort.ErrEtcdUnreachable) {
		t.Fatalf("start against a silent port: %v", err)
	}
	if el := time.Since(start); el > dial+1500*time.Millisecond {
		t.Fatalf("Start took %v with DialTimeout %v", el, dial)
	}
}

// A node cut off from etcd fences itself (its lease epoch ends before etcd
// expires the lease) and, once etcd is reachable again, rejoins with a new
// lease under which its member key is back.
func TestLeaseLossAndRejoin(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	cut := startNode(t, cohort.Config{NodeID: "cut", Endpoints: []string{proxy.Addr()}, LeaseTTL: 2 * time.Second})
	watcher := startNode(t, cohort.Config{NodeID: "watcher", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	waitMembers(t, watcher, "cut", "watcher")
	ep := cut.Session().Current()
	proxy.Pause()
	select {
	case <-ep.Lost():
	case <-time.After(10 * time.Second):
		t.Fatal("lease epoch not lost while cut off")
	}
	waitMembers(t, watcher, "watcher")
	proxy.Resume()
	waitMembers(t, watcher, "cut", "watcher")
	m, ok := watcher.Ring().Member("cut")
	if !ok {
		t.Fatal("cut node missing after rejoin")
	}
	resp, err := watcher.Client().Get(context.Background(), ring.MemberKey(watcher.Prefix(), "cut"))
	if err != nil || len(resp.Kvs) != 1 {
		t.Fatal(err)
	}
	if lease := resp.Kvs[0].Lease; lease == int64(ep.ID()) || lease == 0 {
		t.Fatalf("member key lease %x after rejoin; old lease %x", lease, ep.ID())
	}
	if m.ID != "cut" {
		t.Fatalf("member %+v", m)
	}
}

func TestStopResignsLeadership(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints()})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints()})
	ctx := context.Background()
	if _, err := a.Campaign(ctx, "boss", "a"); err != nil {
		t.Fatal(err)
	}
	won := make(chan time.Time, 1)
	go func() {
		if _, err := b.Campaign(ctx, "boss", "b"); err == nil {
			won <- time.Now()
		}
	}()
	// Wait until b's candidate key queues behind a's.
	deadline := time.Now().Add(10 * time.Second)
	for {
		resp, err := b.Client().Get(ctx, b.Prefix()+"/election/boss/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		if resp.Count == 2 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("%d candidates, want 2", resp.Count)
		}
		time.Sleep(5 * time.Millisecond)
	}
	stopped := time.Now()
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case at := <-won:
		if d := at.Sub(stopped); d > time.Second {
			t.Fatalf("takeover %v after stop; the TTL is 5s, so Stop did not resign", d)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("b never became leader")
	}
}

// A node cut off from etcd stops within about one bound of its etcd
// requests, max(5 s, TTL), even with a longer context: once the first
// request finds etcd unreachable, Stop does not wait on the others; a
// distributed supervisor's children are stopped, not handed off.
// A node whose etcd is gone (its process stopped: connections refused)
// stops within its documented bound, max(5 s, TTL), under a context
// without a deadline, with a distributed supervisor, a singleton and a
// leadership to give up, and says etcd was unreachable.
func TestStopWithEtcdGoneIsBounded(t *testing.T) {
	cl := etcdtest.Start(t)
	n := startNode(t, cohort.Config{NodeID: "gone", Endpoints: cl.Endpoints()})
	ctx := timeout(t, 30*time.Second)
	if err := n.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	d, err := n.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	if _, _, err := d.StartChild(ctx, supervisor.ChildSpec{Kind: "counter"}); err != nil {
		t.Fatal(err)
	}
	if _, err := n.Supervise(ctx, n.Singleton(supervisor.Spawn("billing", func() actor.Actor { return &exampleCounter{} }, actor.Options{}))); err != nil {
		t.Fatal(err)
	}
	if _, err := n.WaitName(ctx, "billing"); err != nil {
		t.Fatal(err)
	}
	cl.StopMember(0)
	start := time.Now()
	err = n.Stop(context.Background())
	if d := time.Since(start); d > 10*time.Second {
		t.Fatalf("Stop with etcd gone took %v (err %v); it is bounded by max(5 s, TTL)", d, err)
	}
	if !errors.Is(err, cohort.ErrEtcdUnreachable) {
		t.Fatalf("Stop with etcd gone = %v, want ErrEtcdUnreachable", err)
	}
}

func TestStopWithEtcdUnreachableIsBounded(t *testing.T) {
	for _, tc := range []struct {
		name  string
		setup func(t *testing.T, n *cohort.Node)
	}{
		{"leadership", func(t *testing.T, n *cohort.Node) {
			if _, err := n.Campaign(context.Background(), "e", "v"); err != nil {
				t.Fatal(err)
			}
		}},
		{"distributed supervisor", func(t *testing.T, n *cohort.Node) {
			if err := n.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
				t.Fatal(err)
			}
			d, err := n.DistributedSupervisor(context.Background(), "users", supervisor.DistributedOptions{})
			if err != nil {
				t.Fatal(err)
			}
			if _, _, err := d.StartChild(context.Background(), supervisor.ChildSpec{Kind: "counter"}); err != nil {
				t.Fatal(err)
			}
		}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			cl := etcdtest.Start(t)
			proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
			n := startNode(t, cohort.Config{NodeID: "cut", Endpoints: []string{proxy.Addr()}, LeaseTTL: 2 * time.Second})
			tc.setup(t, n)
			proxy.Pause()
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			start := time.Now()
			err := n.Stop(ctx)
			if d := time.Since(start); d > 10*time.Second {
				t.Fatalf("Stop with etcd unreachable took %v (err %v); its etcd requests are bounded by 5 s", d, err)
			}
			if err == nil {
				t.Fatal("Stop with etcd unreachable reported no error")
			}
		})
	}
}
