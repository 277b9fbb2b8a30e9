package supervisor

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
)

// crasher reports its starts and stops with an error on any cast.
type crasher struct{ started chan actor.Ref }

func (c *crasher) Init(ctx *actor.Context, _ any) error {
	c.started <- ctx.Self()
	return nil
}

func (c *crasher) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

func (c *crasher) HandleCast(*actor.Context, any) error { return errors.New("crash") }

// newDoubtTestSupervisor starts a distributed supervisor on node "a",
// not a ring member (it claims nothing by itself), whose etcd requests go
// through a proxy while its lease session keeps its own connection: the
// proxy can fail its requests with the epoch alive. It returns the
// supervisor, the proxy, a direct client and the channel its children's
// starts are reported on.
func newDoubtTestSupervisor(t *testing.T) (*Distributed, *etcdtest.Proxy, *clientv3.Client, chan actor.Ref) {
	t.Helper()
	old := requestTimeout
	requestTimeout = 300 * time.Millisecond
	t.Cleanup(func() { requestTimeout = old })
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoint(0))
	viaProxy := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	started := make(chan actor.Ref, 16)
	c := bareClusterOn(t, cli, viaProxy, "/doubt", func() actor.Actor { return &crasher{started: started} }, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := StartDistributed(ctx, c, "users", DistributedOptions{Intensity: Intensity{MaxRestarts: 10, Period: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d, proxy, cli, started
}

// claimRunning stores the spec of id and claims it, as the node it
// belongs on would, and returns its instance's Ref.
func claimRunning(t *testing.T, d *Distributed, cli *clientv3.Client, started chan actor.Ref, id string) actor.Ref {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, _ := encodeSpec(ChildSpec{ID: id, Kind: "k"})
	put, err := cli.Put(ctx, d.k.spec(id), string(spec))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.m.WaitRevision(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	d.claim(d.c.Session.Current(), []string{id})
	select {
	case ref := <-started:
		return ref
	case <-time.After(5 * time.Second):
		t.Fatal("the child did not start")
	}
	return actor.Ref{}
}

// ownerKey returns the owner key of id as etcd holds it now.
func ownerKey(t *testing.T, d *Distributed, cli *clientv3.Client, id string) (owner, bool) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := cli.Get(ctx, d.k.owner(id))
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count == 0 {
		return owner{}, false
	}
	o, _ := decodeOwnerIn(resp.Kvs[0].Value, &d.names)
	return o, true
}

// A release etcd does not answer, while the node's epoch lives on, is
// done once etcd answers again, with the state it carried: the child is
// not left stopped and owned by this node until its epoch ends.
func TestReleaseInDoubtIsDone(t *testing.T) {
	d, proxy, cli, started := newDoubtTestSupervisor(t)
	claimRunning(t, d, cli, started, "x")
	lc := d.detach("x")
	if lc == nil {
		t.Fatal("the child is not local")
	}
	if err := d.c.System.Stop(context.Background(), lc.ref, ErrMoved); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	d.releaseAll(d.c.Session.Current(), []release{{id: "x", handoff: []byte("state")}})
	if _, ok := ownerKey(t, d, cli, "x"); !ok {
		t.Fatal("the release went through a cut proxy")
	}
	proxy.Heal()
	waitReleasedWithState(t, d, cli, "x", "state")
}

// waitReleasedWithState waits until id's owner key is gone and its
// handoff key holds state, with the supervisor's epoch alive throughout.
func waitReleasedWithState(t *testing.T, d *Distributed, cli *clientv3.Client, id, state string) {
	t.Helper()
	etcdtest.WaitFor(t, 10*time.Second, 20*time.Millisecond, "the owner key to be released with the state", func() bool {
		if _, ok := ownerKey(t, d, cli, id); ok {
			return false
		}
		resp, err := cli.Get(context.Background(), d.k.handoff(id))
		return err == nil && resp.Count == 1 && string(resp.Kvs[0].Value) == state
	})
	if err := d.c.Session.Current().Check(); err != nil {
		t.Fatalf("the epoch was lost (%v): the test did not keep it alive", err)
	}
}

// A restart whose owner key write etcd does not answer leaves no dead
// instance owning the child: the key is released once etcd answers, so
// the child is claimed anew.
func TestRestartInDoubtIsReleased(t *testing.T) {
	d, proxy, cli, started := newDoubtTestSupervisor(t)
	ref := claimRunning(t, d, cli, started, "x")
	proxy.Cut()
	if err := d.c.System.Cast(context.Background(), ref, "crash"); err != nil {
		t.Fatal(err)
	}
	// The restart's write fails behind the cut: no instance starts.
	select {
	case r := <-started:
		t.Fatalf("restarted as %v through a cut proxy", r)
	case <-time.After(3 * requestTimeout):
	}
	if o, ok := ownerKey(t, d, cli, "x"); !ok || o.Ref != ref {
		t.Fatalf("owner key during the cut: %+v, %v; want the crashed instance's", o, ok)
	}
	proxy.Heal()
	etcdtest.WaitFor(t, 10*time.Second, 20*time.Millisecond, "the dead instance's owner key to be released", func() bool {
		_, ok := ownerKey(t, d, cli, "x")
		return !ok
	})
	if err := d.c.Session.Current().Check(); err != nil {
		t.Fatalf("the epoch was lost (%v): the test did not keep it alive", err)
	}
}

// A claim that went through in etcd, its answer lost, does not lose the
// handed-off state it took: the owner key is released with that state
// again, for the next claim to start the child with.
func TestClaimInDoubtKeepsTheStateItTook(t *testing.T) {
	d, proxy, cli, started := newDoubtTestSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	spec, _ := encodeSpec(ChildSpec{ID: "x", Kind: "k"})
	if _, err := cli.Put(ctx, d.k.handoff("x"), "state"); err != nil {
		t.Fatal(err)
	}
	put, err := cli.Put(ctx, d.k.spec("x"), string(spec))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.m.WaitRevision(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	proxy.HoldReplies()
	d.claim(d.c.Session.Current(), []string{"x"})
	if o, ok := ownerKey(t, d, cli, "x"); !ok || o.Node != "a" {
		t.Fatalf("owner key after the claim = %+v, %v: the claim did not reach etcd", o, ok)
	}
	if resp, err := cli.Get(ctx, d.k.handoff("x")); err != nil || resp.Count != 0 {
		t.Fatalf("handoff key after the claim = %v, %v: the claim did not take it", resp, err)
	}
	select {
	case r := <-started:
		t.Fatalf("started as %v though the claim's answer was lost", r)
	default:
	}
	proxy.Cut()
	proxy.Heal()
	waitReleasedWithState(t, d, cli, "x", "state")
}
