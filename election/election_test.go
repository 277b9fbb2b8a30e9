package election_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
)

const testTTL = 2 * time.Second

func startSession(t testing.TB, client *clientv3.Client) *lease.Session {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	s, err := lease.Start(ctx, client, lease.Config{TTL: testTTL})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close(context.Background()) })
	return s
}

func newElection(t testing.TB, s *lease.Session, name string) *election.Election {
	t.Helper()
	el, err := election.New(s, name, election.Config{Logger: zaptest.NewLogger(t)})
	if err != nil {
		t.Fatal(err)
	}
	return el
}

type campaignResult struct {
	l   *election.Leadership
	err error
	at  time.Time
}

// campaign runs Campaign in a goroutine the test waits for through the
// returned channel.
func campaign(ctx context.Context, el *election.Election, value string) <-chan campaignResult {
	ch := make(chan campaignResult, 1)
	go func() {
		l, err := el.Campaign(ctx, value)
		ch <- campaignResult{l, err, time.Now()}
	}()
	return ch
}

func candidates(t testing.TB, cli *clientv3.Client, name string) int64 {
	t.Helper()
	resp, err := cli.Get(context.Background(), "/cohort/election/"+name+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	return resp.Count
}

// waitFor waits until cond holds, polling it every 2ms, and fails t if it
// does not within limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, 2*time.Millisecond, what, cond)
}

func await(t testing.TB, ch <-chan campaignResult, limit time.Duration) campaignResult {
	t.Helper()
	select {
	case r := <-ch:
		return r
	case <-time.After(limit):
		t.Fatalf("campaign did not return within %v", limit)
	}
	panic("unreachable")
}

func TestOneLeadsOtherWaitsThenTakesOver(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	a := newElection(t, startSession(t, cl.Client(t)), "svc")
	b := newElection(t, startSession(t, cl.Client(t)), "svc")
	ctx := t.Context()

	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	bch := campaign(ctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue as a candidate", func() bool { return candidates(t, direct, "svc") == 2 })
	select {
	case r := <-bch:
		t.Fatalf("b leads while a does: %+v", r)
	default:
	}
	ld, err := b.Leader(ctx)
	if err != nil || ld.Value != "a" || ld.Rev != la.Rev() || ld.Key != la.Key() {
		t.Fatalf("Leader = %+v, %v; want a's term %d", ld, err, la.Rev())
	}
	if _, err := a.Campaign(ctx, "again"); !errors.Is(err, election.ErrBusy) {
		t.Fatalf("second Campaign while leading = %v, want ErrBusy", err)
	}

	start := time.Now()
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, bch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	handover := r.at.Sub(start)
	t.Logf("Resign to new leader: %v", handover)
	// A resign hands over without waiting for the lease to expire; the
	// speed itself is measured by BenchmarkResignHandover.
	if handover > time.Second {
		t.Fatalf("handover took %v: it waited for the lease instead of the resign", handover)
	}
	select {
	case <-la.Done():
	default:
		t.Fatal("a's term not ended by Resign")
	}
	if !errors.Is(la.Err(), election.ErrResigned) {
		t.Fatalf("a's reason = %v", la.Err())
	}
	if r.l.Rev() <= la.Rev() {
		t.Fatalf("token did not grow: %d after %d", r.l.Rev(), la.Rev())
	}
	if r.l.Err() != nil {
		t.Fatalf("b's term ended: %v", r.l.Err())
	}
	// a can stand again and queues behind b.
	ach := campaign(ctx, a, "a2")
	waitFor(t, 5*time.Second, "a to queue again", func() bool { return candidates(t, direct, "svc") == 2 })
	if err := r.l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ra := await(t, ach, 5*time.Second)
	if ra.err != nil {
		t.Fatal(ra.err)
	}
	if err := ra.l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := a.Leader(ctx); !errors.Is(err, election.ErrNoLeader) {
		t.Fatalf("Leader with no candidates = %v", err)
	}
}

func TestStaleTokenWriteRejected(t *testing.T) {
	cl := etcdtest.Start(t)
	a := newElection(t, startSession(t, cl.Client(t)), "writer")
	b := newElection(t, startSession(t, cl.Client(t)), "writer")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	put := func(l *election.Leadership, v string) bool {
		t.Helper()
		resp, err := l.FencedTxn(ctx).Then(clientv3.OpPut("/data/x", v)).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !put(la, "from a") {
		t.Fatal("current leader's fenced write rejected")
	}
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	lb, err := b.Campaign(ctx, "b")
	if err != nil {
		t.Fatal(err)
	}
	if put(la, "stale a") {
		t.Fatal("write guarded by a stale token succeeded")
	}
	if !put(lb, "from b") {
		t.Fatal("new leader's fenced write rejected")
	}
	// An extra compare joins the guard.
	resp, err := lb.FencedTxn(ctx, clientv3.Compare(clientv3.Value("/data/x"), "=", "nope")).Then(clientv3.OpPut("/data/x", "no")).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("fenced txn ignored its extra compare: %v", err)
	}
	// The guard as a bare compare, in the caller's own transaction.
	resp, err = cl.Client(t).Txn(ctx).If(la.Guard()).Then(clientv3.OpPut("/data/x", "stale again")).Commit()
	if err != nil || resp.Succeeded {
		t.Fatalf("stale Guard in a plain txn: succeeded=%v err=%v", resp != nil && resp.Succeeded, err)
	}
	got, err := cl.Client(t).Get(ctx, "/data/x")
	if err != nil || string(got.Kvs[0].Value) != "from b" {
		t.Fatalf("/data/x = %v, %v", got, err)
	}
}

// TestLeaseLossFencesLeader pauses the leader's connection to etcd: the
// leader must be told its term ended while etcd still holds its lease, and
// the other candidate must take over only after that.
func TestLeaseLossFencesLeader(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	sa := startSession(t, etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr())))
	a := newElection(t, sa, "singleton")
	b := newElection(t, startSession(t, cl.Client(t)), "singleton")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	bch := campaign(ctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue", func() bool { return candidates(t, direct, "singleton") == 2 })

	proxy.Pause()
	select {
	case <-la.Done():
	case <-time.After(2 * testTTL):
		t.Fatal("leader not told of the lost epoch")
	}
	told := time.Now()
	if !errors.Is(la.Err(), election.ErrEpochLost) || !errors.Is(la.Err(), lease.ErrDeadlinePassed) {
		t.Fatalf("reason = %v", la.Err())
	}
	resp, err := direct.TimeToLive(ctx, la.Epoch().ID())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL < 0 {
		t.Fatal("etcd had already dropped the leader's lease when the leader was told")
	}
	r := await(t, bch, 2*testTTL)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if !r.at.After(told) {
		t.Fatal("b led before a was told")
	}
	t.Logf("leader told %v before the other candidate took over", r.at.Sub(told))
	proxy.Resume()
	resp2, err := r.l.FencedTxn(ctx).Then(clientv3.OpPut("/data/owner", "b")).Commit()
	if err != nil || !resp2.Succeeded {
		t.Fatalf("new leader's fenced write: %v", err)
	}
	if err := la.Resign(ctx); err != nil {
		t.Fatalf("Resign of an ended term: %v", err)
	}
	if !errors.Is(la.Err(), election.ErrEpochLost) {
		t.Fatalf("Resign changed the reason to %v", la.Err())
	}
	// After the session re-joins, a can campaign again on the new epoch.
	wctx, cancel := context.WithTimeout(ctx, 3*testTTL)
	defer cancel()
	ach := campaign(wctx, a, "a")
	waitFor(t, 3*testTTL, "a to queue on its new epoch", func() bool { return candidates(t, direct, "singleton") == 2 })
	if err := r.l.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	ra := await(t, ach, 5*time.Second)
	if ra.err != nil || ra.l.Epoch().Seq() != 2 {
		t.Fatalf("a on its new epoch: %+v", ra)
	}
	ra.l.Resign(ctx)
}

func TestSessionCloseEndsLeadership(t *testing.T) {
	cl := etcdtest.Start(t)
	sa := startSession(t, cl.Client(t))
	a := newElection(t, sa, "svc")
	b := newElection(t, startSession(t, cl.Client(t)), "svc")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	bch := campaign(ctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue", func() bool { return candidates(t, cl.Client(t), "svc") == 2 })
	start := time.Now()
	if err := sa.Close(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Done():
	case <-time.After(time.Second):
		t.Fatal("term not ended by the session's Close")
	}
	if !errors.Is(la.Err(), election.ErrEpochLost) || !errors.Is(la.Err(), lease.ErrClosed) {
		t.Fatalf("reason = %v", la.Err())
	}
	r := await(t, bch, 2*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	t.Logf("node stop to new leader: %v", r.at.Sub(start))
	r.l.Resign(ctx)
}

func TestLeaderKeyDeletedEndsTerm(t *testing.T) {
	cl := etcdtest.Start(t)
	a := newElection(t, startSession(t, cl.Client(t)), "svc")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	if _, err := cl.Client(t).Delete(ctx, la.Key()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-la.Done():
	case <-time.After(5 * time.Second):
		t.Fatal("term not ended by deleting its key")
	}
	if !errors.Is(la.Err(), election.ErrLeaderKeyLost) {
		t.Fatalf("reason = %v", la.Err())
	}
	if err := la.Proclaim(ctx, "x"); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Proclaim after the end = %v", err)
	}
	// The Election is free to campaign again.
	lb, err := a.Campaign(ctx, "again")
	if err != nil {
		t.Fatal(err)
	}
	lb.Resign(ctx)
}

func TestCampaignCanceled(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	a := newElection(t, startSession(t, cl.Client(t)), "svc")
	b := newElection(t, startSession(t, cl.Client(t)), "svc")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	bctx, cancel := context.WithCancel(ctx)
	bch := campaign(bctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue", func() bool { return candidates(t, direct, "svc") == 2 })
	cancel()
	r := await(t, bch, 5*time.Second)
	if !errors.Is(r.err, context.Canceled) {
		t.Fatalf("canceled Campaign = %v", r.err)
	}
	waitFor(t, 5*time.Second, "b's candidacy to be withdrawn", func() bool { return candidates(t, direct, "svc") == 1 })
	if la.Err() != nil {
		t.Fatal(la.Err())
	}
	// b may campaign again.
	bch = campaign(ctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue again", func() bool { return candidates(t, direct, "svc") == 2 })
	la.Resign(ctx)
	r = await(t, bch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	r.l.Resign(ctx)
}

// TestCampaignEndsWithEpoch pauses a waiting candidate's connection: its
// Campaign must return once its epoch is lost.
func TestCampaignEndsWithEpoch(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	a := newElection(t, startSession(t, cl.Client(t)), "svc")
	b := newElection(t, startSession(t, etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))), "svc")
	ctx := t.Context()
	la, err := a.Campaign(ctx, "a")
	if err != nil {
		t.Fatal(err)
	}
	defer la.Resign(ctx)
	bch := campaign(ctx, b, "b")
	waitFor(t, 5*time.Second, "b to queue", func() bool { return candidates(t, cl.Client(t), "svc") == 2 })
	proxy.Pause()
	r := await(t, bch, 2*testTTL)
	if !errors.Is(r.err, election.ErrEpochLost) {
		t.Fatalf("Campaign after the epoch was lost = %v", r.err)
	}
	proxy.Resume()
}

func TestObserve(t *testing.T) {
	cl := etcdtest.Start(t)
	a := newElection(t, startSession(t, cl.Client(t)), "obs")
	b := newElection(t, startSession(t, cl.Client(t)), "obs")
	watcher := newElection(t, startSession(t, cl.Client(t)), "obs")
	ctx, cancel := context.WithCancel(t.Context())
	defer cancel()
	obs := watcher.Observe(ctx)
	next := func() election.Leader {
		t.Helper()
		select {
		case ld, ok := <-obs:
			if !ok {
				t.Fatal("Observe channel closed")
			}
			return ld
		case <-time.After(5 * time.Second):
			t.Fatal("no leader observed within 5s")
		}
		panic("unreachable")
	}
	la, err := a.Campaign(ctx, "a1")
	if err != nil {
		t.Fatal(err)
	}
	if ld := next(); ld.Value != "a1" || ld.Rev != la.Rev() {
		t.Fatalf("observed %+v", ld)
	}
	bch := campaign(ctx, b, "b")
	if err := la.Proclaim(ctx, "a2"); err != nil {
		t.Fatal(err)
	}
	if ld := next(); ld.Value != "a2" || ld.Rev != la.Rev() || la.Value() != "a2" {
		t.Fatalf("after Proclaim observed %+v", ld)
	}
	waitFor(t, 5*time.Second, "b to queue", func() bool { return candidates(t, cl.Client(t), "obs") == 2 })
	if err := la.Resign(ctx); err != nil {
		t.Fatal(err)
	}
	r := await(t, bch, 5*time.Second)
	if r.err != nil {
		t.Fatal(r.err)
	}
	if ld := next(); ld.Value != "b" || ld.Rev != r.l.Rev() {
		t.Fatalf("after handover observed %+v", ld)
	}
	cancel()
	for range obs {
	}
}

func TestInvalidName(t *testing.T) {
	cl := etcdtest.Start(t)
	s := startSession(t, cl.Client(t))
	for _, name := range []string{"", "a/b", "x\x00", strings.Repeat("n", 300)} {
		if _, err := election.New(s, name, election.Config{}); !errors.Is(err, election.ErrInvalidName) {
			t.Fatalf("New(%q) = %v, want ErrInvalidName", name, err)
		}
	}
}
