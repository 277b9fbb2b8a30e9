package supervisor_test

import (
	"context"
	"fmt"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

type echoActor struct{}

func (echoActor) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func ExampleStart() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.Config{Node: "example"})
	defer sys.Shutdown(ctx)

	sup, err := supervisor.Start(ctx, sys, supervisor.Spec{
		Strategy:  supervisor.RestForOne,
		Intensity: supervisor.Intensity{MaxRestarts: 3, Period: 5 * time.Second},
		Children: []supervisor.Child{
			supervisor.Spawn("db", func() actor.Actor { return echoActor{} }, actor.Options{Name: "db"}),
			supervisor.Spawn("api", func() actor.Actor { return echoActor{} }, actor.Options{Name: "api"}),
		},
	})
	if err != nil {
		panic(err)
	}
	children, _ := sup.WhichChildren(ctx)
	for _, c := range children {
		fmt.Println(c.ID, c.Running)
	}
	// Output:
	// db true
	// api true
}

func ExampleStartDynamic() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.Config{Node: "example"})
	defer sys.Shutdown(ctx)

	d, _ := supervisor.StartDynamic(ctx, sys, supervisor.DynamicSpec{MaxChildren: 100})
	ref, _ := d.StartChild(ctx, supervisor.Spawn("", func() actor.Actor { return echoActor{} }, actor.Options{}))
	v, _ := sys.Call(ctx, ref, "pong")
	n, _ := d.CountChildren(ctx)
	fmt.Println(v, n.Active)
	// Output: pong 1
}
