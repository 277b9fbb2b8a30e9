package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap/zaptest"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/registry"
	"github.com/cohort-go/cohort/supervisor"
)

const singletonTTL = 2 * time.Second

// member is one node of a test cluster: an actor system with its own etcd
// client, lease session and registry.
type member struct {
	id   string
	cli  *clientv3.Client
	sys  *actor.System
	sess *lease.Session
	reg  *registry.Registry
	ev   *events
}

func newMember(t *testing.T, id, endpoint string) *member {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	cli := etcdtest.Dial(t, etcdtest.ClientConfig(endpoint))
	sess, err := lease.Start(ctx, cli, lease.Config{TTL: singletonTTL})
	if err != nil {
		t.Fatal(err)
	}
	reg, err := registry.New(ctx, cli, sess, registry.Config{})
	if err != nil {
		t.Fatal(err)
	}
	m := &member{id: id, cli: cli, sys: actor.NewSystem(actor.Config{Node: id}), sess: sess, reg: reg, ev: &events{}}
	m.sys.AddResolver(reg)
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		_ = m.sys.Shutdown(ctx)
		_ = reg.Close()
		_ = sess.Close(ctx)
	})
	return m
}

func (m *member) opts(t *testing.T) supervisor.SingletonOptions {
	return supervisor.SingletonOptions{Session: m.sess, Registry: m.reg, Listener: m.ev.add,
		Logger: zaptest.NewLogger(t)}
}

// run starts a root supervisor on m with the singleton-wrapped child.
func (m *member) run(t *testing.T, child supervisor.Child, opts supervisor.SingletonOptions) *supervisor.Ref {
	t.Helper()
	sup, err := supervisor.Start(context.Background(), m.sys, supervisor.Spec{
		Children: []supervisor.Child{supervisor.Singleton(child, opts)},
	})
	if err != nil {
		t.Fatal(err)
	}
	return sup
}

// events records singleton events.
type events struct {
	mu  sync.Mutex
	evs []supervisor.SingletonEvent
}

func (e *events) add(ev supervisor.SingletonEvent) {
	e.mu.Lock()
	e.evs = append(e.evs, ev)
	e.mu.Unlock()
}

func (e *events) find(typ supervisor.SingletonEventType, match func(supervisor.SingletonEvent) bool) (supervisor.SingletonEvent, bool) {
	e.mu.Lock()
	defer e.mu.Unlock()
	for _, ev := range e.evs {
		if ev.Type == typ && (match == nil || match(ev)) {
			return ev, true
		}
	}
	return supervisor.SingletonEvent{}, false
}

// tenure is one run of a singleton child: from its Init to its Terminate.
type tenure struct {
	node       string
	token      int64
	start, end time.Time
	reason     error
	leaseAlive bool // the lease was still alive in etcd when Terminate ran
}

// tenures records the runs of singleton children, across nodes.
type tenures struct {
	mu   sync.Mutex
	runs []*tenure
	// direct, if set, checks in Terminate that the term's lease still
	// lives in etcd.
	direct *clientv3.Client
}

func (r *tenures) begin(node string, token int64) *tenure {
	r.mu.Lock()
	defer r.mu.Unlock()
	tn := &tenure{node: node, token: token, start: time.Now()}
	r.runs = append(r.runs, tn)
	return tn
}

func (r *tenures) finish(tn *tenure, reason error, e *lease.Epoch) {
	alive := false
	if r.direct != nil {
		ctx, cancel := context.WithTimeout(context.Background(), time.Second)
		resp, err := r.direct.TimeToLive(ctx, e.ID())
		cancel()
		alive = err == nil && resp.TTL >= 0 // -1 once etcd has dropped it
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	tn.end, tn.reason, tn.leaseAlive = time.Now(), reason, alive
}

func (r *tenures) snapshot() []tenure {
	r.mu.Lock()
	defer r.mu.Unlock()
	out := make([]tenure, len(r.runs))
	for i, tn := range r.runs {
		out[i] = *tn
	}
	return out
}

// running returns the tenures that have not ended.
func (r *tenures) running() []tenure {
	var out []tenure
	for _, tn := range r.snapshot() {
		if tn.end.IsZero() {
			out = append(out, tn)
		}
	}
	return out
}

// checkNoOverlap fails t if two tenures overlap in time or if tokens do
// not grow with time.
func (r *tenures) checkNoOverlap(t *testing.T) {
	t.Helper()
	runs := r.snapshot()
	slices.SortFunc(runs, func(a, b tenure) int { return a.start.Compare(b.start) })
	for i := 1; i < len(runs); i++ {
		prev, cur := runs[i-1], runs[i]
		if prev.end.IsZero() || prev.end.After(cur.start) {
			t.Fatalf("tenures overlap: %s token %d [%v, %v] and %s token %d from %v",
				prev.node, prev.token, prev.start.Format(time.StampMicro), prev.end.Format(time.StampMicro),
				cur.node, cur.token, cur.start.Format(time.StampMicro))
		}
		if cur.token < prev.token {
			t.Fatalf("token went down: %d then %d", prev.token, cur.token)
		}
	}
}

// tenant is a singleton worker: it records its tenure and answers
// "token", "node", "crash" and fenced writes.
type tenant struct {
	rec  *tenures
	term *supervisor.Term
	tn   *tenure
}

type fencedPut struct{ key, val string }

func (w *tenant) Init(ctx *actor.Context, _ any) error {
	w.tn = w.rec.begin(ctx.System().Node(), w.term.Token())
	return nil
}

func (w *tenant) HandleCall(ctx *actor.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case string:
		switch m {
		case "token":
			return w.term.Token(), nil
		case "node":
			return ctx.System().Node(), nil
		case "crash":
			ctx.Stop(errCrash)
			return nil, nil
		case "done":
			ctx.Stop(actor.Normal)
			return nil, nil
		}
	case fencedPut:
		_, err := w.term.Write(ctx.Context(), clientv3.OpPut(m.key, m.val))
		return nil, err
	}
	return nil, actor.ErrUnhandled
}

func (w *tenant) Terminate(_ *actor.Context, reason error) {
	w.rec.finish(w.tn, reason, w.term.Epoch())
}

func tenantChild(id string, rec *tenures, restart supervisor.Restart) supervisor.Child {
	c := supervisor.Fenced(id, func(t *supervisor.Term) actor.Actor { return &tenant{rec: rec, term: t} }, actor.Options{})
	c.Restart = restart
	return c
}

// waitCond waits until cond holds, polling it every 1ms, and fails t if it
// does not within limit.
func waitCond(t *testing.T, limit time.Duration, what string, cond func() bool) {
	t.Helper()
	etcdtest.WaitFor(t, limit, time.Millisecond, what, cond)
}

// waitRunning waits until exactly one tenure runs and returns it.
func waitRunning(t *testing.T, rec *tenures, limit time.Duration) tenure {
	t.Helper()
	var got []tenure
	waitCond(t, limit, "one running singleton", func() bool {
		got = rec.running()
		if len(got) > 1 {
			t.Fatalf("%d singleton instances run at once: %+v", len(got), got)
		}
		return len(got) == 1
	})
	return got[0]
}

// waitCandidates waits until n nodes are candidates in the election of id.
func waitCandidates(t *testing.T, cli *clientv3.Client, id string, n int64) {
	t.Helper()
	waitCond(t, 5*time.Second, fmt.Sprintf("%d candidates for %s", n, id), func() bool {
		resp, err := cli.Get(context.Background(), "/cohort/election/"+id+"/", clientv3.WithPrefix(), clientv3.WithCountOnly())
		return err == nil && resp.Count == n
	})
}

// waitName waits until m's registry maps name to an actor on node.
func waitName(t *testing.T, m *member, name, node string) registry.Entry {
	t.Helper()
	var e registry.Entry
	waitCond(t, 5*time.Second, "name "+name+" on "+node, func() bool {
		var err error
		e, err = m.reg.Lookup(context.Background(), name)
		return err == nil && e.Ref.Node == node
	})
	return e
}

func TestSingletonOneRunsOthersWaitThenTakeOverOnStop(t *testing.T) {
	cl := etcdtest.Start(t)
	rec := &tenures{}
	ids := []string{"n1", "n2", "n3"}
	members := map[string]*member{}
	sups := map[string]*supervisor.Ref{}
	for _, id := range ids {
		m := newMember(t, id, cl.Endpoints()[0])
		members[id] = m
		sups[id] = m.run(t, tenantChild("billing", rec, supervisor.Permanent), m.opts(t))
	}
	first := waitRunning(t, rec, 10*time.Second)
	waitCandidates(t, members["n1"].cli, "billing", 3)
	// Every node observes the leader.
	for _, m := range members {
		waitCond(t, 5*time.Second, m.id+" to observe the leader", func() bool {
			_, ok := m.ev.find(supervisor.SingletonLeaderChanged, func(e supervisor.SingletonEvent) bool {
				return e.Leader == first.node && e.Token == first.token
			})
			return ok
		})
	}
	ev, ok := members[first.node].ev.find(supervisor.SingletonElected, nil)
	if !ok || ev.Token != first.token {
		t.Fatalf("elected event %v %v, want token %d", ev, ok, first.token)
	}
	// It is registered globally under its id.
	ctx := context.Background()
	for _, m := range members {
		waitCond(t, 5*time.Second, "global name on "+m.id, func() bool {
			e, err := m.reg.Lookup(ctx, "billing")
			return err == nil && e.Ref.Node == first.node
		})
	}
	holder := members[first.node]
	waitName(t, holder, "billing", first.node)
	if tok, err := actor.Call[int64](ctx, holder.sys, actor.Name("billing"), "token"); err != nil || tok != first.token {
		t.Fatalf("call by name on the holder = %v, %v", tok, err)
	}
	time.Sleep(50 * time.Millisecond) // nothing else may start meanwhile
	if n := len(rec.snapshot()); n != 1 {
		t.Fatalf("%d tenures, want 1", n)
	}

	// Graceful stops hand over at once: the median of five handovers is
	// under 50ms, and none waits for the lease (TTL 2s).
	prev := first
	var took []time.Duration
	for range 5 {
		stopAt := time.Now()
		if err := sups[prev.node].Stop(ctx); err != nil {
			t.Fatal(err)
		}
		var next tenure
		waitCond(t, 5*time.Second, "takeover after stop", func() bool {
			for _, tn := range rec.snapshot() {
				if tn.token > prev.token {
					next = tn
					return true
				}
			}
			return false
		})
		d := next.start.Sub(stopAt)
		took = append(took, d)
		t.Logf("graceful handover %s -> %s: %v from Stop to the new child's Init", prev.node, next.node, d)
		if d > time.Second {
			t.Errorf("graceful handover took %v: not a resign", d)
		}
		lost, ok := members[prev.node].ev.find(supervisor.SingletonLost, nil)
		if !ok || !errors.Is(lost.Reason, supervisor.ErrLeadershipLost) || !errors.Is(lost.Reason, election.ErrResigned) {
			t.Fatalf("lost event on stop: %v %v", lost, ok)
		}
		for _, tn := range rec.snapshot() {
			if tn.token == prev.token && !errors.Is(tn.reason, actor.Shutdown) {
				t.Fatalf("child stopped gracefully with %v, want Shutdown", tn.reason)
			}
		}
		waitCond(t, 5*time.Second, "name moved", func() bool {
			e, err := members[next.node].reg.Lookup(ctx, "billing")
			return err == nil && e.Ref.Node == next.node
		})
		// The stopped node joins again and queues behind the others.
		m := members[prev.node]
		sups[prev.node] = m.run(t, tenantChild("billing", rec, supervisor.Permanent), m.opts(t))
		waitCandidates(t, m.cli, "billing", 3)
		prev = next
	}
	slices.Sort(took)
	t.Logf("graceful handover: median %v, max %v", took[len(took)/2], took[len(took)-1])
	// A resign hands over without waiting for the lease (TTL 2 s); the
	// speed itself is a benchmark figure (election.BenchmarkResignHandover).
	if took[len(took)/2] > time.Second {
		t.Errorf("median graceful handover %v: it waited for the lease instead of a resign", took[len(took)/2])
	}
	rec.checkNoOverlap(t)
}

// A holder cut off from etcd stops its child before etcd can expire its
// lease; another node takes over only after that.
func TestSingletonLeaseLossStopsChildBeforeExpiry(t *testing.T) {
	cl := etcdtest.Start(t)
	rec := &tenures{direct: cl.Client(t)}
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	cut := newMember(t, "cut", proxy.Addr())
	cut.run(t, tenantChild("ledger", rec, supervisor.Permanent), cut.opts(t))
	first := waitRunning(t, rec, 10*time.Second)
	other := newMember(t, "other", cl.Endpoints()[0])
	other.run(t, tenantChild("ledger", rec, supervisor.Permanent), other.opts(t))
	waitCond(t, 5*time.Second, "other to observe the leader", func() bool {
		_, ok := other.ev.find(supervisor.SingletonLeaderChanged, nil)
		return ok
	})
	// Let a keepalive go through, then cut the holder off.
	ep := cut.sess.Current()
	until := ep.AliveUntil()
	waitCond(t, singletonTTL, "a renewal", func() bool { return ep.AliveUntil().After(until) })
	proxy.Pause()
	paused := time.Now()

	var next tenure
	waitCond(t, 3*singletonTTL, "takeover by the other node", func() bool {
		for _, tn := range rec.snapshot() {
			if tn.node == "other" {
				next = tn
				return true
			}
		}
		return false
	})
	runs := rec.snapshot()
	old := runs[0]
	if old.node != first.node || old.end.IsZero() {
		t.Fatalf("the cut-off holder's child still runs: %+v", old)
	}
	if !old.leaseAlive {
		t.Fatal("the holder's child was stopped only after etcd dropped the lease")
	}
	for _, want := range []error{supervisor.ErrLeadershipLost, election.ErrEpochLost, lease.ErrDeadlinePassed} {
		if !errors.Is(old.reason, want) {
			t.Fatalf("the cut-off child's Terminate reason %v does not wrap %v", old.reason, want)
		}
	}
	if next.token <= old.token {
		t.Fatalf("token %d after %d", next.token, old.token)
	}
	t.Logf("paused at 0; child stopped at %v (lease still in etcd); other node started at %v",
		old.end.Sub(paused), next.start.Sub(paused))
	if lost, ok := cut.ev.find(supervisor.SingletonLost, nil); !ok || !errors.Is(lost.Reason, supervisor.ErrLeadershipLost) {
		t.Fatalf("lost event %v %v", lost, ok)
	}
	// Back online, the old holder waits: the other node keeps the lead.
	proxy.Resume()
	waitCond(t, 10*time.Second, "the cut node to rejoin", func() bool {
		return cut.sess.Current().Seq() > ep.Seq() && cut.sess.Current().Alive()
	})
	waitCond(t, 5*time.Second, "the cut node to observe the new leader", func() bool {
		_, ok := cut.ev.find(supervisor.SingletonLeaderChanged, func(e supervisor.SingletonEvent) bool { return e.Leader == "other" })
		return ok
	})
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("%d tenures after rejoin, want 2", n)
	}
	rec.checkNoOverlap(t)
}

// A write guarded by an ended term's token is rejected; the new term's
// writes go through.
func TestSingletonStaleTokenWriteRejected(t *testing.T) {
	cl := etcdtest.Start(t)
	rec := &tenures{}
	a := newMember(t, "a", cl.Endpoints()[0])
	b := newMember(t, "b", cl.Endpoints()[0])
	var mu sync.Mutex
	terms := map[string]*supervisor.Term{}
	child := supervisor.Child{ID: "writer", Start: func(ctx context.Context, sys *actor.System, _ []any) (actor.Ref, error) {
		term, ok := supervisor.TermFrom(ctx)
		if !ok {
			return actor.Ref{}, errors.New("no term")
		}
		mu.Lock()
		terms[sys.Node()] = term
		mu.Unlock()
		return sys.Spawn(ctx, &tenant{rec: rec, term: term}, actor.Options{})
	}}
	supA := a.run(t, child, a.opts(t))
	first := waitRunning(t, rec, 10*time.Second)
	if first.node != "a" {
		t.Fatalf("leader %s, want a (it started first)", first.node)
	}
	b.run(t, child, b.opts(t))
	ctx := context.Background()
	mu.Lock()
	old := terms["a"]
	mu.Unlock()
	if _, err := old.Write(ctx, clientv3.OpPut("/data/x", "from a")); err != nil {
		t.Fatalf("write in the term: %v", err)
	}
	if !old.Alive() || old.Err() != nil || old.Context().Err() != nil {
		t.Fatal("the current term reports ended")
	}
	if err := supA.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	next := waitRunning(t, rec, 5*time.Second)
	if next.node != "b" || next.token <= old.Token() {
		t.Fatalf("new term %+v after token %d", next, old.Token())
	}
	_, err := old.Write(ctx, clientv3.OpPut("/data/x", "stale"))
	if !errors.Is(err, supervisor.ErrFenced) {
		t.Fatalf("write with the stale token = %v, want ErrFenced", err)
	}
	if old.Alive() || !errors.Is(old.Err(), supervisor.ErrLeadershipLost) ||
		!errors.Is(context.Cause(old.Context()), supervisor.ErrLeadershipLost) {
		t.Fatalf("ended term: alive %v err %v cause %v", old.Alive(), old.Err(), context.Cause(old.Context()))
	}
	waitName(t, b, "writer", "b")
	if _, err := actor.Call[any](ctx, b.sys, actor.Name("writer"), fencedPut{"/data/x", "from b"}); err != nil {
		t.Fatalf("write in the new term: %v", err)
	}
	resp, err := a.cli.Get(ctx, "/data/x")
	if err != nil || string(resp.Kvs[0].Value) != "from b" {
		t.Fatalf("value %v, %v", resp, err)
	}
}

// A whole subtree runs as one singleton; its workers all hold the term.
func TestSingletonSubtree(t *testing.T) {
	cl := etcdtest.Start(t)
	rec := &tenures{}
	subtree := supervisor.NestedFenced("pipeline", func(term *supervisor.Term) supervisor.Spec {
		mk := func(id string) supervisor.Child {
			return supervisor.Spawn(id, func() actor.Actor { return &tenant{rec: rec, term: term} }, actor.Options{Name: id})
		}
		return supervisor.Spec{Strategy: supervisor.OneForAll, Children: []supervisor.Child{mk("reader"), mk("writer")}}
	})
	var sups []*supervisor.Ref
	for _, id := range []string{"s1", "s2"} {
		m := newMember(t, id, cl.Endpoints()[0])
		sups = append(sups, m.run(t, subtree, m.opts(t)))
	}
	waitCond(t, 10*time.Second, "the subtree to run", func() bool { return len(rec.running()) == 2 })
	runs := rec.running()
	if runs[0].node != runs[1].node || runs[0].token != runs[1].token {
		t.Fatalf("subtree split: %+v", runs)
	}
	time.Sleep(50 * time.Millisecond)
	if n := len(rec.snapshot()); n != 2 {
		t.Fatalf("%d workers started, want 2", n)
	}
	holder := 0
	if runs[0].node == "s2" {
		holder = 1
	}
	if err := sups[holder].Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	waitCond(t, 5*time.Second, "the subtree to move", func() bool {
		r := rec.running()
		return len(r) == 2 && r[0].node != runs[0].node && r[1].node != runs[0].node
	})
	for _, tn := range rec.snapshot()[:2] {
		if tn.end.IsZero() {
			t.Fatalf("old subtree worker still runs: %+v", tn)
		}
	}
}

// The child restarts by its restart type within the term; the global
// name follows it; too many restarts hand the singleton to another node.
func TestSingletonRestartsChildByItsRestartType(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx := context.Background()
	t.Run("permanent", func(t *testing.T) {
		rec := &tenures{}
		a := newMember(t, "p1", cl.Endpoints()[0])
		b := newMember(t, "p2", cl.Endpoints()[0])
		opts := a.opts(t)
		opts.Intensity = supervisor.Intensity{MaxRestarts: 1, Period: time.Minute}
		a.run(t, tenantChild("perm", rec, supervisor.Permanent), opts)
		first := waitRunning(t, rec, 10*time.Second)
		b.run(t, tenantChild("perm", rec, supervisor.Permanent), b.opts(t))
		waitCandidates(t, a.cli, "perm", 2)
		e0 := waitName(t, a, "perm", "p1")
		if _, err := a.sys.Call(ctx, actor.Name("perm"), "crash"); err != nil {
			t.Fatal(err)
		}
		waitCond(t, 5*time.Second, "restart in the same term", func() bool { return len(rec.snapshot()) == 2 && len(rec.running()) == 1 })
		again := rec.running()[0]
		if again.node != "p1" || again.token != first.token {
			t.Fatalf("restarted as %+v, want same node and token as %+v", again, first)
		}
		waitCond(t, 5*time.Second, "the name to follow the restart", func() bool {
			e, err := a.reg.Lookup(ctx, "perm")
			return err == nil && e.Ref != e0.Ref && e.Ref.Node == "p1"
		})
		// A second crash within the period exceeds the intensity: the
		// wrapper gives up its leadership and p2 takes over.
		if _, err := a.sys.Call(ctx, actor.Name("perm"), "crash"); err != nil {
			t.Fatal(err)
		}
		waitCond(t, 5*time.Second, "takeover by p2", func() bool {
			r := rec.running()
			return len(r) == 1 && r[0].node == "p2"
		})
		rec.checkNoOverlap(t)
	})
	t.Run("transient", func(t *testing.T) {
		rec := &tenures{}
		a := newMember(t, "t1", cl.Endpoints()[0])
		b := newMember(t, "t2", cl.Endpoints()[0])
		a.run(t, tenantChild("trans", rec, supervisor.Transient), a.opts(t))
		waitRunning(t, rec, 10*time.Second)
		b.run(t, tenantChild("trans", rec, supervisor.Transient), b.opts(t))
		waitName(t, a, "trans", "t1")
		if _, err := a.sys.Call(ctx, actor.Name("trans"), "done"); err != nil {
			t.Fatal(err)
		}
		waitCond(t, 5*time.Second, "the name to go", func() bool {
			_, err := b.reg.Lookup(ctx, "trans")
			return errors.Is(err, registry.ErrNotFound)
		})
		if ev, ok := a.ev.find(supervisor.SingletonChildExited, nil); !ok || !errors.Is(ev.Reason, actor.Normal) {
			t.Fatalf("exit event %v %v", ev, ok)
		}
		time.Sleep(100 * time.Millisecond)
		if n := len(rec.snapshot()); n != 1 || len(rec.running()) != 0 {
			t.Fatalf("a transient child that ended normally ran again: %+v", rec.snapshot())
		}
	})
}

func TestSingletonBadInput(t *testing.T) {
	cl := etcdtest.Start(t)
	m := newMember(t, "bad", cl.Endpoints()[0])
	ctx := context.Background()
	ok := supervisor.Spawn("ok", func() actor.Actor { return echoActor{} }, actor.Options{})
	noStart := supervisor.Child{ID: "nostart"}
	slash := ok
	slash.ID = "a/b"
	for _, tc := range []struct {
		name  string
		child supervisor.Child
		opts  supervisor.SingletonOptions
		want  error
	}{
		{"nil session", ok, supervisor.SingletonOptions{}, supervisor.ErrInvalidSpec},
		{"nil start", noStart, supervisor.SingletonOptions{Session: m.sess}, supervisor.ErrInvalidSpec},
		{"id with slash", slash, supervisor.SingletonOptions{Session: m.sess}, supervisor.ErrInvalidSpec},
		{"bad intensity", ok, supervisor.SingletonOptions{Session: m.sess, Intensity: supervisor.Intensity{MaxRestarts: -1}}, supervisor.ErrInvalidSpec},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{supervisor.Singleton(tc.child, tc.opts)}})
			if !errors.Is(err, tc.want) {
				t.Fatalf("start = %v, want %v", err, tc.want)
			}
		})
	}
	t.Run("empty id", func(t *testing.T) {
		empty := ok
		empty.ID = ""
		sup, err := supervisor.StartDynamic(ctx, m.sys, supervisor.DynamicSpec{})
		if err != nil {
			t.Fatal(err)
		}
		defer sup.Stop(ctx)
		if _, err := sup.StartChild(ctx, supervisor.Singleton(empty, supervisor.SingletonOptions{Session: m.sess})); !errors.Is(err, supervisor.ErrInvalidSpec) {
			t.Fatalf("start = %v", err)
		}
	})
	t.Run("twice on one node", func(t *testing.T) {
		s := supervisor.Singleton(ok, supervisor.SingletonOptions{Session: m.sess})
		sup, err := supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{s}})
		if err != nil {
			t.Fatal(err)
		}
		defer sup.Stop(ctx)
		if _, err := supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{s}}); !errors.Is(err, supervisor.ErrSingletonRunning) {
			t.Fatalf("second wrapper = %v, want ErrSingletonRunning", err)
		}
		// Restarting the wrapper in place works: the old one lets go first.
		if err := sup.TerminateChild(ctx, "ok"); err != nil {
			t.Fatal(err)
		}
		if _, err := sup.RestartChild(ctx, "ok"); err != nil {
			t.Fatalf("restart of the wrapper: %v", err)
		}
	})
	t.Run("fenced outside a singleton", func(t *testing.T) {
		c := supervisor.Fenced("f", func(*supervisor.Term) actor.Actor { return echoActor{} }, actor.Options{})
		_, err := supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{c}})
		if !errors.Is(err, supervisor.ErrNoTerm) {
			t.Fatalf("start = %v, want ErrNoTerm", err)
		}
		c = supervisor.NestedFenced("nf", func(*supervisor.Term) supervisor.Spec { return supervisor.Spec{} })
		_, err = supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{c}})
		if !errors.Is(err, supervisor.ErrNoTerm) {
			t.Fatalf("start = %v, want ErrNoTerm", err)
		}
		if _, ok := supervisor.TermFrom(ctx); ok {
			t.Fatal("a term in a plain context")
		}
	})
	t.Run("start failure", func(t *testing.T) {
		failing := supervisor.Child{ID: "failing", Start: func(context.Context, *actor.System, []any) (actor.Ref, error) {
			return actor.Ref{}, errCrash
		}}
		opts := m.opts(t)
		sup, err := supervisor.Start(ctx, m.sys, supervisor.Spec{
			Intensity: supervisor.Intensity{MaxRestarts: 100, Period: time.Minute},
			Children:  []supervisor.Child{supervisor.Singleton(failing, opts)},
		})
		if err != nil {
			t.Fatal(err)
		}
		defer sup.Stop(ctx)
		waitCond(t, 10*time.Second, "start failures reported", func() bool {
			ev, ok := m.ev.find(supervisor.SingletonChildStartFailed, func(e supervisor.SingletonEvent) bool { return e.ID == "failing" })
			return ok && errors.Is(ev.Reason, errCrash)
		})
	})
}

// With etcd unreachable the wrapper starts, does not lead, and stops
// promptly.
func TestSingletonEtcdDown(t *testing.T) {
	cl := etcdtest.Start(t)
	proxy := etcdtest.NewProxy(t, cl.Endpoints()[0])
	m := newMember(t, "down", proxy.Addr())
	proxy.Cut()
	rec := &tenures{}
	sup := m.run(t, tenantChild("offline", rec, supervisor.Permanent), m.opts(t))
	time.Sleep(200 * time.Millisecond)
	if n := len(rec.snapshot()); n != 0 {
		t.Fatalf("%d tenures without etcd", n)
	}
	start := time.Now()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := sup.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	d := time.Since(start)
	if d > 2*time.Second {
		t.Fatalf("stop took %v with etcd down", d)
	}
	t.Logf("stopped in %v with etcd down", d)
}
