package registry_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/registry"
)

const testTTL = 2 * time.Second

type node struct {
	name    string
	client  *clientv3.Client
	session *lease.Session
	reg     *registry.Registry
	next    uint64
}

func (n *node) ref() actor.Ref {
	n.next++
	return actor.Ref{Node: n.name, ID: n.next, Incarnation: 1}
}

// startNode starts a lease session and a registry on client.
// startNode starts a registry on a session whose lease outlives the CPU
// starvation of a loaded test machine; tests of lease loss use
// startNodeTTL with testTTL.
func startNode(t testing.TB, name string, client *clientv3.Client, cfg registry.Config) *node {
	t.Helper()
	return startNodeTTL(t, name, client, cfg, 10*time.Second)
}

func startNodeTTL(t testing.TB, name string, client *clientv3.Client, cfg registry.Config, ttl time.Duration) *node {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := lease.Start(ctx, client, lease.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	r, err := registry.New(ctx, client, s, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { r.Close() })
	return &node{name: name, client: client, session: s, reg: r}
}

func TestRegisterLookup(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx := t.Context()
	ref := a.ref()
	if err := a.reg.Register(ctx, "svc:one", ref, []byte("meta")); err != nil {
		t.Fatal(err)
	}
	for _, n := range []*node{a, b} {
		got, err := n.reg.Whereis(ctx, "svc:one")
		if err != nil || got != ref {
			t.Fatalf("%s: Whereis = %v, %v; want %v", n.name, got, err, ref)
		}
		ent, err := n.reg.Lookup(ctx, "svc:one")
		if err != nil {
			t.Fatal(err)
		}
		if ent.Name != "svc:one" || ent.Ref != ref || string(ent.Value) != "meta" ||
			ent.Lease != a.session.Current().ID() || ent.Revision == 0 || ent.CreateRevision != ent.Revision {
			t.Fatalf("%s: Lookup = %+v", n.name, ent)
		}
		var res actor.Resolver = n.reg
		if got, err := res.Resolve(ctx, "svc:one"); err != nil || got != ref {
			t.Fatalf("%s: Resolve = %v, %v", n.name, got, err)
		}
		if _, err := res.Resolve(ctx, "svc:none"); !errors.Is(err, actor.ErrNotFound) {
			t.Fatalf("%s: Resolve of a free name = %v, want actor.ErrNotFound", n.name, err)
		}
	}
	if err := a.reg.Register(ctx, "svc:two", a.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Register(ctx, "other", b.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	list, err := b.reg.List(ctx, "svc:")
	if err != nil {
		t.Fatal(err)
	}
	if len(list) != 2 || list[0].Name != "svc:one" || list[1].Name != "svc:two" {
		t.Fatalf("List(svc:) = %+v", list)
	}
	for prefix, want := range map[string]int{"": 3, "svc:": 2, "o": 1, "x": 0} {
		if n, err := b.reg.Count(ctx, prefix); err != nil || n != want {
			t.Fatalf("Count(%q) = %d, %v; want %d", prefix, n, err, want)
		}
	}
}

func TestFirstWriterWins(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx := t.Context()
	const rounds, perNode = 10, 16
	for round := 0; round < rounds; round++ {
		name := fmt.Sprintf("contested-%d", round)
		type result struct {
			ref actor.Ref
			err error
		}
		results := make(chan result, 2*perNode)
		var start, wg sync.WaitGroup
		start.Add(1)
		for _, n := range []*node{a, b} {
			for i := 0; i < perNode; i++ {
				ref := n.ref()
				wg.Add(1)
				go func() {
					defer wg.Done()
					start.Wait()
					results <- result{ref, n.reg.Register(ctx, name, ref, []byte(ref.String()))}
				}()
			}
		}
		start.Done()
		wg.Wait()
		close(results)
		var winner actor.Ref
		var losers []result
		for r := range results {
			if r.err == nil {
				if !winner.IsZero() {
					t.Fatalf("%s: two winners %v and %v", name, winner, r.ref)
				}
				winner = r.ref
				continue
			}
			losers = append(losers, r)
		}
		if winner.IsZero() {
			t.Fatalf("%s: no winner", name)
		}
		if len(losers) != 2*perNode-1 {
			t.Fatalf("%s: %d losers", name, len(losers))
		}
		for _, l := range losers {
			var are *actor.AlreadyRegisteredError
			if !errors.Is(l.err, registry.ErrAlreadyRegistered) || !errors.As(l.err, &are) {
				t.Fatalf("%s: loser error %v", name, l.err)
			}
			if are.Owner != winner || are.Name != name {
				t.Fatalf("%s: loser told owner %v of %q, winner is %v", name, are.Owner, are.Name, winner)
			}
		}
		for _, n := range []*node{a, b} {
			if got, err := n.reg.Whereis(ctx, name); err != nil || got != winner {
				t.Fatalf("%s: %s sees %v, %v; winner %v", name, n.name, got, err, winner)
			}
		}
	}
}

func TestInvalidInput(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{MaxValueSize: 1024})
	ctx := t.Context()
	names := []struct{ what, name string }{
		{"empty", ""},
		{"slash", "a/b"},
		{"leading slash", "/a"},
		{"control character", "a\x01b"},
		{"NUL", "a\x00"},
		{"invalid UTF-8", "a\xffb"},
		{"too long", strings.Repeat("n", actor.MaxNameLen+1)},
	}
	for _, tc := range names {
		t.Run(tc.what, func(t *testing.T) {
			check := func(op string, err error) {
				t.Helper()
				if !errors.Is(err, registry.ErrInvalidName) {
					t.Fatalf("%s(%q) = %v, want ErrInvalidName", op, tc.name, err)
				}
			}
			check("Register", a.reg.Register(ctx, tc.name, a.ref(), nil))
			check("Unregister", a.reg.Unregister(ctx, tc.name))
			_, err := a.reg.Whereis(ctx, tc.name)
			check("Whereis", err)
			_, err = a.reg.Watch(ctx, tc.name)
			check("Watch", err)
		})
	}
	if _, err := a.reg.List(ctx, "a/"); !errors.Is(err, registry.ErrInvalidName) {
		t.Fatalf("List with a slash = %v", err)
	}
	if err := a.reg.Register(ctx, "zero", actor.Ref{}, nil); !errors.Is(err, actor.ErrInvalidRef) {
		t.Fatalf("Register of the zero ref = %v", err)
	}
	if err := a.reg.Register(ctx, "big", a.ref(), make([]byte, 1025)); !errors.Is(err, registry.ErrValueTooLarge) {
		t.Fatalf("Register of 1025 bytes = %v, want ErrValueTooLarge", err)
	}
	if err := a.reg.Register(ctx, "fits", a.ref(), make([]byte, 1024)); err != nil {
		t.Fatalf("Register of 1024 bytes = %v", err)
	}
	if err := a.reg.Update(ctx, "fits", a.ref(), make([]byte, 1025)); !errors.Is(err, registry.ErrValueTooLarge) {
		t.Fatalf("Update of 1025 bytes = %v, want ErrValueTooLarge", err)
	}
	if _, err := registry.New(ctx, a.client, a.session, registry.Config{MaxValueSize: 2 << 20}); !errors.Is(err, registry.ErrInvalidConfig) {
		t.Fatalf("New with a 2 MiB bound = %v", err)
	}
	def := startNode(t, "d", a.client, registry.Config{})
	if err := def.reg.Register(ctx, "big", def.ref(), make([]byte, registry.DefaultMaxValueSize+1)); !errors.Is(err, registry.ErrValueTooLarge) {
		t.Fatalf("Register above the default bound = %v", err)
	}
	if err := def.reg.Register(ctx, "big", def.ref(), make([]byte, registry.DefaultMaxValueSize)); err != nil {
		t.Fatalf("Register at the default bound = %v", err)
	}
}

func TestUnregisterAndUpdate(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx := t.Context()
	ref := a.ref()
	if err := a.reg.Register(ctx, "n", ref, []byte("v1")); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Unregister(ctx, "n"); !errors.Is(err, registry.ErrNotOwner) {
		t.Fatalf("Unregister by another node = %v, want ErrNotOwner", err)
	}
	if err := b.reg.Update(ctx, "n", b.ref(), nil); !errors.Is(err, registry.ErrNotOwner) {
		t.Fatalf("Update by another node = %v, want ErrNotOwner", err)
	}
	if err := a.reg.Update(ctx, "free", a.ref(), nil); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Update of a free name = %v, want ErrNotFound", err)
	}
	ref2 := a.ref()
	if err := a.reg.Update(ctx, "n", ref2, []byte("v2")); err != nil {
		t.Fatal(err)
	}
	ent, err := a.reg.Lookup(ctx, "n")
	if err != nil || ent.Ref != ref2 || string(ent.Value) != "v2" || ent.CreateRevision == ent.Revision {
		t.Fatalf("after Update: %+v, %v", ent, err)
	}
	if err := a.reg.Unregister(ctx, "n"); err != nil {
		t.Fatal(err)
	}
	// Read-your-writes: no Sync needed on the writer.
	if _, err := a.reg.Whereis(ctx, "n"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("Whereis after Unregister = %v, want ErrNotFound", err)
	}
	if err := a.reg.Unregister(ctx, "n"); !errors.Is(err, registry.ErrNotFound) {
		t.Fatalf("second Unregister = %v, want ErrNotFound", err)
	}
	if err := b.reg.Register(ctx, "n", b.ref(), nil); err != nil {
		t.Fatalf("Register of a released name = %v", err)
	}
}

func TestReadOnlyRegistry(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	ctx := t.Context()
	ro, err := registry.New(ctx, cl.Client(t), nil, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ref := a.ref()
	if err := a.reg.Register(ctx, "n", ref, nil); err != nil {
		t.Fatal(err)
	}
	if got, err := ro.Whereis(ctx, "n"); err != nil || got != ref {
		t.Fatalf("read-only Whereis = %v, %v", got, err)
	}
	if err := ro.Register(ctx, "m", ref, nil); !errors.Is(err, registry.ErrNoSession) {
		t.Fatalf("read-only Register = %v", err)
	}
	ro.Close()
	if _, err := ro.Whereis(ctx, "n"); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Whereis after Close = %v", err)
	}
	if _, err := ro.Watch(ctx, "n"); !errors.Is(err, registry.ErrClosed) {
		t.Fatalf("Watch after Close = %v", err)
	}
}

// next receives one event or fails the test after a deadline.
func next(t testing.TB, ch <-chan registry.Event) registry.Event {
	t.Helper()
	select {
	case ev, ok := <-ch:
		if !ok {
			t.Fatal("watch channel closed")
		}
		return ev
	case <-time.After(5 * time.Second):
		t.Fatal("no watch event within 5s")
	}
	panic("unreachable")
}

func TestWatchEvents(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	if err := a.reg.Register(ctx, "job:0", a.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	one, err := b.reg.Watch(ctx, "job:1")
	if err != nil {
		t.Fatal(err)
	}
	all, err := b.reg.WatchPrefix(ctx, "job:")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, all); ev.Type != registry.Put || ev.Name != "job:0" {
		t.Fatalf("snapshot event %+v", ev)
	}
	r1, r2 := a.ref(), a.ref()
	if err := a.reg.Register(ctx, "job:1", r1, []byte("x")); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Update(ctx, "job:1", r2, []byte("y")); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Unregister(ctx, "job:1"); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Register(ctx, "unrelated", a.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Unregister(ctx, "job:0"); err != nil {
		t.Fatal(err)
	}
	want := []struct {
		typ   registry.EventType
		name  string
		ref   actor.Ref
		value string
	}{
		{registry.Put, "job:1", r1, "x"},
		{registry.Put, "job:1", r2, "y"},
		{registry.Delete, "job:1", r2, "y"},
	}
	var last int64
	for i, w := range want {
		ev := next(t, one)
		if ev.Type != w.typ || ev.Name != w.name || ev.Entry.Ref != w.ref || string(ev.Entry.Value) != w.value || ev.Revision <= last {
			t.Fatalf("event %d on job:1 = %+v, want %+v", i, ev, w)
		}
		last = ev.Revision
		if ev2 := next(t, all); ev2.Type != ev.Type || ev2.Revision != ev.Revision {
			t.Fatalf("prefix watch event %d = %+v, name watch saw %+v", i, ev2, ev)
		}
	}
	if ev := next(t, all); ev.Type != registry.Delete || ev.Name != "job:0" {
		t.Fatalf("prefix watch: %+v, want delete of job:0", ev)
	}
	cancel()
	for range all {
	}
	for range one {
	}
}

func TestRevokedLeaseRemovesNames(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx := t.Context()
	for i := 0; i < 3; i++ {
		if err := a.reg.Register(ctx, fmt.Sprintf("a-%d", i), a.ref(), nil); err != nil {
			t.Fatal(err)
		}
	}
	if err := b.reg.Register(ctx, "b-0", b.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := b.reg.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := b.reg.WatchPrefix(ctx, "a-")
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i < 3; i++ {
		next(t, ch)
	}
	epoch := a.session.Current()
	if _, err := direct.Revoke(ctx, epoch.ID()); err != nil {
		t.Fatal(err)
	}
	gone := map[string]bool{}
	for len(gone) < 3 {
		ev := next(t, ch)
		if ev.Type != registry.Delete {
			t.Fatalf("unexpected %+v", ev)
		}
		gone[ev.Name] = true
	}
	for i := 0; i < 3; i++ {
		if _, err := b.reg.Whereis(ctx, fmt.Sprintf("a-%d", i)); !errors.Is(err, registry.ErrNotFound) {
			t.Fatalf("b still resolves a-%d: %v", i, err)
		}
	}
	if n, err := b.reg.Count(ctx, ""); err != nil || n != 1 {
		t.Fatalf("b counts %d names, %v; want its own one", n, err)
	}
	// a notices the revoke on its next keepalive, then re-registers under
	// the new epoch.
	wctx, cancel := context.WithTimeout(ctx, 5*time.Second)
	defer cancel()
	if _, err := a.session.Next(wctx, epoch); err != nil {
		t.Fatal(err)
	}
	if n, err := a.reg.Count(ctx, "a-"); err != nil || n != 0 {
		t.Fatalf("a still counts %d of its names, %v", n, err)
	}
	if err := a.reg.Register(ctx, "a-0", a.ref(), nil); err != nil {
		t.Fatalf("re-register under the new epoch: %v", err)
	}
}

// TestLostEpochDropsNamesLocally pauses a node's connection to etcd: when
// its epoch is lost, its own view drops its names at once, while etcd and
// the other nodes still have them until the lease expires.
func TestLostEpochDropsNamesLocally(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	a := startNodeTTL(t, "a", etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr())), registry.Config{}, testTTL)
	b := startNode(t, "b", cl.Client(t), registry.Config{})
	ctx := t.Context()
	ref := a.ref()
	if err := a.reg.Register(ctx, "held", ref, nil); err != nil {
		t.Fatal(err)
	}
	ch, err := a.reg.Watch(ctx, "held")
	if err != nil {
		t.Fatal(err)
	}
	if ev := next(t, ch); ev.Type != registry.Put {
		t.Fatalf("snapshot %+v", ev)
	}
	epoch := a.session.Current()
	proxy.Pause()
	select {
	case <-epoch.Lost():
	case <-time.After(2 * testTTL):
		t.Fatal("epoch not lost")
	}
	if ev := next(t, ch); ev.Type != registry.Delete || ev.Entry.Ref != ref {
		t.Fatalf("after epoch loss: %+v, want delete", ev)
	}
	if n, _ := a.reg.Count(ctx, ""); n != 0 {
		t.Fatalf("a still counts %d names after losing its epoch", n)
	}
	// b may or may not have seen the expiry yet; etcd alone decides when
	// the name goes, and b follows.
	proxy.Resume()
	waitFor(t, 3*testTTL, "b to see the name expire", func() bool {
		_, err := b.reg.Whereis(ctx, "held")
		return errors.Is(err, registry.ErrNotFound)
	})
	wctx, cancel := context.WithTimeout(ctx, 3*testTTL)
	defer cancel()
	if err := a.reg.Register(wctx, "held", a.ref(), nil); err != nil {
		t.Fatalf("re-register after rejoin: %v", err)
	}
	if ev := next(t, ch); ev.Type != registry.Put {
		t.Fatalf("after re-register: %+v", ev)
	}
}

// TestCacheMatchesRead runs concurrent writers on two nodes, then checks
// that each cache, once synced, equals a linearizable read of the prefix.
func TestCacheMatchesRead(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	nodes := []*node{
		startNode(t, "a", cl.Client(t), registry.Config{}),
		startNode(t, "b", cl.Client(t), registry.Config{}),
	}
	ctx := t.Context()
	var wg sync.WaitGroup
	for w := 0; w < 8; w++ {
		n := nodes[w%2]
		seed := uint64(w)
		wg.Add(1)
		go func() {
			defer wg.Done()
			rng := rand.New(rand.NewPCG(seed, 1))
			for i := 0; i < 60; i++ {
				name := fmt.Sprintf("k%02d", rng.IntN(20))
				var err error
				switch rng.IntN(3) {
				case 0:
					err = n.reg.Register(ctx, name, actor.Ref{Node: n.name, ID: uint64(i + 1)}, []byte{byte(i)})
				case 1:
					err = n.reg.Update(ctx, name, actor.Ref{Node: n.name, ID: uint64(i + 1)}, []byte{byte(i), 1})
				case 2:
					err = n.reg.Unregister(ctx, name)
				}
				if err != nil && !errors.Is(err, registry.ErrAlreadyRegistered) &&
					!errors.Is(err, registry.ErrNotOwner) && !errors.Is(err, registry.ErrNotFound) {
					t.Errorf("%s: %v", n.name, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	resp, err := direct.Get(ctx, "/cohort/names/", clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		t.Fatal(err)
	}
	for _, n := range nodes {
		if err := n.reg.Sync(ctx); err != nil {
			t.Fatal(err)
		}
		if n.reg.Revision() < resp.Header.Revision {
			t.Fatalf("%s: synced cache at %d, read at %d", n.name, n.reg.Revision(), resp.Header.Revision)
		}
		list, err := n.reg.List(ctx, "")
		if err != nil {
			t.Fatal(err)
		}
		if len(list) != len(resp.Kvs) {
			t.Fatalf("%s: cache has %d names, etcd %d", n.name, len(list), len(resp.Kvs))
		}
		for i, ent := range list {
			kv := resp.Kvs[i]
			if "/cohort/names/"+ent.Name != string(kv.Key) || ent.Revision != kv.ModRevision ||
				ent.CreateRevision != kv.CreateRevision || int64(ent.Lease) != kv.Lease || !bytes.Contains(kv.Value, []byte(fmt.Sprintf(`"id":%d`, ent.Ref.ID))) {
				t.Fatalf("%s: cache entry %+v, etcd %s=%s (mod %d)", n.name, ent, kv.Key, kv.Value, kv.ModRevision)
			}
		}
	}
}

// TestCompactedWatchResyncs breaks a registry's watch while etcd compacts
// past it: the registry must re-read the prefix and report the changes it
// missed.
func TestCompactedWatchResyncs(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	a := startNode(t, "a", cl.Client(t), registry.Config{})
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	ro, err := registry.New(t.Context(), etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr())), nil, registry.Config{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	ctx := t.Context()
	if err := a.reg.Register(ctx, "stays", a.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := a.reg.Register(ctx, "goes", a.ref(), nil); err != nil {
		t.Fatal(err)
	}
	if err := ro.Sync(ctx); err != nil {
		t.Fatal(err)
	}
	ch, err := ro.WatchPrefix(ctx, "")
	if err != nil {
		t.Fatal(err)
	}
	next(t, ch)
	next(t, ch)

	proxy.Pause()
	if err := a.reg.Unregister(ctx, "goes"); err != nil {
		t.Fatal(err)
	}
	added := a.ref()
	if err := a.reg.Register(ctx, "new", added, nil); err != nil {
		t.Fatal(err)
	}
	resp, err := direct.Put(ctx, "unrelated", "x")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := direct.Compact(ctx, resp.Header.Revision, clientv3.WithCompactPhysical()); err != nil {
		t.Fatal(err)
	}
	proxy.Cut()
	proxy.Resume()

	seen := map[string]registry.EventType{}
	for len(seen) < 2 {
		ev := next(t, ch)
		seen[ev.Name] = ev.Type
	}
	if seen["goes"] != registry.Delete || seen["new"] != registry.Put {
		t.Fatalf("events after resync: %v", seen)
	}
	if got, err := ro.Whereis(ctx, "new"); err != nil || got != added {
		t.Fatalf("Whereis(new) = %v, %v", got, err)
	}
	list, err := ro.List(ctx, "")
	if err != nil || len(list) != 2 {
		t.Fatalf("List = %+v, %v", list, err)
	}
}

// waitFor waits until cond holds, polling it every 5ms, and fails t if it
// does not within limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, 5*time.Millisecond, what, cond)
}
