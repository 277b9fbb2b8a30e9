package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
)

// laggingNode starts the distributed supervisor "users" on node b, a
// member running it, whose ring watches etcd through proxy: pausing the
// proxy makes b's ring view lag while its specs view (the mirror) keeps
// up. join publishes a member running "users" with kind "k".
func laggingNode(t *testing.T, prefix string) (d *Distributed, cli *clientv3.Client, proxy *etcdtest.Proxy, join func(string)) {
	t.Helper()
	cl := etcdtest.Start(t)
	cli = cl.Client(t)
	proxy = etcdtest.NewProxy(t, cl.Endpoint(0))
	lagging := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	ctx, cancel := context.WithCancel(context.Background()) // the ring lives as long as it
	t.Cleanup(cancel)
	sess, err := lease.Start(ctx, cli, lease.Config{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	join = func(id string) {
		v, _ := json.Marshal(ring.Member{ID: id, Kinds: []string{"k"}, Supervisors: []string{"users"}})
		if _, err := cli.Put(context.Background(), ring.MemberKey(prefix, id), string(v), clientv3.WithLease(sess.Current().ID())); err != nil {
			t.Fatal(err)
		}
	}
	join("b")
	rg, err := ring.Watch(ctx, lagging, prefix, ring.Options{LocalID: "b", RetryDelay: 10 * time.Millisecond})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rg.Close)
	sys := actor.NewSystem(actor.Config{Node: "b"})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	kind := func() actor.Actor { return actor.Func(func(*actor.Context, any) (any, error) { return nil, nil }) }
	d, err = StartDistributed(ctx, Cluster{NodeID: "b", Prefix: prefix, Client: cli, Session: sess, Ring: rg, System: sys,
		Kind:  func(k string) (Factory, bool) { return kind, k == "k" },
		Offer: func(context.Context, string, bool) error { return nil }}, "users", DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d, cli, proxy, join
}

// A node whose view of the ring lags behind its view of the specs does not
// remove a temporary child pinned to a node it does not yet see running
// the supervisor: that node placed the child on itself, seeing itself run
// it. Once the ring catches up the spec stays; when the node leaves, it
// goes.
func TestTemporarySpecKeptWhileTheRingLags(t *testing.T) {
	d, cli, proxy, join := laggingNode(t, "/ringlag")
	rg := d.c.Ring
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()

	proxy.Pause() // b's ring sees nothing from here on
	join("a")
	spec, _ := encodeSpec(ChildSpec{ID: "t1", Kind: "k", Restart: Temporary, Node: "a"})
	put, err := cli.Put(ctx, d.k.spec("t1"), string(spec))
	if err != nil {
		t.Fatal(err)
	}
	exists := func() bool {
		resp, err := cli.Get(ctx, d.k.spec("t1"), clientv3.WithCountOnly())
		if err != nil {
			t.Fatal(err)
		}
		return resp.Count == 1
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "b to pass over the spec", func() bool {
		d.mu.Lock()
		_, waiting := d.waiting["t1"]
		d.mu.Unlock()
		return waiting || !exists()
	})
	if !exists() {
		t.Fatal("b removed a temporary spec pinned to a node its lagging ring did not show")
	}

	proxy.Resume()
	if err := rg.WaitRevision(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "b to pass over the spec again", func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		_, dirty := d.dirty["t1"]
		return !d.ringAwait && !dirty
	})
	d.pass.Lock() // the pass that took the spec is over
	d.pass.Unlock()
	if !exists() {
		t.Fatal("b removed a temporary spec pinned to a node running the supervisor")
	}

	if _, err := cli.Delete(ctx, ring.MemberKey("/ringlag", "a")); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "the spec of a temporary child whose node left to go", func() bool { return !exists() })
}

// A child pinned to a node that started offering its kind a moment ago,
// before the caller's ring view saw it, is started, not refused with
// ErrUnknownKind: a refusal is checked against etcd as of now.
func TestPinnedStartCatchesUpWithTheRing(t *testing.T) {
	d, _, proxy, join := laggingNode(t, "/pinlag")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	proxy.Pause()
	join("a")
	resume := time.AfterFunc(100*time.Millisecond, proxy.Resume)
	defer resume.Stop()
	for _, spec := range []ChildSpec{{Kind: "k", Node: "a"}, {Kind: "k", Node: "a", Restart: Temporary}} {
		spec, err := d.prepare(ctx, spec)
		if err != nil {
			t.Fatalf("prepare %+v with a lagging ring: %v", spec, err)
		}
	}
	ids, err := d.StartChildren(ctx, []ChildSpec{{Kind: "k", Node: "a"}})
	if err != nil || len(ids) != 1 {
		t.Fatalf("StartChildren pinned to a = %v, %v", ids, err)
	}
	if _, err := d.prepare(ctx, ChildSpec{Kind: "k", Node: "c"}); !errors.Is(err, ErrUnknownKind) {
		t.Fatalf("prepare pinned to a node that is not a member = %v, want ErrUnknownKind", err)
	}
}
