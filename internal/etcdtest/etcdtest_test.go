package etcdtest_test

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/internal/etcdtest"
)

func put(t *testing.T, c *clientv3.Client, key, val string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if _, err := c.Put(ctx, key, val); err != nil {
		t.Fatalf("put %s: %v", key, err)
	}
}

func get(t *testing.T, c *clientv3.Client, key string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	resp, err := c.Get(ctx, key)
	if err != nil {
		t.Fatalf("get %s: %v", key, err)
	}
	if len(resp.Kvs) == 0 {
		return ""
	}
	return string(resp.Kvs[0].Value)
}

func TestStartPutGet(t *testing.T) {
	begin := time.Now()
	c := etcdtest.Start(t)
	t.Logf("single member started in %v", time.Since(begin))
	if got := len(c.Endpoints()); got != 1 {
		t.Fatalf("%d endpoints, want 1", got)
	}
	cli := c.Client(t)
	put(t, cli, "a", "1")
	if got := get(t, cli, "a"); got != "1" {
		t.Fatalf("get a = %q, want 1", got)
	}
}

func TestThreeMembersSurviveStopAndRestart(t *testing.T) {
	begin := time.Now()
	c := etcdtest.StartN(t, 3)
	t.Logf("three members started in %v", time.Since(begin))
	cli := c.Client(t)
	put(t, cli, "k", "before")

	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	leader := c.WaitLeader(ctx)
	begin = time.Now()
	c.StopMember(leader)
	t.Logf("stopping the leader took %v", time.Since(begin))
	if c.Member(leader) != nil {
		t.Fatal("stopped member still reported as running")
	}

	// Two of three members are a quorum: writes and linearizable reads go on.
	put(t, cli, "k", "during")
	if got := get(t, cli, "k"); got != "during" {
		t.Fatalf("get k = %q, want during", got)
	}

	begin = time.Now()
	c.RestartMember(leader)
	t.Logf("restarting it took %v", time.Since(begin))

	// The restarted member catches up from its peers and serves on its old URL.
	direct := etcdtest.Dial(t, etcdtest.ClientConfig(c.Endpoint(leader)))
	put(t, cli, "k", "after")
	deadline := time.Now().Add(10 * time.Second)
	for get(t, direct, "k") != "after" {
		if time.Now().After(deadline) {
			t.Fatal("restarted member did not catch up")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestQuorumLossBlocksWrites(t *testing.T) {
	c := etcdtest.StartN(t, 3)
	cli := c.Client(t)
	put(t, cli, "k", "v")
	c.StopMember(1)
	c.StopMember(2)

	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "lost"); err == nil {
		t.Fatal("write succeeded without a quorum")
	}

	c.RestartMember(1)
	put(t, cli, "k", "back")
}

// proxied starts a cluster and a client through a proxy in front of it,
// and puts k=v through the proxy.
func proxied(t *testing.T) (*etcdtest.Cluster, *etcdtest.Proxy, *clientv3.Client) {
	t.Helper()
	c := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(p.Addr()))
	put(t, cli, "k", "v")
	return c, p, cli
}

func TestProxyCutAndHeal(t *testing.T) {
	_, p, cli := proxied(t)

	p.Cut()
	const deadline = 500 * time.Millisecond
	ctx, cancel := context.WithTimeout(context.Background(), deadline)
	defer cancel()
	begin := time.Now()
	_, err := cli.Get(ctx, "k")
	took := time.Since(begin)
	if err == nil {
		t.Fatal("get through a cut proxy succeeded")
	}
	if took > deadline+time.Second {
		t.Fatalf("get through a cut proxy took %v, deadline %v", took, deadline)
	}
	t.Logf("get through cut proxy failed after %v: %v", took, err)

	p.Heal()
	begin = time.Now()
	if got := get(t, cli, "k"); got != "v" {
		t.Fatalf("get k after heal = %q, want v", got)
	}
	t.Logf("first get after heal took %v", time.Since(begin))
}

func TestProxyPauseHoldsTraffic(t *testing.T) {
	c, p, cli := proxied(t)
	if p.Conns() == 0 {
		t.Fatal("no connection through the proxy")
	}

	p.Pause()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	_, err := cli.Get(ctx, "k")
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("get through a paused proxy: %v, want deadline exceeded", err)
	}
	if p.Conns() == 0 {
		t.Fatal("pause closed the connection")
	}

	// A request sent while paused is delivered on resume, over the same
	// connection.
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_, err := cli.Put(ctx, "k", "held")
		done <- err
	}()
	select {
	case err := <-done:
		t.Fatalf("put finished while paused: %v", err)
	case <-time.After(100 * time.Millisecond):
	}
	p.Resume()
	if err := <-done; err != nil {
		t.Fatalf("held put: %v", err)
	}
	if got := get(t, c.Client(t), "k"); got != "held" {
		t.Fatalf("get k = %q, want held", got)
	}
}

func TestProxyHoldRepliesCarriesRequestsOut(t *testing.T) {
	c, p, cli := proxied(t)
	p.HoldReplies()
	ctx, cancel := context.WithTimeout(context.Background(), 300*time.Millisecond)
	defer cancel()
	if _, err := cli.Put(ctx, "k", "unanswered"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("put with its reply held: %v, want deadline exceeded", err)
	}
	if got := get(t, c.Client(t), "k"); got != "unanswered" {
		t.Fatalf("get k = %q: the request did not reach etcd", got)
	}
	p.Heal()
	put(t, cli, "k", "after")
}

func TestProxyLeaseKeepAliveGoesUnanswered(t *testing.T) {
	c := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(p.Addr()))
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()

	lease, err := cli.Grant(ctx, 1)
	if err != nil {
		t.Fatal(err)
	}
	ka, err := cli.KeepAlive(ctx, lease.ID)
	if err != nil {
		t.Fatal(err)
	}
	<-ka // the first answer arrives while forwarding
	p.Pause()

	// With traffic held no keepalive is answered: the client gives the
	// lease up once its TTL passes without a renewal.
	for range ka {
	}
	if ctx.Err() != nil {
		t.Fatal("keepalive channel still open")
	}
	p.Heal()
	for {
		ttl, err := cli.TimeToLive(ctx, lease.ID)
		if err != nil {
			t.Fatal(err)
		}
		if ttl.TTL == -1 {
			return
		}
		select {
		case <-ctx.Done():
			t.Fatal("lease did not expire")
		case <-time.After(20 * time.Millisecond):
		}
	}
}

func TestProxyTargetURL(t *testing.T) {
	c := etcdtest.Start(t)
	p := etcdtest.NewProxy(t, c.Endpoint(0))
	if want := c.Endpoint(0)[len("http://"):]; p.Target() != want {
		t.Fatalf("target %q, want %q", p.Target(), want)
	}
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(p.Addr()))
	for i := range 10 {
		put(t, cli, fmt.Sprintf("k%d", i), "v")
	}
}

// echoServer answers every line with prefix and the line, until the test
// ends.
func echoServer(t *testing.T, prefix string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() {
		_ = ln.Close()
		wg.Wait()
	})
	wg.Add(1)
	go func() {
		defer wg.Done()
		var conns []net.Conn
		defer func() {
			for _, c := range conns {
				_ = c.Close()
			}
		}()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			conns = append(conns, c)
			wg.Add(1)
			go func() {
				defer wg.Done()
				sc := bufio.NewScanner(c)
				for sc.Scan() {
					if _, err := fmt.Fprintf(c, "%s%s\n", prefix, sc.Text()); err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// sourceConn is a client connection through a proxy that names its
// source in its first line.
type sourceConn struct {
	c net.Conn
	r *bufio.Reader
}

func dialAs(t *testing.T, p *etcdtest.Proxy, src string) *sourceConn {
	t.Helper()
	c, err := net.Dial("tcp", p.Addr())
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = c.Close() })
	if _, err := fmt.Fprintf(c, "%s\n", src); err != nil {
		t.Fatal(err)
	}
	return &sourceConn{c: c, r: bufio.NewReader(c)}
}

// roundTrip sends line and returns the answer, or an error when none came
// within wait.
func (s *sourceConn) roundTrip(line string, wait time.Duration) (string, error) {
	_ = s.c.SetDeadline(time.Now().Add(wait))
	if _, err := fmt.Fprintf(s.c, "%s\n", line); err != nil {
		return "", err
	}
	got, err := s.r.ReadString('\n')
	return strings.TrimSuffix(got, "\n"), err
}

// readSource is a ProxyOptions.Source that takes the connection's first
// line as its source name.
func readSource(c net.Conn) string {
	var b []byte
	one := make([]byte, 1)
	_ = c.SetReadDeadline(time.Now().Add(5 * time.Second))
	defer func() { _ = c.SetReadDeadline(time.Time{}) }()
	for {
		if _, err := c.Read(one); err != nil || one[0] == '\n' {
			return string(b)
		}
		b = append(b, one[0])
	}
}

func TestProxyCutFromAndPauseFromOneSource(t *testing.T) {
	p := etcdtest.NewProxyWith(t, echoServer(t, ""), etcdtest.ProxyOptions{Source: readSource})
	a, b := dialAs(t, p, "a"), dialAs(t, p, "b")
	for _, c := range []*sourceConn{a, b} {
		if got, err := c.roundTrip("x", 5*time.Second); err != nil || got != "x" {
			t.Fatalf("before the cut: %q, %v", got, err)
		}
	}

	p.CutFrom("a")
	if got, err := a.roundTrip("y", 5*time.Second); err == nil {
		t.Fatalf("a's connection was not dropped: got %q", got)
	}
	if got, err := dialAs(t, p, "a").roundTrip("y", 5*time.Second); err == nil {
		t.Fatalf("a new connection from a was forwarded: got %q", got)
	}
	if got, err := b.roundTrip("y", 5*time.Second); err != nil || got != "y" {
		t.Fatalf("b after a's cut: %q, %v", got, err)
	}

	p.HealFrom("a")
	if got, err := dialAs(t, p, "a").roundTrip("z", 5*time.Second); err != nil || got != "z" {
		t.Fatalf("a after heal: %q, %v", got, err)
	}

	p.PauseFrom("b")
	if got, err := b.roundTrip("held", 200*time.Millisecond); err == nil {
		t.Fatalf("b's bytes moved while paused: %q", got)
	}
	a2 := dialAs(t, p, "a")
	if got, err := a2.roundTrip("free", 5*time.Second); err != nil || got != "free" {
		t.Fatalf("a while b is paused: %q, %v", got, err)
	}
	p.HealFrom("b")
	_ = b.c.SetDeadline(time.Now().Add(5 * time.Second))
	if got, err := b.r.ReadString('\n'); err != nil || got != "held\n" {
		t.Fatalf("b's held line after heal: %q, %v", got, err)
	}

	// A proxy-wide cut covers every source; healing a source does not
	// lift it.
	p.Cut()
	p.HealFrom("a")
	if got, err := dialAs(t, p, "a").roundTrip("w", 5*time.Second); err == nil {
		t.Fatalf("forwarded through a cut proxy: %q", got)
	}
	p.Heal()
	if got, err := dialAs(t, p, "a").roundTrip("w", 5*time.Second); err != nil || got != "w" {
		t.Fatalf("after the proxy healed: %q, %v", got, err)
	}
}

func TestProxySetTarget(t *testing.T) {
	p := etcdtest.NewProxyWith(t, echoServer(t, "1:"), etcdtest.ProxyOptions{Source: readSource})
	old := dialAs(t, p, "a")
	if got, err := old.roundTrip("x", 5*time.Second); err != nil || got != "1:x" {
		t.Fatalf("first target: %q, %v", got, err)
	}
	second := echoServer(t, "2:")
	p.SetTarget("http://" + second)
	if p.Target() != second {
		t.Fatalf("target %q, want %q", p.Target(), second)
	}
	if got, err := dialAs(t, p, "a").roundTrip("x", 5*time.Second); err != nil || got != "2:x" {
		t.Fatalf("new connection after SetTarget: %q, %v", got, err)
	}
	if got, err := old.roundTrip("y", 5*time.Second); err != nil || got != "1:y" {
		t.Fatalf("open connection after SetTarget: %q, %v", got, err)
	}
}

func TestWaitForReturnsOnceCondHolds(t *testing.T) {
	calls := 0
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "the third call", func() bool {
		calls++
		return calls == 3
	})
	if calls != 3 {
		t.Fatalf("cond called %d times, want 3", calls)
	}
}
