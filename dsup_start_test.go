package cohort_test

import (
	"context"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// slowInit takes a while to start, and answers calls with its id.
type slowInit struct{ id string }

func (s *slowInit) Init(_ *actor.Context, args any) error {
	s.id = args.(supervisor.InitArgs).ID
	time.Sleep(30 * time.Millisecond)
	return nil
}

func (s *slowInit) HandleCall(*actor.Context, any) (any, error) { return s.id, nil }

// The Ref StartChild returns answers at once, wherever the child runs and
// however long its Init takes: the instance is registered under its Ref
// before the owner key publishes it, and calls wait for Init.
func TestDistributedStartChildRefAnswersAtOnce(t *testing.T) {
	a := startDNodesWithKind(t, "slow", func() actor.Actor { return &slowInit{} }, "a", "b")[0]
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	remote := 0
	for i := 0; i < 20; i++ {
		ref, id, err := a.sup.StartChild(ctx, supervisor.ChildSpec{Kind: "slow"})
		if err != nil {
			t.Fatal(err)
		}
		if ref.Node != "a" {
			remote++
		}
		if v, err := a.Call(ctx, ref, "id"); err != nil || v != id {
			t.Fatalf("call to %v (on %s) right after StartChild = %v, %v", ref, ref.Node, v, err)
		}
	}
	if remote == 0 {
		t.Fatal("no child started on the other node")
	}
}
