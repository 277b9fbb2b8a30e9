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
