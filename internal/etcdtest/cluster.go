// Package etcdtest runs real etcd clusters inside a test process.
//
// Every etcd-backed test in the repository uses it: Start for one member,
// StartN for a multi-member cluster, Cluster.Client for a client that is
// closed at cleanup, and NewProxy to put a controllable TCP hop between a
// client and etcd (cut the link, or hold its bytes so keepalives go
// unanswered) or any other TCP server, such as a node's transport
// (NewProxyWith tells its clients apart, to cut one and not the others);
// WaitFor polls for a state the test expects the cluster to reach.
// Members run with short raft timeouts and without fsync, so a single
// member starts in tens of milliseconds; data lives in t.TempDir().
package etcdtest

import (
	"context"
	"fmt"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"

	"github.com/cohort-go/cohort/internal/embedetcd"
)

// Timing used for test members. A single member elects itself after one
// tick; a multi-member cluster gets timeouts that survive a loaded, race-
// instrumented machine without spurious elections.
const (
	singleHeartbeat  = 10 * time.Millisecond
	singleElection   = 100 * time.Millisecond
	clusterHeartbeat = 25 * time.Millisecond
	clusterElection  = 500 * time.Millisecond
	startTimeout     = 30 * time.Second
)

// Cluster is a running etcd cluster whose members all live in the test
// process. Its methods fail the test that created it on error; they are safe
// to call from several goroutines.
type Cluster struct {
	t testing.TB

	mu      sync.Mutex
	cfgs    []embedetcd.Config
	members []*embedetcd.Server // nil while stopped
}

// Start runs a single-member cluster with its data in t.TempDir() and
// registers a cleanup that stops it. It fails t if etcd does not start.
func Start(t testing.TB) *Cluster {
	t.Helper()
	return StartN(t, 1)
}

// StartN runs an n-member cluster in this process, waits until every member
// is ready, and registers a cleanup that stops all of them. It fails t if
// the cluster does not start within 30 seconds.
func StartN(t testing.TB, n int) *Cluster {
	t.Helper()
	if n < 1 {
		t.Fatalf("etcdtest: StartN(%d): need at least one member", n)
	}
	cfgs := make([]embedetcd.Config, n)
	for i := range cfgs {
		cfgs[i] = embedetcd.Config{
			Dir:               t.TempDir(),
			HeartbeatInterval: singleHeartbeat,
			ElectionTimeout:   singleElection,
			UnsafeNoFsync:     true,
		}
		if n > 1 {
			cfgs[i].HeartbeatInterval = clusterHeartbeat
			cfgs[i].ElectionTimeout = clusterElection
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	servers, err := embedetcd.StartCluster(ctx, cfgs)
	if err != nil {
		t.Fatalf("etcdtest: start %d-member cluster: %v", n, err)
	}
	c := &Cluster{t: t, members: servers, cfgs: make([]embedetcd.Config, n)}
	for i, s := range servers {
		c.cfgs[i] = s.Config()
	}
	t.Cleanup(c.close)
	return c
}

func (c *Cluster) close() {
	c.mu.Lock()
	members := append([]*embedetcd.Server(nil), c.members...)
	c.mu.Unlock()
	embedetcd.CloseAll(members...)
}

// Size returns the number of members, running or stopped.
func (c *Cluster) Size() int { return len(c.cfgs) }

// Endpoints returns the client URLs of every member, running or stopped, in
// member order. A stopped member keeps its URL across RestartMember.
func (c *Cluster) Endpoints() []string {
	eps := make([]string, len(c.cfgs))
	for i, cfg := range c.cfgs {
		eps[i] = cfg.ClientURL
	}
	return eps
}

// Endpoint returns the client URL of member i.
func (c *Cluster) Endpoint(i int) string {
	c.check(i)
	return c.cfgs[i].ClientURL
}

// Member returns the running server of member i, or nil while it is
// stopped.
func (c *Cluster) Member(i int) *embedetcd.Server {
	c.check(i)
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.members[i]
}

// Client returns a client for all members' endpoints, closed when t's test
// ends. It fails t if the client cannot be created.
func (c *Cluster) Client(t testing.TB) *clientv3.Client {
	t.Helper()
	return Dial(t, ClientConfig(c.Endpoints()...))
}

// StopMember stops member i and waits until it has released its ports,
// which takes about a second (see embedetcd.Server.Close). The member's data
// dir is kept for RestartMember. Stopping a stopped member does nothing.
func (c *Cluster) StopMember(i int) {
	c.check(i)
	c.mu.Lock()
	s := c.members[i]
	c.members[i] = nil
	c.mu.Unlock()
	if s != nil {
		s.Close()
	}
}

// RestartMember starts member i again from its data dir on the same URLs and
// waits until it has rejoined the cluster and is ready; that needs a quorum
// of the other members running. It fails the test on error or after 30
// seconds. Restarting a running member does nothing.
func (c *Cluster) RestartMember(i int) {
	c.t.Helper()
	c.check(i)
	c.mu.Lock()
	running := c.members[i] != nil
	c.mu.Unlock()
	if running {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), startTimeout)
	defer cancel()
	s, err := embedetcd.Start(ctx, c.cfgs[i])
	if err != nil {
		c.t.Fatalf("etcdtest: restart member %d: %v", i, err)
	}
	c.mu.Lock()
	c.members[i] = s
	c.mu.Unlock()
}

// WaitLeader returns the index of the member that leads the cluster, once a
// running member reports itself as leader. It fails the test if none does
// before ctx ends.
func (c *Cluster) WaitLeader(ctx context.Context) int {
	c.t.Helper()
	tick := time.NewTicker(5 * time.Millisecond)
	defer tick.Stop()
	for {
		c.mu.Lock()
		for i, s := range c.members {
			if s == nil {
				continue
			}
			srv := s.Etcd().Server
			if srv.Leader() == srv.MemberID() {
				c.mu.Unlock()
				return i
			}
		}
		c.mu.Unlock()
		select {
		case <-ctx.Done():
			c.t.Fatalf("etcdtest: no leader: %v", ctx.Err())
		case <-tick.C:
		}
	}
}

func (c *Cluster) check(i int) {
	if i < 0 || i >= len(c.cfgs) {
		panic(fmt.Sprintf("etcdtest: member %d out of range [0, %d)", i, len(c.cfgs)))
	}
}

// ClientConfig returns a client config for endpoints with settings suited
// to tests: a bounded dial, reconnects at most 100ms apart (so a client
// recovers quickly once a proxy heals), and no client logging.
func ClientConfig(endpoints ...string) clientv3.Config {
	return clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: 5 * time.Second,
		Logger:      zap.NewNop(),
		DialOptions: []grpc.DialOption{
			grpc.WithConnectParams(grpc.ConnectParams{
				Backoff: backoff.Config{
					BaseDelay:  10 * time.Millisecond,
					Multiplier: 1.6,
					Jitter:     0.2,
					MaxDelay:   100 * time.Millisecond,
				},
				MinConnectTimeout: time.Second,
			}),
		},
	}
}

// Dial creates a client from cfg and closes it when t's test ends. It fails
// t if the client cannot be created.
func Dial(t testing.TB, cfg clientv3.Config) *clientv3.Client {
	t.Helper()
	cli, err := clientv3.New(cfg)
	if err != nil {
		t.Fatalf("etcdtest: client for %v: %v", cfg.Endpoints, err)
	}
	t.Cleanup(func() { _ = cli.Close() })
	return cli
}
