package actor_test

import (
	"context"
	"fmt"

	"github.com/cohort-go/cohort/actor"
)

// Counter is a GenServer-style actor.
type Counter struct{ n int }

type Add struct{ N int }

func (c *Counter) Init(_ *actor.Context, args any) error {
	c.n, _ = args.(int)
	return nil
}

func (c *Counter) HandleCall(_ *actor.Context, msg any) (any, error) {
	if m, ok := msg.(Add); ok {
		c.n += m.N
		return c.n, nil
	}
	return nil, actor.ErrUnhandled
}

func (c *Counter) HandleCast(_ *actor.Context, msg any) error {
	if m, ok := msg.(Add); ok {
		c.n += m.N
	}
	return nil
}

func Example() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.Config{Node: "example"})
	defer sys.Shutdown(ctx)

	ref, err := sys.Spawn(ctx, &Counter{}, actor.Options{Name: "counter", Args: 10})
	if err != nil {
		panic(err)
	}
	_ = sys.Cast(ctx, ref, Add{N: 5})                                     // async
	n, err := actor.Call[int](ctx, sys, actor.Name("counter"), Add{N: 1}) // by name
	fmt.Println(n, err)
	// Output: 16 <nil>
}

func ExampleSystem_Monitor() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.Config{Node: "example"})
	defer sys.Shutdown(ctx)

	ref, _ := sys.Spawn(ctx, &Counter{}, actor.Options{})
	_, downs := sys.Monitor(ref)
	_ = sys.Stop(ctx, ref, actor.Shutdown)
	d := <-downs
	fmt.Println(d.Reason)
	// Output: shutdown
}

func ExampleContext_DeferReply() {
	ctx := context.Background()
	sys := actor.NewSystem(actor.Config{Node: "example"})
	defer sys.Shutdown(ctx)

	// The handler answers from another goroutine, like GenServer.reply/2.
	ref, _ := sys.Spawn(ctx, actor.Func(func(c *actor.Context, msg any) (any, error) {
		reply := c.DeferReply()
		go reply.Reply(fmt.Sprintf("later: %v", msg), nil)
		return nil, nil
	}), actor.Options{})
	v, _ := sys.Call(ctx, ref, "hi")
	fmt.Println(v)
	// Output: later: hi
}
