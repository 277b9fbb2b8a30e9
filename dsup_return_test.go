package cohort_test

import (
	"context"
	"testing"
	"time"

	"github.com/cohort-go/cohort/supervisor"
)

// A node that drained a distributed supervisor returns to it as
// docs/architecture.md says: Stop the supervisor there and call
// DistributedSupervisor again; the ring then places children on it again.
func TestDistributedReturnAfterDrain(t *testing.T) {
	opts := supervisor.DistributedOptions{StableWindow: 50 * time.Millisecond}
	a, b := startPair(t, opts)
	ids := startCounters(t, a.sup, 20)
	waitAllRunning(t, a.sup, ids, 10*time.Second)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	a.sup.Drain(ctx)
	if n := len(a.sup.LocalChildren()); n != 0 {
		t.Fatalf("%d children still on a after Drain", n)
	}
	a.sup.Stop(ctx)
	again, err := a.DistributedSupervisor(ctx, "users", opts)
	if err != nil {
		t.Fatal(err)
	}
	if again == a.sup {
		t.Fatal("DistributedSupervisor returned the stopped supervisor")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(again.LocalChildren()) == 0 {
		if time.Now().After(deadline) {
			t.Fatalf("no child came back to a after its supervisor was started again: %v", waitAllRunning(t, b.sup, ids, time.Second))
		}
		time.Sleep(10 * time.Millisecond)
	}
	waitAllRunning(t, b.sup, ids, 10*time.Second)
	if _, _, err := again.StartChild(ctx, supervisor.ChildSpec{ID: "new", Kind: "counter"}); err != nil {
		t.Fatal(err)
	}
}
