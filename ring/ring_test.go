package ring_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/ring"
)

const prefix = "/cohort-test"

func testCtx(t *testing.T) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	t.Cleanup(cancel)
	return ctx
}

func nodeID(i int) string { return fmt.Sprintf("node-%02d", i) }

func member(id string, kinds ...string) ring.Member {
	return ring.Member{
		ID:        id,
		Addr:      "127.0.0.1:9" + id[len(id)-2:],
		StartedAt: time.Date(2024, 1, 2, 3, 4, 5, 0, time.UTC),
		Version:   "test",
		Kinds:     kinds,
	}
}

// join writes m's member key bound to a new lease and returns the lease.
func join(t *testing.T, cli *clientv3.Client, m ring.Member) clientv3.LeaseID {
	t.Helper()
	ctx := testCtx(t)
	lease, err := cli.Grant(ctx, 60)
	if err != nil {
		t.Fatal(err)
	}
	b, err := ring.EncodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cli.Put(ctx, ring.MemberKey(prefix, m.ID), string(b), clientv3.WithLease(lease.ID)); err != nil {
		t.Fatal(err)
	}
	return lease.ID
}

func leave(t *testing.T, cli *clientv3.Client, id string) int64 {
	t.Helper()
	resp, err := cli.Delete(testCtx(t), ring.MemberKey(prefix, id))
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func watch(t *testing.T, cli *clientv3.Client, opts ring.Options) *ring.Ring {
	t.Helper()
	r, err := ring.Watch(context.Background(), cli, prefix, opts)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(r.Close)
	return r
}

func currentRev(t *testing.T, cli *clientv3.Client) int64 {
	t.Helper()
	resp, err := cli.Get(testCtx(t), "/no-such-key")
	if err != nil {
		t.Fatal(err)
	}
	return resp.Header.Revision
}

func waitRev(t *testing.T, r *ring.Ring, rev int64) {
	t.Helper()
	if err := r.WaitRevision(testCtx(t), rev); err != nil {
		t.Fatalf("WaitRevision(%d): %v", rev, err)
	}
}

func ids(ms []ring.Member) []string {
	out := make([]string, len(ms))
	for i, m := range ms {
		out[i] = m.ID
	}
	return out
}

func keys(n int) []string {
	out := make([]string, n)
	for i := range out {
		out[i] = fmt.Sprintf("key-%d", i)
	}
	return out
}

func owners(t *testing.T, s *ring.Snapshot, ks []string) []string {
	t.Helper()
	out := make([]string, len(ks))
	for i, k := range ks {
		n, ok := s.NodeFor(k)
		if !ok {
			t.Fatalf("NodeFor(%q): no node", k)
		}
		out[i] = n
	}
	return out
}

func TestMemberEncoding(t *testing.T) {
	m := member("node-01", "b", "a", "b")
	m.Roles = []string{"web"}
	b, err := ring.EncodeMember(m)
	if err != nil {
		t.Fatal(err)
	}
	got, err := ring.DecodeMember(b)
	if err != nil {
		t.Fatal(err)
	}
	if !slices.Equal(got.Kinds, []string{"a", "b"}) || got.ID != m.ID || got.Addr != m.Addr ||
		!got.StartedAt.Equal(m.StartedAt) || !got.HasRole("web") || !got.HasKind("a") {
		t.Fatalf("round trip gave %+v", got)
	}
	if k := ring.MemberKey("/p/", "n1"); k != "/p/members/n1" {
		t.Fatalf("MemberKey = %q", k)
	}

	bad := []struct {
		name string
		fn   func() error
	}{
		{"encode empty id", func() error { _, err := ring.EncodeMember(ring.Member{}); return err }},
		{"encode slash id", func() error { _, err := ring.EncodeMember(ring.Member{ID: "a/b"}); return err }},
		{"decode garbage", func() error { _, err := ring.DecodeMember([]byte("{")); return err }},
		{"decode no id", func() error { _, err := ring.DecodeMember([]byte(`{"addr":"x"}`)); return err }},
	}
	for _, tt := range bad {
		t.Run(tt.name, func(t *testing.T) {
			if err := tt.fn(); !errors.Is(err, ring.ErrInvalidMember) {
				t.Fatalf("error %v, want ErrInvalidMember", err)
			}
		})
	}
}

// TestBalanceAndJoin checks the load spread of the default ring over ten
// members and how many keys an eleventh member takes.
func TestBalanceAndJoin(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for i := range 10 {
		join(t, cli, member(nodeID(i)))
	}
	r := watch(t, cli, ring.Options{})
	before := r.Snapshot()
	if before.Len() != 10 {
		t.Fatalf("%d members, want 10", before.Len())
	}

	ks := keys(100_000)
	own := owners(t, before, ks)
	load := map[string]int{}
	for _, n := range own {
		load[n]++
	}
	maxLoad := 0
	for _, l := range load {
		maxLoad = max(maxLoad, l)
	}
	ratio := float64(maxLoad) / (float64(len(ks)) / 10)
	t.Logf("points %d: max/mean load %.3f", ring.DefaultPoints, ratio)
	if ratio > 1.10 {
		t.Errorf("max/mean load %.3f > 1.10", ratio)
	}

	join(t, cli, member(nodeID(10)))
	waitRev(t, r, currentRev(t, cli))
	after := r.Snapshot()
	if after.Len() != 11 {
		t.Fatalf("%d members after join, want 11", after.Len())
	}
	moved := 0
	for i, n := range owners(t, after, ks) {
		if n == own[i] {
			continue
		}
		moved++
		if n != nodeID(10) {
			t.Fatalf("key %s moved from %s to %s, not to the new member", ks[i], own[i], n)
		}
	}
	frac := float64(moved) / float64(len(ks))
	t.Logf("join moved %.4f of keys (ideal %.4f)", frac, 1.0/11)
	if frac > 1.2/11 {
		t.Errorf("join moved %.4f of keys, more than 1.2/11", frac)
	}
}

func TestLeaseRevokeDropsMemberEverywhere(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	leases := map[string]clientv3.LeaseID{}
	for i := range 4 {
		leases[nodeID(i)] = join(t, cli, member(nodeID(i)))
	}
	var rings []*ring.Ring
	var subs []<-chan ring.Change
	for i := range 4 {
		r := watch(t, c.Client(t), ring.Options{LocalID: nodeID(i)})
		ch, cancel := r.Subscribe()
		t.Cleanup(cancel)
		first := <-ch
		if got := ids(first.Joined); !slices.Equal(got, []string{"node-00", "node-01", "node-02", "node-03"}) {
			t.Fatalf("first change joined %v", got)
		}
		rings = append(rings, r)
		subs = append(subs, ch)
	}

	gone := nodeID(2)
	if _, err := cli.Revoke(testCtx(t), leases[gone]); err != nil {
		t.Fatal(err)
	}
	for i, ch := range subs {
		select {
		case ch := <-ch:
			if got := ids(ch.Left); !slices.Equal(got, []string{gone}) {
				t.Fatalf("ring %d: left %v, want [%s]", i, got, gone)
			}
			if len(ch.Joined) != 0 || len(ch.Members) != 3 {
				t.Fatalf("ring %d: change %+v", i, ch)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("ring %d did not see the lease revoked", i)
		}
		if _, ok := rings[i].Member(gone); ok {
			t.Fatalf("ring %d still has %s", i, gone)
		}
	}
	for _, k := range keys(1000) {
		if rings[2].Mine(k) {
			t.Fatalf("revoked member still owns %s", k)
		}
		n, _ := rings[0].NodeFor(k)
		mine := 0
		for _, r := range rings {
			if r.Mine(k) {
				mine++
			}
		}
		if mine != 1 || !rings[slices.Index([]string{"node-00", "node-01", "node-02", "node-03"}, n)].Mine(k) {
			t.Fatalf("key %s owned by %s, Mine true on %d rings", k, n, mine)
		}
	}
}

// TestCompactionWhileDisconnected cuts a watcher off from etcd, changes the
// member set, compacts away the history it would resume from, and heals the
// link: the watcher must re-read and end up with the right members.
func TestCompactionWhileDisconnected(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for i := range 5 {
		join(t, cli, member(nodeID(i)))
	}
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	core, logs := observer.New(zap.WarnLevel)
	r := watch(t, etcdtest.Dial(t, etcdtest.ClientConfig(p.Addr())), ring.Options{
		RetryDelay: 10 * time.Millisecond,
		Logger:     zap.New(core),
	})
	ch, cancel := r.Subscribe()
	defer cancel()
	<-ch
	waitRev(t, r, currentRev(t, cli))

	p.Cut()
	leave(t, cli, nodeID(0))
	leave(t, cli, nodeID(1))
	join(t, cli, member(nodeID(5)))
	join(t, cli, member(nodeID(6)))
	leave(t, cli, nodeID(3))
	join(t, cli, member(nodeID(3), "reborn")) // same ID, new incarnation
	join(t, cli, member(nodeID(4), "changed"))
	rev := currentRev(t, cli)
	if _, err := cli.Compact(testCtx(t), rev); err != nil {
		t.Fatal(err)
	}
	if r.Revision() >= rev {
		t.Fatalf("watcher saw revision %d through a cut proxy", r.Revision())
	}
	p.Heal()

	waitRev(t, r, rev)
	if logs.FilterMessageSnippet("compacted").Len() == 0 {
		t.Fatalf("recovered without seeing the compaction; logs: %v", logs.All())
	}
	want := []string{"node-02", "node-03", "node-04", "node-05", "node-06"}
	if got := ids(r.Nodes()); !slices.Equal(got, want) {
		t.Fatalf("members after heal %v, want %v", got, want)
	}
	if m, _ := r.Member(nodeID(4)); !m.HasKind("changed") {
		t.Fatalf("node-04 record not updated: %+v", m)
	}

	// The subscriber gets one merged change from what it saw before the cut.
	var got ring.Change
	deadline := time.After(10 * time.Second)
	for got.Revision < rev {
		select {
		case got = <-ch:
		case <-deadline:
			t.Fatalf("no change at revision %d; last %+v", rev, got)
		}
	}
	if j, l, u := ids(got.Joined), ids(got.Left), ids(got.Updated); !slices.Equal(j, []string{"node-03", "node-05", "node-06"}) ||
		!slices.Equal(l, []string{"node-00", "node-01", "node-03"}) || !slices.Equal(u, []string{"node-04"}) {
		t.Fatalf("change joined %v left %v updated %v", j, l, u)
	}

	// And the ring keeps following etcd after the recovery.
	leave(t, cli, nodeID(2))
	waitRev(t, r, currentRev(t, cli))
	if _, ok := r.Member(nodeID(2)); ok {
		t.Fatal("leave after recovery not seen")
	}
}

// TestCompactionWhileLagging holds a watcher's traffic while the member set
// churns and the history is compacted; once released it must agree with a
// fresh read.
func TestCompactionWhileLagging(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	join(t, cli, member(nodeID(0)))
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	r := watch(t, etcdtest.Dial(t, etcdtest.ClientConfig(p.Addr())), ring.Options{RetryDelay: 10 * time.Millisecond})
	p.Pause()
	for i := 1; i < 20; i++ {
		join(t, cli, member(nodeID(i)))
		if i%3 == 0 {
			leave(t, cli, nodeID(i-1))
		}
	}
	rev := currentRev(t, cli)
	if _, err := cli.Compact(testCtx(t), rev); err != nil {
		t.Fatal(err)
	}
	p.Resume()
	waitRev(t, r, rev)

	fresh := watch(t, cli, ring.Options{})
	if got, want := ids(r.Nodes()), ids(fresh.Nodes()); !slices.Equal(got, want) {
		t.Fatalf("lagging watcher has %v, a fresh read has %v", got, want)
	}
}

func TestTwoWatchersAgree(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	a := watch(t, c.Client(t), ring.Options{})
	for i := range 12 {
		join(t, cli, member(nodeID(i)))
	}
	leave(t, cli, nodeID(4))
	leave(t, cli, nodeID(7))
	b := watch(t, c.Client(t), ring.Options{})
	rev := currentRev(t, cli)
	waitRev(t, a, rev)
	waitRev(t, b, rev)
	sa, sb := a.Snapshot(), b.Snapshot()
	if !slices.Equal(ids(sa.Nodes()), ids(sb.Nodes())) {
		t.Fatalf("member sets differ: %v vs %v", ids(sa.Nodes()), ids(sb.Nodes()))
	}
	ks := keys(100_000)
	oa, ob := owners(t, sa, ks), owners(t, sb, ks)
	for i := range ks {
		if oa[i] != ob[i] {
			t.Fatalf("key %s: %s vs %s", ks[i], oa[i], ob[i])
		}
	}
}

func TestWaitRevision(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	r := watch(t, cli, ring.Options{})
	ctx := testCtx(t)

	// A revision that touched no member key is still reached.
	resp, err := cli.Put(ctx, "/elsewhere", "x")
	if err != nil {
		t.Fatal(err)
	}
	waitRev(t, r, resp.Header.Revision)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	defer cancel()
	if err := r.WaitRevision(short, resp.Header.Revision+100); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("wait for a future revision: %v, want deadline exceeded", err)
	}

	done := make(chan error, 1)
	go func() { done <- r.WaitRevision(ctx, resp.Header.Revision+100) }()
	r.Close()
	if err := <-done; !errors.Is(err, ring.ErrClosed) {
		t.Fatalf("wait on a closed ring: %v, want ErrClosed", err)
	}
}

func TestSubscribeCoalesces(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	join(t, cli, member(nodeID(0)))
	r := watch(t, cli, ring.Options{})
	ch, cancel := r.Subscribe()
	// Nobody reads while the member set changes many times.
	for i := 1; i < 10; i++ {
		join(t, cli, member(nodeID(i)))
	}
	leave(t, cli, nodeID(0))
	rev := currentRev(t, cli)
	waitRev(t, r, rev)

	ch1 := <-ch
	if len(ch1.Left) != 0 || len(ch1.Joined) != 9 || ch1.Revision != rev {
		t.Fatalf("merged change: rev %d joined %v left %v", ch1.Revision, ids(ch1.Joined), ids(ch1.Left))
	}
	select {
	case extra := <-ch:
		t.Fatalf("second change %+v after a merged one", extra)
	default:
	}
	cancel()
	cancel()
	if _, ok := <-ch; ok {
		t.Fatal("channel open after cancel")
	}

	ch2, cancel2 := r.Subscribe()
	defer cancel2()
	<-ch2
	r.Close()
	if _, ok := <-ch2; ok {
		t.Fatal("channel open after Close")
	}
	ch3, _ := r.Subscribe()
	if _, ok := <-ch3; ok {
		t.Fatal("subscription on a closed ring is open")
	}
}

func TestAmongEligibleMembers(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for i := range 8 {
		var kinds []string
		if i%2 == 0 {
			kinds = []string{"counter"}
		}
		join(t, cli, member(nodeID(i), kinds...))
	}
	r := watch(t, cli, ring.Options{LocalID: nodeID(2)})
	counter := ring.OfferingKind("counter")
	sub := r.Snapshot().Among(counter)
	if got := sub.IDs(); !slices.Equal(got, []string{"node-00", "node-02", "node-04", "node-06"}) {
		t.Fatalf("eligible %v", got)
	}

	// A ring over the eligible members alone gives the same answers.
	for i := range 8 {
		if i%2 != 0 {
			leave(t, cli, nodeID(i))
		}
	}
	only := watch(t, cli, ring.Options{})
	mine := 0
	for _, k := range keys(10_000) {
		n, ok := r.NodeForAmong(k, counter)
		want, _ := only.NodeFor(k)
		if !ok || n != want {
			t.Fatalf("key %s: among %s, eligible-only ring %s", k, n, want)
		}
		if sub.Mine(k) {
			mine++
		}
	}
	if mine == 0 {
		t.Fatal("Mine never true on the sub-ring")
	}
	// The sub-ring is built once per member set, not per lookup.
	calls := 0
	counting := ring.Filter{Key: "counting", Match: func(m ring.Member) bool { calls++; return true }}
	snap := only.Snapshot()
	for _, k := range keys(1000) {
		snap.NodeForAmong(k, counting)
	}
	if calls != snap.Len() {
		t.Fatalf("filter called %d times for %d members", calls, snap.Len())
	}
	if n, ok := r.NodeForAmong("k", ring.HavingRole("none")); ok {
		t.Fatalf("no eligible member, got %s", n)
	}
}

func TestCustomLocator(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	for i := range 3 {
		join(t, cli, member(nodeID(i)))
	}
	first := func(_ string, nodes []string) string { return nodes[0] }
	r := watch(t, cli, ring.Options{Locator: first, LocalID: nodeID(0)})
	if n, _ := r.NodeFor("any"); n != nodeID(0) || !r.Mine("any") {
		t.Fatalf("custom locator not used: %s", n)
	}
	leave(t, cli, nodeID(0))
	waitRev(t, r, currentRev(t, cli))
	if n, _ := r.NodeFor("any"); n != nodeID(1) || r.Mine("any") {
		t.Fatalf("custom locator after leave: %s", n)
	}
}

func TestEmptyAndForeignKeys(t *testing.T) {
	c := etcdtest.Start(t)
	cli := c.Client(t)
	r := watch(t, cli, ring.Options{LocalID: "x"})
	if _, ok := r.NodeFor("k"); ok || r.Mine("k") {
		t.Fatal("empty ring owns a key")
	}
	ctx := testCtx(t)
	// Records that are not members are ignored, not fatal.
	for k, v := range map[string]string{
		ring.MemberKey(prefix, "bad"):      "{",
		ring.MemberKey(prefix, "other"):    `{"id":"someone-else"}`,
		ring.MembersPrefix(prefix) + "a/b": `{"id":"a"}`,
	} {
		if _, err := cli.Put(ctx, k, v); err != nil {
			t.Fatal(err)
		}
	}
	join(t, cli, member(nodeID(1)))
	waitRev(t, r, currentRev(t, cli))
	if got := ids(r.Nodes()); !slices.Equal(got, []string{nodeID(1)}) {
		t.Fatalf("members %v", got)
	}
	if _, err := ring.Watch(ctx, nil, prefix, ring.Options{}); !errors.Is(err, ring.ErrNoClient) {
		t.Fatalf("Watch without client: %v", err)
	}
}

func BenchmarkNodeFor(b *testing.B) {
	for _, n := range []int{3, 10, 100} {
		b.Run(fmt.Sprintf("members=%d", n), func(b *testing.B) {
			c := etcdtest.Start(b)
			cli := c.Client(b)
			for i := range n {
				m, _ := ring.EncodeMember(ring.Member{ID: fmt.Sprintf("node-%03d", i)})
				if _, err := cli.Put(context.Background(), ring.MemberKey(prefix, fmt.Sprintf("node-%03d", i)), string(m)); err != nil {
					b.Fatal(err)
				}
			}
			r, err := ring.Watch(context.Background(), cli, prefix, ring.Options{})
			if err != nil {
				b.Fatal(err)
			}
			defer r.Close()
			ks := keys(1024)
			b.ReportAllocs()
			b.ResetTimer()
			for i := 0; b.Loop(); i++ {
				r.NodeFor(ks[i%len(ks)])
			}
		})
	}
}
