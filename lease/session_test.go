package lease_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
)

func TestConfigValidation(t *testing.T) {
	cases := []struct {
		name string
		cfg  lease.Config
		ok   bool
	}{
		{"zero value", lease.Config{}, true},
		{"minimum TTL", lease.Config{TTL: 2 * time.Second}, true},
		{"TTL below etcd minimum", lease.Config{TTL: 1500 * time.Millisecond}, false},
		{"negative margin", lease.Config{TTL: 2 * time.Second, Margin: -time.Millisecond}, false},
		{"margin eats the TTL", lease.Config{TTL: 2 * time.Second, Margin: 1500 * time.Millisecond}, false},
		{"interval plus margin too long", lease.Config{TTL: 3 * time.Second, Margin: time.Second, KeepAliveInterval: 2 * time.Second}, false},
	}
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
			defer cancel()
			s, err := lease.Start(ctx, cli, tc.cfg)
			if tc.ok {
				if err != nil {
					t.Fatalf("Start: %v", err)
				}
				if err := s.Close(ctx); err != nil {
					t.Fatalf("Close: %v", err)
				}
				return
			}
			if !errors.Is(err, lease.ErrInvalidConfig) {
				t.Fatalf("Start err = %v, want ErrInvalidConfig", err)
			}
		})
	}
}

func TestDefaults(t *testing.T) {
	cl := etcdtest.Start(t)
	s, err := lease.Start(t.Context(), cl.Client(t), lease.Config{})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	cfg := s.Config()
	if cfg.TTL != 5*time.Second || cfg.Margin != time.Second || cfg.KeepAliveInterval != 5*time.Second/3 {
		t.Fatalf("defaults = TTL %v Margin %v Interval %v", cfg.TTL, cfg.Margin, cfg.KeepAliveInterval)
	}
	if got := s.Current().TTL(); got != 5*time.Second {
		t.Fatalf("granted TTL %v", got)
	}
}

func TestKeepAliveExtendsEpoch(t *testing.T) {
	cl := etcdtest.Start(t)
	s, err := lease.Start(t.Context(), cl.Client(t), lease.Config{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	e := s.Current()
	first := e.AliveUntil()
	if d := time.Until(first); d <= 0 || d > 2*time.Second {
		t.Fatalf("alive-until %v from now", d)
	}
	// Three renewals, past the point where the first grant alone would
	// have run out.
	waitFor(t, 3*time.Second, "alive-until to move past the first grant", func() bool {
		return e.AliveUntil().After(first.Add(time.Second))
	})
	if !e.Alive() || e.Err() != nil {
		t.Fatalf("epoch not alive: %v", e.Err())
	}
	if s.Current() != e {
		t.Fatalf("epoch replaced while connected")
	}
}

// TestPauseFencesBeforeServerExpiry cuts the session's traffic to etcd
// with a paused proxy: the epoch must be declared lost while etcd still
// holds the lease, and a new epoch must start once traffic flows again.
func TestPauseFencesBeforeServerExpiry(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	r := measureFencing(t, cl, direct, 2*time.Second)
	t.Logf("TTL 2s: signal fired %v after pause; lease revoked by etcd %v after the signal (nominal expiry at least margin %v after it)",
		r.fired, r.leadToRevoke, r.margin)
}

type fencing struct {
	fired        time.Duration // from pause to the lost signal
	leadToRevoke time.Duration // from the lost signal to etcd's revocation of the lease
	margin       time.Duration
}

func measureFencing(t testing.TB, cl *etcdtest.Cluster, direct *clientv3.Client, ttl time.Duration) fencing {
	ctx := context.Background()
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	s, err := lease.Start(ctx, cli, lease.Config{TTL: ttl})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	e := s.Current()
	// Let one renewal go through so the epoch is past its grant.
	first := e.AliveUntil()
	waitFor(t, ttl, "first renewal", func() bool { return e.AliveUntil().After(first) })

	proxy.Pause()
	paused := time.Now()
	select {
	case <-e.Lost():
	case <-time.After(2 * ttl):
		t.Fatalf("epoch not lost %v after pause", 2*ttl)
	}
	fired := time.Now()
	if !errors.Is(e.Err(), lease.ErrDeadlinePassed) {
		t.Fatalf("reason = %v, want ErrDeadlinePassed", e.Err())
	}
	if e.Alive() {
		t.Fatal("lost epoch reports alive")
	}
	if e.Context().Err() == nil || !errors.Is(context.Cause(e.Context()), lease.ErrDeadlinePassed) {
		t.Fatalf("epoch context not canceled with the reason: %v", context.Cause(e.Context()))
	}
	resp, err := direct.TimeToLive(ctx, e.ID())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL < 0 {
		t.Fatalf("etcd had already dropped lease %x when the lost signal fired", e.ID())
	}
	var revoked time.Time
	for {
		resp, err := direct.TimeToLive(ctx, e.ID())
		if err != nil {
			t.Fatal(err)
		}
		if resp.TTL < 0 {
			revoked = time.Now()
			break
		}
		if time.Since(fired) > 2*ttl {
			t.Fatal("etcd never expired the paused lease")
		}
		time.Sleep(5 * time.Millisecond)
	}

	proxy.Resume()
	wctx, cancel := context.WithTimeout(ctx, 3*ttl)
	defer cancel()
	next, err := s.Wait(wctx)
	if err != nil {
		t.Fatalf("no new epoch after resume: %v", err)
	}
	if next.Seq() != e.Seq()+1 || next.ID() == e.ID() {
		t.Fatalf("new epoch %v after %v", next, e)
	}
	resp, err = direct.TimeToLive(ctx, next.ID())
	if err != nil || resp.TTL <= 0 {
		t.Fatalf("new lease not live on etcd: ttl %v err %v", resp.TTL, err)
	}
	return fencing{fired: fired.Sub(paused), leadToRevoke: revoked.Sub(fired), margin: s.Config().Margin}
}

func TestRevokeFromOutside(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	s, err := lease.Start(t.Context(), cl.Client(t), lease.Config{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(context.Background())
	e := s.Current()
	if _, err := direct.Revoke(t.Context(), e.ID()); err != nil {
		t.Fatal(err)
	}
	revoked := time.Now()
	// The next keepalive, at most one interval away, learns of it.
	limit := s.Config().KeepAliveInterval + 500*time.Millisecond
	select {
	case <-e.Lost():
	case <-time.After(limit):
		t.Fatalf("epoch not lost within %v of revoke", limit)
	}
	t.Logf("revoke noticed after %v", time.Since(revoked))
	if !errors.Is(e.Err(), lease.ErrLeaseNotFound) {
		t.Fatalf("reason = %v, want ErrLeaseNotFound", e.Err())
	}
	ctx, cancel := context.WithTimeout(t.Context(), 5*time.Second)
	defer cancel()
	next, err := s.Next(ctx, e)
	if err != nil {
		t.Fatal(err)
	}
	if next.ID() == e.ID() || next.Seq() != 2 {
		t.Fatalf("next epoch %v after %v", next, e)
	}
	if got, err := s.Wait(ctx); err != nil || got != next {
		t.Fatalf("Wait = %v, %v; want %v", got, err, next)
	}
}

func TestCloseRevokes(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	cli := cl.Client(t)
	s, err := lease.Start(t.Context(), cli, lease.Config{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := s.Current()
	if _, err := cli.Put(t.Context(), "k", "v", clientv3.WithLease(e.ID())); err != nil {
		t.Fatal(err)
	}
	cs, err := e.Concurrency()
	if err != nil {
		t.Fatal(err)
	}
	if cs.Lease() != e.ID() {
		t.Fatalf("concurrency session on lease %x, want %x", cs.Lease(), e.ID())
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("Close: %v", err)
	}
	if !errors.Is(e.Err(), lease.ErrClosed) {
		t.Fatalf("reason = %v, want ErrClosed", e.Err())
	}
	select {
	case <-cs.Done():
	default:
		t.Fatal("concurrency session still renewing after Close")
	}
	resp, err := direct.TimeToLive(t.Context(), e.ID())
	if err != nil {
		t.Fatal(err)
	}
	if resp.TTL != -1 {
		t.Fatalf("lease still on etcd after Close: ttl %d", resp.TTL)
	}
	get, err := direct.Get(t.Context(), "k")
	if err != nil || len(get.Kvs) != 0 {
		t.Fatalf("lease-bound key survived Close: %v %v", get, err)
	}
	if _, err := s.Wait(t.Context()); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Wait after Close = %v", err)
	}
	if _, err := s.Next(t.Context(), e); !errors.Is(err, lease.ErrClosed) {
		t.Fatalf("Next after Close = %v", err)
	}
	if _, err := e.Concurrency(); !errors.Is(err, lease.ErrEpochLost) {
		t.Fatalf("Concurrency on a lost epoch = %v", err)
	}
	if err := s.Close(t.Context()); err != nil {
		t.Fatalf("second Close: %v", err)
	}
}

// TestCloseDuringRejoin closes a session whose etcd is unreachable: Close
// must not hang on the re-join.
func TestCloseDuringRejoin(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	s, err := lease.Start(t.Context(), cli, lease.Config{TTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	e := s.Current()
	proxy.Pause()
	select {
	case <-e.Lost():
	case <-time.After(4 * time.Second):
		t.Fatal("epoch not lost")
	}
	ctx, cancel := context.WithTimeout(t.Context(), 200*time.Millisecond)
	defer cancel()
	start := time.Now()
	_ = s.Close(ctx) // the revoke cannot reach etcd; only the bound matters
	if d := time.Since(start); d > time.Second {
		t.Fatalf("Close took %v while etcd was unreachable", d)
	}
	proxy.Resume()
}

// waitFor waits until cond holds, polling it every 5ms, and fails t if it
// does not within limit.
func waitFor(t testing.TB, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, 5*time.Millisecond, what, cond)
}

// A hold on a lost epoch keeps the session from revoking its lease until
// the hold is released: the work done under the epoch stops before other
// nodes can take it over. Once released, the lease is revoked at once, not
// left to expire.
func TestHoldDelaysRevoke(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx := t.Context()
	direct := etcdtest.Dial(t, etcdtest.ClientConfig(cl.Endpoints()[0]))
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(proxy.Addr()))
	// A wide margin: the epoch is declared lost seconds before etcd can
	// expire its lease, so an early revoke is told apart from expiry.
	s, err := lease.Start(ctx, cli, lease.Config{TTL: 8 * time.Second, Margin: 5 * time.Second, KeepAliveInterval: time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer s.Close(ctx)
	e := s.Current()
	release := e.Hold()
	proxy.Pause()
	select {
	case <-e.Lost():
	case <-time.After(8 * time.Second):
		t.Fatal("epoch not lost")
	}
	proxy.Resume()
	wctx, cancel := context.WithTimeout(ctx, 8*time.Second)
	defer cancel()
	if _, err := s.Wait(wctx); err != nil {
		t.Fatalf("no new epoch: %v", err)
	}
	select {
	case <-e.Released():
		t.Fatal("lost epoch released while held")
	default:
	}
	alive := func() int64 {
		resp, err := direct.TimeToLive(ctx, e.ID())
		if err != nil {
			t.Fatal(err)
		}
		return resp.TTL
	}
	// The new epoch exists; without the hold the old lease would be
	// revoked right after it was granted.
	time.Sleep(300 * time.Millisecond)
	left := alive()
	if left <= 1 {
		t.Fatalf("held lease %x has %ds left; want it alive until the hold is released", e.ID(), left)
	}
	released := time.Now()
	release()
	release() // a second release changes nothing
	<-e.Released()
	waitFor(t, time.Duration(left-1)*time.Second, "the released lease's revocation", func() bool { return alive() < 0 })
	if d := time.Since(released); d >= time.Duration(left)*time.Second {
		t.Fatalf("lease gone %v after the release: it expired, it was not revoked", d)
	}
	// A hold on a lost epoch does nothing.
	e.Hold()()
}
