package cohort_test

import (
	"context"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// The context given to DistributedSupervisor bounds only the start: once
// it ends, the supervisor still sees new specs and places them.
func TestDistributedOutlivesItsStartContext(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	if err := a.RegisterKind("counter", func() actor.Actor { return &dcounter{} }); err != nil {
		t.Fatal(err)
	}
	startCtx, cancel := context.WithCancel(context.Background())
	d, err := a.DistributedSupervisor(startCtx, "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	cancel()
	ctx, done := context.WithTimeout(context.Background(), 10*time.Second)
	defer done()
	for i, id := range []string{"u1", "u2"} {
		if _, _, err := d.StartChild(ctx, supervisor.ChildSpec{ID: id, Kind: "counter"}); err != nil {
			t.Fatalf("start child %d after the start context ended: %v", i, err)
		}
	}
	// A context that has already ended fails the start.
	if _, err := supervisor.StartDistributed(startCtx, supervisor.Cluster{NodeID: a.ID(), Prefix: a.Prefix(),
		Client: a.Client(), Session: a.Session(), Ring: a.Ring(), System: a.System(),
		Kind:  func(string) (supervisor.Factory, bool) { return nil, false },
		Offer: func(context.Context, string, bool) error { return nil }}, "other", supervisor.DistributedOptions{}); err == nil {
		t.Fatal("StartDistributed with an ended context succeeded")
	}
}
