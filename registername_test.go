package cohort_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// selfNamed registers itself under a global name in Init, and panics on
// "crash".
type selfNamed struct{ reg func(*actor.Context) error }

func (s selfNamed) Init(ctx *actor.Context, _ any) error { return s.reg(ctx) }

func (selfNamed) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if msg == "crash" {
		panic("boom")
	}
	return ctx.Self(), nil
}

// An actor that registers its global name in Init, restarted by its
// supervisor after a crash, registers it again, and calls by name from
// another node reach the new instance: the name went with the dead one.
func TestSupervisedActorRegistersItsNameAgain(t *testing.T) {
	cl := etcdtest.Start(t)
	a := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints()})
	b := startNode(t, cohort.Config{NodeID: "b", Endpoints: cl.Endpoints()})
	ctx := timeout(t, 30*time.Second)
	newSvc := func() actor.Actor {
		return selfNamed{reg: func(c *actor.Context) error {
			return a.Registry().Register(c.Context(), "svc", c.Self(), nil)
		}}
	}
	sup, err := supervisor.Start(ctx, a.System(), supervisor.Spec{Children: []supervisor.Child{supervisor.Spawn("svc", newSvc, actor.Options{})},
		Intensity: supervisor.Intensity{MaxRestarts: 10, Period: time.Minute}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sup.Stop(context.Background()) })
	for i := range 5 {
		first, err := b.Call(ctx, actor.Name("svc"), "who")
		if err != nil {
			t.Fatalf("round %d: call by name = %v", i, err)
		}
		if _, err := b.Call(ctx, actor.Name("svc"), "crash"); err == nil {
			t.Fatalf("round %d: the crash returned no error", i)
		}
		var next any
		etcdtest.WaitFor(t, 10*time.Second, 10*time.Millisecond, "calls by name to reach the restarted actor", func() bool {
			next, err = b.Call(ctx, actor.Name("svc"), "who")
			return err == nil && next != first
		})
	}
	// A name given to an actor that is gone is refused.
	ref, err := a.System().Spawn(ctx, echo{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if err := a.System().Stop(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if err := a.Registry().Register(ctx, "gone", ref, nil); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("register of a stopped actor = %v, want ErrNotFound", err)
	}
}
