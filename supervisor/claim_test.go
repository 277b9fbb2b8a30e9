package supervisor

import (
	"context"
	"fmt"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
)

// initRecorder reports its InitArgs on a channel.
type initRecorder struct{ got chan InitArgs }

func (r *initRecorder) Init(_ *actor.Context, args any) error {
	r.got <- args.(InitArgs)
	return nil
}

func (r *initRecorder) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

// bareCluster is a Cluster for a distributed supervisor on node "a", which
// is not a ring member: it places nothing by itself. kind is its only
// kind's factory, or nil for none.
func bareCluster(t *testing.T, prefix string, kind Factory) Cluster {
	t.Helper()
	cli := etcdtest.Start(t).Client(t)
	return bareClusterOn(t, cli, cli, prefix, kind, 5*time.Second)
}

// bareClusterOn is bareCluster on the clients given: the lease session
// and the ring use direct, the supervisor's own requests go through kv;
// the session's lease TTL is ttl.
func bareClusterOn(t *testing.T, direct, kv *clientv3.Client, prefix string, kind Factory, ttl time.Duration) Cluster {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess, err := lease.Start(ctx, direct, lease.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	rg, err := ring.Watch(ctx, direct, prefix, ring.Options{LocalID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rg.Close)
	sys := actor.NewSystem(actor.Config{Node: "a"})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return Cluster{NodeID: "a", Prefix: prefix, Client: kv, Session: sess, Ring: rg, System: sys,
		Kind:  func(string) (Factory, bool) { return kind, kind != nil },
		Offer: func(context.Context, string, bool) error { return nil }}
}

// newClaimTestSupervisor starts a distributed supervisor on a node that
// is not a ring member, so that it claims nothing by itself: the test
// drives its claims.
func newClaimTestSupervisor(t *testing.T) (*Distributed, *clientv3.Client, chan InitArgs) {
	t.Helper()
	got := make(chan InitArgs, 1024)
	c := bareCluster(t, "/claimtest", func() actor.Actor { return &initRecorder{got: got} })
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	d, err := StartDistributed(ctx, c, "users", DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { d.Stop(context.Background()) })
	return d, c.Client, got
}

// A lean claim holds only if no handoff key was written after the
// revision its caller read the mirror at: handed-off state written later
// is never left behind by a claim that did not take it.
func TestLeanClaimYieldsToLaterHandoff(t *testing.T) {
	d, cli, got := newClaimTestSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	spec, _ := encodeSpec(ChildSpec{ID: "x", Kind: "k"})
	put, err := cli.Put(ctx, d.k.spec("x"), string(spec))
	if err != nil {
		t.Fatal(err)
	}
	if err := d.m.WaitRevision(ctx, put.Header.Revision); err != nil {
		t.Fatal(err)
	}
	rev := d.m.Revision()
	if _, err := cli.Put(ctx, d.k.handoff("x"), "state"); err != nil {
		t.Fatal(err)
	}
	ep := d.c.Session.Current()
	if d.claimLean(ep, []string{"x"}, rev) {
		t.Fatal("lean claim held though a handoff key was written after its revision")
	}
	if resp, err := cli.Get(ctx, d.k.owner("x")); err != nil || resp.Count != 0 {
		t.Fatalf("owner key after the failed lean claim: %v, %v", resp, err)
	}
	// The claim that follows takes the state with it.
	d.claim(ep, []string{"x"})
	select {
	case a := <-got:
		if string(a.Handoff) != "state" {
			t.Fatalf("started with handoff %q, want %q", a.Handoff, "state")
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the child did not start")
	}
	if resp, err := cli.Get(ctx, d.k.handoff("x")); err != nil || resp.Count != 0 {
		t.Fatalf("handoff key left after the claim took it: %v, %v", resp, err)
	}
}

// Claims in the lean form start many children at once; one whose handoff
// key the mirror holds is claimed in full and gets its state.
func TestClaimMixesLeanAndFull(t *testing.T) {
	d, cli, got := newClaimTestSupervisor(t)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	ids := make([]string, 300)
	var last int64
	for i := range ids {
		ids[i] = fmt.Sprintf("c%03d", i)
		spec, _ := encodeSpec(ChildSpec{ID: ids[i], Kind: "k"})
		resp, err := cli.Put(ctx, d.k.spec(ids[i]), string(spec))
		if err != nil {
			t.Fatal(err)
		}
		last = resp.Header.Revision
	}
	resp, err := cli.Put(ctx, d.k.handoff(ids[7]), "seven")
	if err != nil {
		t.Fatal(err)
	}
	// As if the handoff was seen long ago: the lean form is in use.
	d.handoffSeen.Store(0)
	if err := d.m.WaitRevision(ctx, max(last, resp.Header.Revision)); err != nil {
		t.Fatal(err)
	}
	d.claim(d.c.Session.Current(), ids)
	seen := map[string]bool{}
	for range ids {
		select {
		case a := <-got:
			if seen[a.ID] {
				t.Fatalf("%s started twice", a.ID)
			}
			seen[a.ID] = true
			if want := map[bool]string{true: "seven"}[a.ID == ids[7]]; string(a.Handoff) != want {
				t.Fatalf("%s started with handoff %q, want %q", a.ID, a.Handoff, want)
			}
		case <-time.After(5 * time.Second):
			t.Fatalf("%d of %d children started", len(seen), len(ids))
		}
	}
	owners, err := cli.Get(ctx, d.k.root+"owners/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || owners.Count != int64(len(ids)) {
		t.Fatalf("%v owner keys (%v), want %d", owners.Count, err, len(ids))
	}
}
