package cohort_test

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// tokens records the InitArgs of every instance, in start order.
type tokens struct {
	mu   sync.Mutex
	args []supervisor.InitArgs
	on   []string
}

// started waits until n instances have run Init (StartChild returns when
// the child is claimed, before its Init has run).
func (r *tokens) started(t *testing.T, n int) {
	t.Helper()
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "the child's Init", func() bool { _, _, k := r.last(); return k >= n })
}

func (r *tokens) last() (supervisor.InitArgs, string, int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if len(r.args) == 0 {
		return supervisor.InitArgs{}, "", 0
	}
	return r.args[len(r.args)-1], r.on[len(r.on)-1], len(r.args)
}

type tokenChild struct{ r *tokens }

func (c *tokenChild) Init(ctx *actor.Context, args any) error {
	c.r.mu.Lock()
	c.r.args = append(c.r.args, args.(supervisor.InitArgs))
	c.r.on = append(c.r.on, ctx.System().Node())
	c.r.mu.Unlock()
	return nil
}

func (c *tokenChild) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if msg == "crash" {
		ctx.Stop(errors.New("crash"))
	}
	return "ok", nil
}

// A distributed child's fencing token stays the same across restarts under
// one claim and grows with every new claim; an etcd write guarded with the
// token of an instance that was deposed is refused, the current one's
// commits.
func TestDistributedFencingToken(t *testing.T) {
	r := &tokens{}
	nodes := startDNodesWithKind(t, "tok", func() actor.Actor { return &tokenChild{r} }, "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, _, err := nodes[0].sup.StartChild(ctx, supervisor.ChildSpec{ID: "x", Kind: "tok"}); err != nil {
		t.Fatal(err)
	}
	r.started(t, 1)
	first, holder, _ := r.last()
	if first.Token <= 0 {
		t.Fatalf("token %d", first.Token)
	}
	cli := nodes[0].Client()
	guarded := func(args supervisor.InitArgs) bool {
		resp, err := cli.Txn(ctx).If(args.Guard()).Then(clientv3.OpPut("/tokentest/x", "v")).Commit()
		if err != nil {
			t.Fatal(err)
		}
		return resp.Succeeded
	}
	if !guarded(first) {
		t.Fatal("a write guarded by the running instance's token was refused")
	}
	if !first.Alive() || (supervisor.InitArgs{}).Alive() {
		t.Fatalf("Alive of the running instance = %v, of no instance = %v", first.Alive(), (supervisor.InitArgs{}).Alive())
	}

	// A restart under the same claim keeps the token.
	if _, err := nodes[0].sup.Call(ctx, "x", "crash"); err != nil {
		t.Fatal(err)
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "the restart", func() bool { _, _, n := r.last(); return n == 2 })
	restarted, on, _ := r.last()
	if on != holder || restarted.Token != first.Token {
		t.Fatalf("restart on %s with token %d; first ran on %s with %d", on, restarted.Token, holder, first.Token)
	}

	// A new claim, on the other node, gets a greater token and deposes
	// the first.
	for _, n := range nodes {
		if n.ID() == holder {
			n.sup.Stop(ctx)
		}
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "the move", func() bool { _, on, _ := r.last(); return on != holder })
	moved, _, _ := r.last()
	if moved.Token <= first.Token {
		t.Fatalf("token after the move %d, before %d", moved.Token, first.Token)
	}
	if guarded(first) {
		t.Fatal("a write guarded by a deposed instance's token was committed")
	}
	if !guarded(moved) {
		t.Fatal("a write guarded by the new instance's token was refused")
	}
	// Its node gone (its lease revoked), an instance knows, without etcd,
	// that its claim has ended.
	for _, n := range nodes {
		if n.ID() != holder {
			if err := n.Stop(ctx); err != nil {
				t.Fatal(err)
			}
		}
	}
	if moved.Alive() {
		t.Fatal("Alive of an instance whose node stopped and revoked its lease")
	}
}

// blockingChild's handler for "block" waits on Stopping; it hands off
// "state" and records its InitArgs.
type blockingChild struct {
	r       *tokens
	blocked func() // tells the test the handler waits
}

func (c *blockingChild) Init(ctx *actor.Context, args any) error {
	return (&tokenChild{c.r}).Init(ctx, args)
}

func (c *blockingChild) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if msg == "block" {
		stopping := ctx.Stopping()
		c.blocked()
		<-stopping.Done()
		return "unblocked", nil
	}
	return "ok", nil
}

func (c *blockingChild) Handoff(*actor.Context) ([]byte, error) { return []byte("state"), nil }

// A child whose handler waits on Stopping is handed off when its node
// drains: the handler returns at once, and the handoff runs and reaches
// the next instance, rather than the child being abandoned at its
// shutdown timeout without its state.
func TestDistributedDrainEndsStoppingHandlers(t *testing.T) {
	r := &tokens{}
	blocked := make(chan struct{})
	var once sync.Once
	nodes := startDNodesWithKind(t, "blk", func() actor.Actor {
		return &blockingChild{r: r, blocked: func() { once.Do(func() { close(blocked) }) }}
	}, "a", "b")
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, _, err := nodes[0].sup.StartChild(ctx, supervisor.ChildSpec{ID: "x", Kind: "blk", Shutdown: 30 * time.Second}); err != nil {
		t.Fatal(err)
	}
	r.started(t, 1)
	_, holder, _ := r.last()
	reply := make(chan any, 1)
	go func() {
		v, err := nodes[0].sup.Call(ctx, "x", "block")
		if err != nil {
			v = err
		}
		reply <- v
	}()
	<-blocked
	for _, n := range nodes {
		if n.ID() == holder {
			n.sup.Drain(ctx)
		}
	}
	if v := <-reply; v != "unblocked" {
		t.Fatalf("blocked call = %v", v)
	}
	etcdtest.WaitFor(t, 10*time.Second, 5*time.Millisecond, "the move", func() bool { _, on, _ := r.last(); return on != holder })
	if moved, _, _ := r.last(); string(moved.Handoff) != "state" {
		t.Fatalf("the next instance got handoff %q, want the state the first handed off", moved.Handoff)
	}
}
