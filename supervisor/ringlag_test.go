package supervisor

import (
	"context"
	"encoding/json"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
)

// A node whose view of the ring lags behind its view of the specs does not
// remove a temporary child pinned to a node it does not yet see running
// the supervisor: that node placed the child on itself, seeing itself run
// it. Once the ring catches up the spec stays; when the node leaves, it
// goes.
func TestTemporarySpecKeptWhileTheRingLags(t *testing.T) {
	const prefix = "/ringlag"
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoint(0))
	lagging := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sess, err := lease.Start(ctx, cli, lease.Config{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	join := func(id string) {
		v, _ := json.Marshal(ring.Member{ID: id, Kinds: []string{"k"}, Supervisors: []string{"users"}})
		if _, err := cli.Put(ctx, ring.MemberKey(prefix, id), string(v), clientv3.WithLease(sess.Current().ID())); err != nil {
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
	d, err := StartDistributed(ctx, Cluster{NodeID: "b", Prefix: prefix, Client: cli, Session: sess, Ring: rg, System: sys,
		Kind:  func(k string) (Factory, bool) { return kind, k == "k" },
		Offer: func(context.Context, string, bool) error { return nil }}, "users", DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })

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

	if _, err := cli.Delete(ctx, ring.MemberKey(prefix, "a")); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "the spec of a temporary child whose node left to go", func() bool { return !exists() })
}
