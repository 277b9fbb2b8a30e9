package registry_test

import (
	"context"
	"encoding/json"
	"errors"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/registry"
)

type idle struct{}

func (idle) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }

// startActors starts an actor system of node and a registry bound to it.
func startActors(t *testing.T, node string) (*actor.System, *node) {
	t.Helper()
	c := etcdtest.Start(t)
	sys := actor.NewSystem(actor.Config{Node: node})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return sys, startNode(t, node, c.Client(t), registry.Config{Actors: sys})
}

func spawnIdle(t *testing.T, sys *actor.System) actor.Ref {
	t.Helper()
	ref, err := sys.Spawn(context.Background(), idle{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	return ref
}

// stored returns the Ref etcd holds under name, or the zero Ref.
func stored(t *testing.T, n *node, name string) actor.Ref {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	resp, err := n.client.Get(ctx, "/cohort/names/"+name)
	if err != nil {
		t.Fatal(err)
	}
	if len(resp.Kvs) == 0 {
		return actor.Ref{}
	}
	var rec struct {
		Ref actor.Ref `json:"ref"`
	}
	if err := json.Unmarshal(resp.Kvs[0].Value, &rec); err != nil {
		t.Fatal(err)
	}
	return rec.Ref
}

// A name registered for an actor of the node's own system goes when the
// actor exits, as Erlang's global names do; a dead actor is refused.
func TestNameOfALocalActorGoesWithIt(t *testing.T) {
	sys, n := startActors(t, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	ref := spawnIdle(t, sys)
	if err := n.reg.Register(ctx, "svc", ref, nil); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, n, "svc"); got != ref {
		t.Fatalf("svc = %v, want %v", got, ref)
	}
	if err := sys.Stop(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the name of the stopped actor to be released", func() bool {
		return stored(t, n, "svc").IsZero()
	})
	if _, err := n.reg.Lookup(ctx, "svc"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("lookup after the release = %v, want ErrNotFound", err)
	}
	if err := n.reg.Register(ctx, "svc", ref, nil); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("register of a dead actor = %v, want ErrNotFound", err)
	}
	if !stored(t, n, "svc").IsZero() {
		t.Fatal("a dead actor was registered")
	}

	// Update binds the name to the new actor: the old one's exit leaves
	// it alone, the new one's releases it.
	a, b := spawnIdle(t, sys), spawnIdle(t, sys)
	if err := n.reg.Register(ctx, "moved", a, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.reg.Update(ctx, "moved", b, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stop(ctx, a, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stop(ctx, b, nil); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the updated name to go with its new actor", func() bool {
		return stored(t, n, "moved").IsZero()
	})

	// A name unregistered and taken by another actor is not released by
	// the first one's exit.
	c, d := spawnIdle(t, sys), spawnIdle(t, sys)
	if err := n.reg.Register(ctx, "again", c, nil); err != nil {
		t.Fatal(err)
	}
	if err := n.reg.Unregister(ctx, "again"); err != nil {
		t.Fatal(err)
	}
	if err := n.reg.Register(ctx, "again", d, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stop(ctx, c, nil); err != nil {
		t.Fatal(err)
	}
	// c stopped before e: a release for c, had it been started, started
	// before e's.
	e := spawnIdle(t, sys)
	if err := n.reg.Register(ctx, "last", e, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stop(ctx, e, nil); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the last name to be released", func() bool {
		return stored(t, n, "last").IsZero()
	})
	if got := stored(t, n, "again"); got != d {
		t.Fatalf("again = %v after its first holder stopped, want %v", got, d)
	}
}

// A name this node holds for one of its actors that exited is taken over
// by a new Register, as a restarted actor registering itself in Init does
// before the release of its dead instance's name is done.
func TestRegisterTakesOverTheNameOfADeadLocalActor(t *testing.T) {
	sys, n := startActors(t, "n1")
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	// A registry of the same session that does not follow actors leaves
	// the dead actor's name in place.
	unbound, err := registry.New(ctx, n.client, n.session, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { unbound.Close() })
	old := spawnIdle(t, sys)
	if err := unbound.Register(ctx, "svc", old, nil); err != nil {
		t.Fatal(err)
	}
	live := spawnIdle(t, sys)
	if err := n.reg.Register(ctx, "svc", live, nil); !errors.Is(err, registry.ErrAlreadyRegistered) {
		t.Fatalf("register over a live actor's name = %v, want ErrAlreadyRegistered", err)
	}
	if err := sys.Stop(ctx, old, nil); err != nil {
		t.Fatal(err)
	}
	if got := stored(t, n, "svc"); got != old {
		t.Fatalf("svc = %v before the takeover, want the dead %v", got, old)
	}
	if err := n.reg.Register(ctx, "svc", live, nil); err != nil {
		t.Fatalf("register over a dead local actor's name = %v", err)
	}
	if got := stored(t, n, "svc"); got != live {
		t.Fatalf("svc = %v, want %v", got, live)
	}

	// Another node's name is not taken over, alive or not.
	other := startNode(t, "n2", n.client, registry.Config{})
	if err := other.reg.Register(ctx, "theirs", other.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := n.reg.Register(ctx, "theirs", spawnIdle(t, sys), nil); !errors.Is(err, registry.ErrAlreadyRegistered) {
		t.Fatalf("register over another node's name = %v, want ErrAlreadyRegistered", err)
	}
}

// A node that loses its lease epoch and rejoins registers the names of its
// actors that still run again, under the new epoch; a name another node
// took while it was out stays theirs.
func TestRejoinRegistersLiveActorsAgain(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	sys := actor.NewSystem(actor.Config{Node: "a"})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	a := startNodeTTL(t, "a", etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr())), registry.Config{Actors: sys}, testTTL)
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	kept, taken, gone := spawnIdle(t, sys), spawnIdle(t, sys), spawnIdle(t, sys)
	for name, ref := range map[string]actor.Ref{"kept": kept, "taken": taken, "gone": gone} {
		if err := a.reg.Register(ctx, name, ref, nil); err != nil {
			t.Fatal(err)
		}
	}
	epoch := a.session.Current()
	proxy.Pause()
	select {
	case <-epoch.Lost():
	case <-time.After(3 * testTTL):
		t.Fatal("epoch not lost")
	}
	etcdtest.WaitFor(t, 3*testTTL, 10*time.Millisecond, "etcd to expire a's names", func() bool {
		return stored(t, b, "kept").IsZero()
	})
	theirs := b.ref()
	if err := b.reg.Register(ctx, "taken", theirs, nil); err != nil {
		t.Fatal(err)
	}
	if err := sys.Stop(ctx, gone, nil); err != nil {
		t.Fatal(err)
	}
	proxy.Resume()
	next, err := a.session.Next(ctx, epoch)
	if err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "a's live actor's name to be registered again", func() bool {
		return stored(t, b, "kept") == kept
	})
	if ent, err := b.reg.Lookup(ctx, "kept"); err == nil && ent.Lease != next.ID() {
		t.Fatalf("kept is bound to lease %x, want the new epoch's %x", ent.Lease, next.ID())
	}
	if got := stored(t, b, "taken"); got != theirs {
		t.Fatalf("taken = %v after a rejoined, want b's %v", got, theirs)
	}
	if got := stored(t, b, "gone"); !got.IsZero() {
		t.Fatalf("the name of an actor that stopped while a was out came back: %v", got)
	}
	// The name registered again still goes with its actor.
	if err := sys.Stop(ctx, kept, nil); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "the name registered again to go with its actor", func() bool {
		return stored(t, b, "kept").IsZero()
	})
}
