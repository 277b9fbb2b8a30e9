package cohort_test

import (
	"context"
	"errors"
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// blockedInit's Init waits until its channel is closed.
type blockedInit struct{ until <-chan struct{} }

func (b blockedInit) Init(*actor.Context, any) error {
	<-b.until
	return nil
}

func (b blockedInit) HandleCall(*actor.Context, any) (any, error) { return "up", nil }

// A child whose Init blocks holds up nothing else on its node: the
// children placed there after it start and answer, those of a node that
// dies are taken over there, and the node stops within its context.
func TestDistributedBlockedInitHoldsUpNothingElse(t *testing.T) {
	cl := etcdtest.Start(t)
	opts := supervisor.DistributedOptions{}
	a := startDNode(t, cl, "a", nil, opts)
	b := startDNode(t, cl, "b", nil, opts)
	until := make(chan struct{})
	t.Cleanup(func() { close(until) })
	for _, n := range []dnode{a, b} {
		if err := n.RegisterKind("blocked", func() actor.Actor { return blockedInit{until} }); err != nil {
			t.Fatal(err)
		}
	}
	waitMembers(t, a.Node, "a", "b")
	waitPublished(t, a.Node, "b", true)
	waitPublished(t, b.Node, "a", true)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	// A blocked child on each node.
	var blocked []string
	for i := 0; len(blocked) < 2; i++ {
		id := fmt.Sprintf("blocked-%d", i)
		want := []string{"a", "b"}[len(blocked)]
		if node, _ := a.sup.NodeFor(id); node != want {
			continue
		}
		if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: id, Kind: "blocked"}); err != nil {
			t.Fatal(err)
		}
		blocked = append(blocked, id)
	}
	// Counters started after them, on both nodes, start and answer.
	ids := make([]string, 20)
	for i := range ids {
		ids[i] = fmt.Sprintf("user-%03d", i)
		callCtx, callCancel := context.WithTimeout(ctx, 5*time.Second)
		_, _, err := a.sup.StartChild(callCtx, supervisor.ChildSpec{ID: ids[i], Kind: "counter"})
		if err == nil {
			_, err = a.sup.Call(callCtx, ids[i], "incr")
		}
		callCancel()
		if err != nil {
			t.Fatalf("%s while an Init blocks on its node: %v", ids[i], err)
		}
	}
	// b's children, blocked one included, move to a, which takes them
	// over although an Init blocks there; b's Stop, given no more time
	// than the blocked child's shutdown timeout, ends within it and still
	// leaves the cluster cleanly (its member key deleted, its lease
	// revoked).
	stopCtx, stopCancel := context.WithTimeout(ctx, supervisor.DefaultWorkerShutdown)
	defer stopCancel()
	stopped := make(chan error, 1)
	go func() { stopped <- b.Stop(stopCtx) }()
	select {
	case err := <-stopped:
		if err != nil {
			t.Fatalf("b.Stop while an Init blocked: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("b.Stop ran far past its context while an Init blocked")
	}
	resp, err := a.Client().Get(ctx, ring.MemberKey(a.Prefix(), "b"), clientv3.WithCountOnly())
	if err != nil || resp.Count != 0 {
		t.Fatalf("b's member key after its Stop returned: %v, %v; want it deleted", resp, err)
	}
	wantCounts(t, ctx, a.sup, ids, 1, 5*time.Second, "after b stopped")
}

// wantCounts fails t unless each counter of ids, called through d within
// limit, answers want.
func wantCounts(t *testing.T, ctx context.Context, d *supervisor.Distributed, ids []string, want int, limit time.Duration, when string) {
	t.Helper()
	for _, id := range ids {
		callCtx, cancel := context.WithTimeout(ctx, limit)
		v, err := d.Call(callCtx, id, "get")
		cancel()
		if err != nil || v != want {
			t.Fatalf("%s %s: %v, %v; want %d", id, when, v, err, want)
		}
	}
}

// A call to a child that no live node can run fails at its deadline
// saying so, not only that the wait timed out.
func TestDistributedCallToUnrunnableChildSaysWhy(t *testing.T) {
	a, b := startPair(t, supervisor.DistributedOptions{})
	if err := b.RegisterKind("only-b", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	if _, _, err := a.sup.StartChild(ctx, supervisor.ChildSpec{ID: "x", Kind: "only-b"}); err != nil {
		t.Fatal(err)
	}
	b.sup.Stop(ctx)
	waitPublished(t, a.Node, "b", false)
	callCtx, callCancel := context.WithTimeout(ctx, time.Second)
	defer callCancel()
	_, err := a.sup.Call(callCtx, "x", "get")
	if !errors.Is(err, context.DeadlineExceeded) || !strings.Contains(err.Error(), `no live node runs the supervisor with kind "only-b"`) {
		t.Fatalf("call to a child no node can run: %v", err)
	}
}
