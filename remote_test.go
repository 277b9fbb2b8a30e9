package cohort_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/testcert"
)

// Message types of the remote tests, registered on every node (here: in
// the one test binary, which also runs the peer processes).
type seqMsg struct {
	From string
	Seq  int
}

type fifoReport struct {
	Count      int
	Violations int
}

type unregisteredMsg struct{ N int }

var errQuota = errors.New("quota exceeded")

func init() {
	actor.MustRegisterType[seqMsg]("cohort_test.seq")
	actor.MustRegisterType[fifoReport]("cohort_test.fifoReport")
	if err := actor.RegisterError("cohort_test.quota", errQuota); err != nil {
		panic(err)
	}
}

// startCluster starts nodes with the given ids on one test etcd and waits
// until each sees all.
func startCluster(t testing.TB, cfg cohort.Config, ids ...string) []*cohort.Node {
	t.Helper()
	cl := etcdtest.Start(t)
	nodes := make([]*cohort.Node, len(ids))
	for i, id := range ids {
		c := cfg
		c.NodeID, c.Endpoints = id, cl.Endpoints()
		if c.LeaseTTL == 0 {
			c.LeaseTTL = 2 * time.Second
		}
		nodes[i] = startNode(t, c)
	}
	for _, n := range nodes {
		waitMembers(t, n, ids...)
	}
	return nodes
}

// fifo checks, per sender, that casts arrive in the order sent.
type fifo struct {
	last map[string]int
	rep  fifoReport
}

func (f *fifo) HandleCall(_ *actor.Context, msg any) (any, error) {
	if m, ok := msg.(seqMsg); ok {
		f.note(m)
	}
	return f.rep, nil
}

func (f *fifo) HandleCast(_ *actor.Context, msg any) error {
	f.note(msg.(seqMsg))
	return nil
}

func (f *fifo) HandleInfo(_ *actor.Context, msg any) error {
	if m, ok := msg.(seqMsg); ok {
		f.note(m)
	}
	return nil
}

func (f *fifo) note(m seqMsg) {
	if f.last == nil {
		f.last = make(map[string]int)
	}
	if prev, ok := f.last[m.From]; ok && m.Seq != prev+1 {
		f.rep.Violations++
	}
	f.last[m.From] = m.Seq
	f.rep.Count++
}

func timeout(t testing.TB, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func TestRemoteCallCastSendByRefAndName(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := timeout(t, 20*time.Second)
	ref, err := b.System().Spawn(ctx, &fifo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Registry().Register(ctx, "counter", ref, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Cast(ctx, ref, seqMsg{From: "a", Seq: 1}); err != nil {
		t.Fatal(err)
	}
	if err := a.Send(actor.Name("counter"), seqMsg{From: "a", Seq: 2}); err != nil {
		t.Fatal(err)
	}
	if err := a.Cast(ctx, actor.Name("counter"), seqMsg{From: "a", Seq: 3}); err != nil {
		t.Fatal(err)
	}
	rep, err := actor.Call[fifoReport](ctx, a, actor.Name("counter"), seqMsg{From: "a", Seq: 4})
	if err != nil || rep != (fifoReport{Count: 4}) {
		t.Fatalf("call by global name = %+v, %v", rep, err)
	}
	rep, err = actor.Call[fifoReport](ctx, a, ref, "report")
	if err != nil || rep.Count != 4 {
		t.Fatalf("call by ref = %+v, %v", rep, err)
	}
	if v, err := a.CallName(ctx, "b", "nobody", "x"); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("CallName to a missing local name = %v, %v", v, err)
	}
	if err := b.System().Register("local-counter", ref); err != nil {
		t.Fatal(err)
	}
	if v, err := a.CallName(ctx, "b", "local-counter", "report"); err != nil || v.(fifoReport).Count != 4 {
		t.Fatalf("CallName = %v, %v", v, err)
	}
}

func TestRemoteErrorsAndBadInput(t *testing.T) {
	nodes := startCluster(t, cohort.Config{Transport: cohort.TransportConfig{MaxMessageSize: 64 << 10}}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := timeout(t, 20*time.Second)
	failing, err := b.System().Spawn(ctx, actor.Func(func(ctx *actor.Context, msg any) (any, error) {
		switch msg {
		case "quota":
			return nil, fmt.Errorf("user 7: %w", errQuota)
		case "plain":
			return nil, errors.New("plain failure")
		case "stop":
			ctx.Stop(errors.New("asked to stop"))
			ctx.DeferReply()
			return nil, nil
		}
		return nil, fmt.Errorf("%w: %v", actor.ErrUnhandled, msg)
	}), actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		msg  any
		want error
		text string
	}{
		{"quota", errQuota, "user 7: quota exceeded"},
		{"other", actor.ErrUnhandled, "message not handled: other"},
		{"plain", nil, "plain failure"},
	}
	for _, c := range cases {
		_, err := a.Call(ctx, failing, c.msg)
		if err == nil || (c.want != nil && !errors.Is(err, c.want)) || !strings.Contains(err.Error(), c.text) {
			t.Errorf("call %v = %v, want %v (%q)", c.msg, err, c.want, c.text)
		}
	}
	_, err = a.Call(ctx, failing, "stop")
	var ee *actor.ExitError
	if !errors.As(err, &ee) || ee.Ref != failing || ee.Reason.Error() != "asked to stop" {
		t.Fatalf("callee exiting mid-call = %v", err)
	}
	if _, err := a.Call(ctx, failing, "again"); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("call to an exited remote actor = %v", err)
	}
	echoRef, err := b.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, err = a.Call(ctx, echoRef, unregisteredMsg{N: 1})
	if !errors.Is(err, actor.ErrUnregisteredType) || !strings.Contains(err.Error(), "RegisterType[cohort_test.unregisteredMsg]") {
		t.Fatalf("unregistered type = %v", err)
	}
	if err := a.Cast(ctx, echoRef, unregisteredMsg{N: 1}); !errors.Is(err, actor.ErrUnregisteredType) {
		t.Fatalf("unregistered type cast = %v", err)
	}
	if _, err := a.Call(ctx, echoRef, strings.Repeat("x", 64<<10+1)); !errors.Is(err, cohort.ErrMessageTooLarge) {
		t.Fatalf("oversized = %v", err)
	}
	if v, err := a.Call(ctx, echoRef, strings.Repeat("x", 64<<10)); err != nil || len(v.(string)) != 64<<10 {
		t.Fatalf("message at the limit = %v", err)
	}
	if _, err := a.Call(ctx, actor.Ref{Node: "nosuchnode", ID: 1, Incarnation: 1}, "x"); !errors.Is(err, cohort.ErrNodeDown) ||
		!strings.Contains(err.Error(), "not a member") {
		t.Fatalf("call to an unknown node = %v", err)
	}
}

func TestRemoteDeadlineIsVisibleToCallee(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	ref, err := b.System().Spawn(context.Background(), actor.Func(func(ctx *actor.Context, _ any) (any, error) {
		d, ok := ctx.Deadline()
		if !ok {
			return int64(-1), nil
		}
		return int64(time.Until(d)), nil
	}), actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
	defer cancel()
	left, err := actor.Call[int64](ctx, a, ref, "deadline?")
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(left); d <= 2*time.Second || d > 3*time.Second {
		t.Fatalf("callee sees %v left of a 3s deadline", d)
	}
	if left, err := actor.Call[int64](context.Background(), a, ref, "none"); err != nil || left != -1 {
		t.Fatalf("call without deadline: callee sees %v, %v", left, err)
	}
}

func TestRemoteFIFOPerSenderNode(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b", "c")
	a, b, c := nodes[0], nodes[1], nodes[2]
	ctx := timeout(t, 60*time.Second)
	ref, err := b.System().Spawn(ctx, &fifo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	const perSender = 3000
	var wg sync.WaitGroup
	for _, n := range []*cohort.Node{a, c} {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// One goroutine per sender node mixes casts, sends and calls:
			// all travel in one stream, in order.
			for i := 1; i <= perSender; i++ {
				m := seqMsg{From: n.ID(), Seq: i}
				var err error
				switch i % 10 {
				case 0:
					_, err = n.Call(ctx, ref, m)
				case 5:
					err = n.Send(ref, m)
				default:
					err = n.Cast(ctx, ref, m)
				}
				if err != nil {
					t.Errorf("%s seq %d: %v", n.ID(), i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	// A call from each node arrives after that node's casts.
	var rep fifoReport
	for _, n := range []*cohort.Node{a, c} {
		if rep, err = actor.Call[fifoReport](ctx, n, ref, "report"); err != nil {
			t.Fatal(err)
		}
	}
	if rep.Count != 2*perSender || rep.Violations != 0 {
		t.Fatalf("received %d of %d, %d out of order", rep.Count, 2*perSender, rep.Violations)
	}
}

func TestRemoteMonitors(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := timeout(t, 20*time.Second)
	x, err := b.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	y, err := b.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, downX := a.System().Monitor(x)
	_, downY := a.System().Monitor(y)
	cancelled, downC := a.System().Monitor(y)
	a.System().Demonitor(cancelled)
	// The monitors are set on b before this call returns: same stream.
	if _, err := a.Call(ctx, x, "sync"); err != nil {
		t.Fatal(err)
	}
	if err := b.System().Stop(ctx, x, errors.New("done here")); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-downX:
		if d.Ref != x || d.Reason == nil || d.Reason.Error() != "done here" {
			t.Fatalf("down of x = %+v", d)
		}
	case <-ctx.Done():
		t.Fatal("no down for a remote actor's exit")
	}
	// The node of y goes away: its monitor fires with the node's shutdown
	// or ErrNodeDown, whichever reaches a first, at once.
	start := time.Now()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case d := <-downY:
		if !errors.Is(d.Reason, cohort.ErrNodeDown) && !errors.Is(d.Reason, actor.Shutdown) {
			t.Fatalf("down of y = %v", d.Reason)
		}
		t.Logf("down of y after %v: %v", time.Since(start), d.Reason)
	case <-ctx.Done():
		t.Fatal("no down when the remote node stopped")
	}
	select {
	case d := <-downC:
		t.Fatalf("demonitored monitor fired: %+v", d)
	default:
	}
	// Monitoring an actor of a node that is gone fires at once.
	_, downZ := a.System().Monitor(y)
	waitMembers(t, a, "a")
	select {
	case d := <-downZ:
		if !errors.Is(d.Reason, cohort.ErrNodeDown) && !errors.Is(d.Reason, actor.ErrNotFound) {
			t.Fatalf("monitor of an actor on a stopped node: %v", d.Reason)
		}
	case <-ctx.Done():
		t.Fatal("monitor of an actor on a stopped node did not fire")
	}
}

// stuck never answers: its callers wait until their deadline, unless the
// node goes away.
func stuck(ctx *actor.Context, _ any) (any, error) {
	ctx.DeferReply()
	return nil, nil
}

func TestRemoteCallFailsAtOnceWhenNodeStops(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	const callers = 4
	got := make(chan struct{}, callers)
	ref, err := b.System().Spawn(context.Background(), actor.Func(func(ctx *actor.Context, _ any) (any, error) {
		got <- struct{}{}
		return stuck(ctx, nil)
	}), actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := timeout(t, 60*time.Second)
	errs := make(chan error, callers)
	for range callers {
		go func() { _, err := a.Call(ctx, ref, "wait"); errs <- err }()
	}
	for range callers {
		<-got // the call is held by the actor on b
	}
	start := time.Now()
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	// The callee's node answers each pending call before it leaves: the
	// caller learns the callee stopped, not that its node went away.
	for range callers {
		err := <-errs
		var ee *actor.ExitError
		if !errors.As(err, &ee) || !errors.Is(ee.Reason, actor.Shutdown) {
			t.Fatalf("pending call when the node stopped = %v, want *ExitError with Shutdown", err)
		}
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Fatalf("pending calls failed %v after the stop", d)
	}
	waitMembers(t, a, "a")
	if _, err := a.Call(ctx, ref, "x"); !errors.Is(err, cohort.ErrNodeDown) || !errors.Is(err, cohort.ErrNotDelivered) {
		t.Fatalf("call to a node that left = %v, want ErrNodeDown and ErrNotDelivered", err)
	}
}

// A call the callee is handling when its node stops gracefully gets the
// callee's reply: the node leaves only once its actors have stopped.
func TestRemoteCallInProgressGetsItsReplyWhenNodeStops(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	began := make(chan struct{})
	slow := actor.Func(func(*actor.Context, any) (any, error) {
		close(began)
		time.Sleep(300 * time.Millisecond)
		return "done", nil
	})
	ref, err := b.System().Spawn(context.Background(), slow, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	ctx := timeout(t, 30*time.Second)
	type result struct {
		v   any
		err error
	}
	got := make(chan result, 1)
	go func() { v, err := a.Call(ctx, ref, "work"); got <- result{v, err} }()
	<-began
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.err != nil || r.v != "done" {
		t.Fatalf("call in progress when its node stopped = %v, %v; want the reply", r.v, r.err)
	}
}

func TestRemoteMutualTLS(t *testing.T) {
	good, other := testcert.NewCA(t, "cluster"), testcert.NewCA(t, "other")
	cl := etcdtest.Start(t)
	cert := func(ca *testcert.CA, name string) cohort.TransportConfig {
		c := ca.Issue(t, name)
		return cohort.TransportConfig{CA: good.Pool, Certificate: &c}
	}
	start := func(id string, tc cohort.TransportConfig) *cohort.Node {
		return startNode(t, cohort.Config{NodeID: id, Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second, Transport: tc})
	}
	a, b := start("a", cert(good, "a")), start("b", cert(good, "b"))
	m := start("m", cert(other, "m"))
	waitMembers(t, a, "a", "b", "m")
	waitMembers(t, m, "a", "b", "m")
	ctx := timeout(t, 20*time.Second)
	ref, err := b.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if v, err := a.Call(ctx, ref, "hello"); err != nil || v != "hello" {
		t.Fatalf("call between trusted nodes = %v, %v", v, err)
	}
	if _, err := m.Call(ctx, ref, "let me in"); !errors.Is(err, cohort.ErrNodeDown) {
		t.Fatalf("call from an untrusted node = %v", err)
	}
	if _, err := startNodeErr(cohort.Config{NodeID: "half", Endpoints: cl.Endpoints(),
		Transport: cohort.TransportConfig{CA: good.Pool}}); !errors.Is(err, cohort.ErrInvalidConfig) {
		t.Fatalf("CA without certificate = %v", err)
	}
	// A node without TLS among TLS nodes is told why it cannot reach them.
	plain := start("plain", cohort.TransportConfig{})
	waitMembers(t, plain, "a", "b", "m", "plain")
	_, err = plain.Call(ctx, ref, "plain")
	if !errors.Is(err, cohort.ErrNodeDown) || !strings.Contains(err.Error(), "b uses TLS on its transport and this node does not") {
		t.Fatalf("call from a node without TLS = %v", err)
	}
	plainRef, err := plain.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if _, err = a.Call(ctx, plainRef, "tls"); !strings.Contains(err.Error(), "this node uses TLS on its transport and plain does not") {
		t.Fatalf("call to a node without TLS = %v", err)
	}
}

func startNodeErr(cfg cohort.Config) (*cohort.Node, error) {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cfg)
	if err == nil {
		n.Stop(ctx)
	}
	return n, err
}

// A Ref or a name of a node that just joined can reach a node before its
// ring has seen the join: calls, casts, monitors and calls by name with it
// still reach the actor; a Ref of a node that is not a member still fails
// with ErrNodeDown.
func TestRemoteCallToANodeThatJustJoined(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints()})
	ctx := timeout(t, 30*time.Second)
	for i := range 6 {
		id := fmt.Sprintf("new%d", i)
		b := startNode(t, cohort.Config{NodeID: id, Endpoints: cl.Endpoints()})
		ref, err := b.System().Spawn(ctx, echo{}, actor.Options{})
		if err != nil {
			t.Fatal(err)
		}
		switch i % 3 {
		case 0:
			if v, err := a.Call(ctx, ref, "hello"); err != nil || v != "hello" {
				t.Fatalf("call to %s as soon as it started = %v, %v", id, v, err)
			}
		case 1:
			name := "echo-" + id
			if err := b.Registry().Register(ctx, name, ref, nil); err != nil {
				t.Fatal(err)
			}
			if v, err := a.Call(ctx, actor.Name(name), "by name"); err != nil || v != "by name" {
				t.Fatalf("call by name to %s as soon as it registered = %v, %v", id, v, err)
			}
		case 2:
			_, down := a.System().Monitor(ref)
			// The call follows the monitor on a's stream to b.
			if _, err := a.Call(ctx, ref, "x"); err != nil {
				t.Fatal(err)
			}
			if err := b.System().Stop(ctx, ref, nil); err != nil {
				t.Fatal(err)
			}
			select {
			case d := <-down:
				if !errors.Is(d.Reason, actor.Normal) {
					t.Fatalf("monitor of an actor on %s as soon as it started: down %v, want its normal exit", id, d.Reason)
				}
			case <-ctx.Done():
				t.Fatal("no down message")
			}
		}
	}
	gone := actor.Ref{Node: "never-joined", ID: 1, Incarnation: 1}
	if _, err := a.Call(ctx, gone, "x"); !errors.Is(err, cohort.ErrNodeDown) {
		t.Fatalf("call to a node that is not a member = %v, want ErrNodeDown", err)
	}
}

// terminating reports its Terminate and its reason.
type terminating struct{ done chan error }

func (a *terminating) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }

func (a *terminating) Terminate(_ *actor.Context, reason error) { a.done <- reason }

var errRetired = errors.New("remote test: retired")

func init() {
	if err := actor.RegisterError("remote_test.retired", errRetired); err != nil {
		panic(err)
	}
}

// An actor on another node is stopped (its Terminate runs, with the
// reason given) or killed from here, by Ref or by global name, as OTP's
// exit/2 reaches a remote process.
func TestRemoteStopAndKill(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints()})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints()})
	ctx := timeout(t, 30*time.Second)
	done := make(chan error, 1)
	ref, err := b.System().Spawn(ctx, &terminating{done: done}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := b.Registry().Register(ctx, "retiree", ref, nil); err != nil {
		t.Fatal(err)
	}
	_, down := a.System().Monitor(ref)
	if err := a.System().Stop(ctx, actor.Name("retiree"), errRetired); err != nil {
		t.Fatalf("remote stop = %v", err)
	}
	select {
	case reason := <-done:
		if !errors.Is(reason, errRetired) {
			t.Fatalf("Terminate reason = %v, want %v", reason, errRetired)
		}
	default:
		t.Fatal("Stop returned before the actor's Terminate ran")
	}
	if d := <-down; !errors.Is(d.Reason, errRetired) {
		t.Fatalf("down after a remote stop = %v", d.Reason)
	}

	victim, err := b.System().Spawn(ctx, &terminating{done: make(chan error, 1)}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, down = a.System().Monitor(victim)
	if err := a.System().Kill(victim); err != nil {
		t.Fatalf("remote kill = %v", err)
	}
	if d := <-down; !errors.Is(d.Reason, actor.ErrKilled) {
		t.Fatalf("down after a remote kill = %v, want ErrKilled", d.Reason)
	}
	if err := a.System().Stop(ctx, victim, nil); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("stop of an actor already gone = %v, want ErrNotFound", err)
	}
	if err := a.System().Stop(ctx, actor.Ref{Node: "ghost", ID: 1, Incarnation: 1}, nil); !errors.Is(err, cohort.ErrNodeDown) {
		t.Fatalf("stop on a node that is not a member = %v, want ErrNodeDown", err)
	}
}

// slowTerminate signals when its Terminate begins and takes a while.
type slowTerminate struct{ began chan struct{} }

func (a *slowTerminate) HandleCall(*actor.Context, any) (any, error) { return "ok", nil }

func (a *slowTerminate) Terminate(*actor.Context, error) {
	close(a.began)
	time.Sleep(300 * time.Millisecond)
}

// A remote stop in progress is not cut short when its asker goes away:
// the actor finishes its Terminate and exits with the reason it was given.
func TestRemoteStopOutlivesItsAsker(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints()})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints()})
	ctx := timeout(t, 30*time.Second)
	began := make(chan struct{})
	ref, err := b.System().Spawn(ctx, &slowTerminate{began: began}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, down := b.System().Monitor(ref)
	go func() { _ = a.System().Stop(ctx, ref, errRetired) }()
	<-began
	if err := a.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	if d := <-down; !errors.Is(d.Reason, errRetired) {
		t.Fatalf("exit of an actor whose remote stop lost its asker = %v, want %v", d.Reason, errRetired)
	}
}
