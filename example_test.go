package cohort_test

import (
	"context"
	"fmt"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

type exampleCounter struct{ n int }

func (c *exampleCounter) HandleCall(_ *actor.Context, msg any) (any, error) {
	switch msg {
	case "incr":
		c.n++
		return c.n, nil
	case "status":
		return "ok", nil
	}
	return nil, actor.ErrUnhandled
}

// Example is the README's taste of the API, on one node with an embedded
// etcd.
func Example() {
	ctx := context.Background()
	node, err := cohort.Start(ctx, cohort.Config{NodeID: "example"})
	if err != nil {
		panic(err)
	}
	defer node.Stop(ctx)
	if err := node.RegisterKind("counter", func() actor.Actor { return &exampleCounter{} }); err != nil {
		panic(err)
	}

	users, err := node.DistributedSupervisor(ctx, "users", supervisor.DistributedOptions{})
	if err != nil {
		panic(err)
	}
	if _, err := users.FindOrStart(ctx, supervisor.ChildSpec{ID: "user:42", Kind: "counter"}); err != nil {
		panic(err)
	}
	n, err := users.Call(ctx, "user:42", "incr")
	fmt.Println(n, err)

	newBilling := func() actor.Actor { return &exampleCounter{} }
	if _, err := node.Supervise(ctx, node.Singleton(
		supervisor.Spawn("billing", newBilling, actor.Options{}))); err != nil {
		panic(err)
	}
	// The singleton is elected and registers its global name after
	// Supervise returns.
	if _, err := node.WaitName(ctx, "billing"); err != nil {
		panic(err)
	}
	v, err := node.Call(ctx, actor.Name("billing"), "status")
	fmt.Println(v, err)
	// Output:
	// 1 <nil>
	// ok <nil>
}

// Greet is a message that travels between nodes.
type Greet struct{ Name string }

func init() { actor.MustRegisterType[Greet]("example.Greet") }

// Greeter answers Greet calls and counts Greet casts.
type Greeter struct{ casts int }

func (g *Greeter) HandleCall(_ *actor.Context, msg any) (any, error) {
	if m, ok := msg.(Greet); ok {
		return fmt.Sprintf("hello, %s (after %d casts)", m.Name, g.casts), nil
	}
	return nil, actor.ErrUnhandled
}

func (g *Greeter) HandleCast(_ *actor.Context, msg any) error {
	if _, ok := msg.(Greet); ok {
		g.casts++
	}
	return nil
}

// Example_messaging is the README's messaging between two nodes: an actor
// registered under a global name on one, called, cast to and monitored
// from the other.
func Example_messaging() {
	ctx := context.Background()
	node, err := cohort.Start(ctx, cohort.Config{NodeID: "first"})
	if err != nil {
		panic(err)
	}
	defer node.Stop(ctx)
	ref, err := node.System().Spawn(ctx, &Greeter{}, actor.Options{})
	if err != nil {
		panic(err)
	}
	if err := node.Registry().Register(ctx, "greeter", ref, nil); err != nil {
		panic(err)
	}

	other, err := cohort.Start(ctx, cohort.Config{NodeID: "second", Endpoints: node.Endpoints()})
	if err != nil {
		panic(err)
	}
	defer other.Stop(ctx)
	// Messages from one node to an actor arrive in order: the monitor,
	// then the cast, then the call.
	_, down := other.System().Monitor(ref)
	if err := other.Cast(ctx, actor.Name("greeter"), Greet{"bob"}); err != nil {
		panic(err)
	}
	v, err := other.Call(ctx, actor.Name("greeter"), Greet{"ada"})
	fmt.Println(v, err)
	if err := node.System().Stop(ctx, ref, nil); err != nil {
		panic(err)
	}
	fmt.Println((<-down).Reason)
	// Output:
	// hello, ada (after 1 casts) <nil>
	// normal
}
