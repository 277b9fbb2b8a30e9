package cohort_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// billing is a singleton worker that tells which node and term it runs
// under, and records its starts.
type billing struct {
	term    *supervisor.Term
	started func(node string, token int64)
}

func (b *billing) Init(ctx *actor.Context, _ any) error {
	b.started(ctx.System().Node(), b.term.Token())
	return nil
}

func (b *billing) HandleCall(ctx *actor.Context, msg any) (any, error) {
	switch msg {
	case "node":
		return ctx.System().Node(), nil
	case "token":
		return b.term.Token(), nil
	}
	return nil, actor.ErrUnhandled
}

type start struct {
	node  string
	token int64
	at    time.Time
}

type starts struct {
	mu  sync.Mutex
	all []start
}

func (s *starts) add(node string, token int64) {
	s.mu.Lock()
	s.all = append(s.all, start{node, token, time.Now()})
	s.mu.Unlock()
}

func (s *starts) last() (start, int) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if len(s.all) == 0 {
		return start{}, 0
	}
	return s.all[len(s.all)-1], len(s.all)
}

// waitUntil waits until cond holds, polling it every 1ms, and fails t if it
// does not within limit.
func waitUntil(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, time.Millisecond, what, cond)
}

// One node of three runs the singleton; every node calls it by name; when
// its node stops, another takes over within 50ms and the name follows.
func TestNodeSingletonReachableFromAnyNodeAndHandsOverOnStop(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b", "c")
	rec := &starts{}
	byID := map[string]*cohort.Node{}
	ctx := timeout(t, 60*time.Second)
	for _, n := range nodes {
		byID[n.ID()] = n
		child := supervisor.Fenced("billing", func(term *supervisor.Term) actor.Actor {
			return &billing{term: term, started: rec.add}
		}, actor.Options{})
		if _, err := n.Supervise(ctx, n.Singleton(child)); err != nil {
			t.Fatal(err)
		}
	}
	waitUntil(t, 10*time.Second, "the singleton to start", func() bool { _, k := rec.last(); return k == 1 })
	first, _ := rec.last()
	waitUntil(t, 5*time.Second, "three candidates", func() bool {
		resp, err := nodes[0].Client().Get(ctx, nodes[0].Prefix()+"/election/billing/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == 3
	})
	callsReach := func(live []*cohort.Node, want start) {
		t.Helper()
		for _, n := range live {
			waitUntil(t, 5*time.Second, "a call by name from "+n.ID(), func() bool {
				node, err := actor.Call[string](ctx, n, actor.Name("billing"), "node")
				tok, terr := actor.Call[int64](ctx, n, actor.Name("billing"), "token")
				return err == nil && terr == nil && node == want.node && tok == want.token
			})
		}
	}
	callsReach(nodes, first)

	stopAt := time.Now()
	if err := byID[first.node].Stop(ctx); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "takeover", func() bool { _, k := rec.last(); return k == 2 })
	next, _ := rec.last()
	d := next.at.Sub(stopAt)
	t.Logf("node %s stopped; %s took over %v later (token %d -> %d)", first.node, next.node, d, first.token, next.token)
	// A resign, not the lease's expiry (TTL 2s); the median over repeated
	// handovers is checked in the supervisor package's tests.
	if d > time.Second {
		t.Errorf("takeover %v after Node.Stop: not a resign", d)
	}
	if next.token <= first.token || next.node == first.node {
		t.Fatalf("takeover %+v after %+v", next, first)
	}
	var live []*cohort.Node
	for _, n := range nodes {
		if n.ID() != first.node {
			live = append(live, n)
		}
	}
	callsReach(live, next)
	if _, err := byID[first.node].Supervise(ctx); !errors.Is(err, cohort.ErrStopped) {
		t.Fatalf("Supervise on a stopped node = %v", err)
	}
}

func TestNodeSuperviseBadInput(t *testing.T) {
	n := startCluster(t, cohort.Config{}, "solo")[0]
	ctx := context.Background()
	if _, err := n.Supervise(ctx, supervisor.Child{ID: "x"}); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("nil start = %v", err)
	}
	if _, err := n.Supervise(ctx, n.Singleton(supervisor.Child{ID: "", Start: nil})); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("empty id = %v", err)
	}
	if _, err := n.Supervise(ctx, n.Singleton(supervisor.Spawn("bad\x00id", func() actor.Actor { return echo{} }, actor.Options{}))); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("malformed id = %v", err)
	}
}
