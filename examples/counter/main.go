// Command counter is cohort's local demo: a supervised counter that crashes
// and is restarted, printing what happens. It needs nothing but Go.
//
//	go run ./examples/counter
package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// Counter is a GenServer-style actor: it adds on calls and crashes when told.
type Counter struct{ n int }

// Add asks the counter to add N and reply with the new total.
type Add struct{ N int }

// Crash makes the counter panic.
type Crash struct{}

// Init starts the count from the spawn arguments.
func (c *Counter) Init(_ *actor.Context, args any) error {
	c.n, _ = args.(int)
	return nil
}

// HandleCall answers Add and panics on Crash.
func (c *Counter) HandleCall(_ *actor.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case Add:
		c.n += m.N
		return c.n, nil
	case Crash:
		panic("counter asked to crash")
	}
	return nil, actor.ErrUnhandled
}

// Terminate reports why the counter stops.
func (c *Counter) Terminate(ctx *actor.Context, reason error) {
	fmt.Printf("  counter %v terminating at n=%d: %v\n", ctx.Self(), c.n, reason)
}

func main() {
	if err := run(); err != nil {
		fmt.Fprintln(os.Stderr, "counter:", err)
		os.Exit(1)
	}
}

func run() error {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	sys := actor.NewSystem(actor.Config{Node: "demo"})
	defer sys.Shutdown(context.Background())

	counter := supervisor.Spawn("counter", func() actor.Actor { return &Counter{} },
		actor.Options{Name: "counter", Args: 100})
	sup, err := supervisor.Start(ctx, sys, supervisor.Spec{
		Strategy:  supervisor.OneForOne,
		Intensity: supervisor.Intensity{MaxRestarts: 3, Period: 5 * time.Second},
		Children:  []supervisor.Child{counter},
		Listener:  func(e supervisor.Event) { fmt.Printf("  [supervisor] %v\n", e) },
	})
	if err != nil {
		return err
	}

	for round := 1; ; round++ {
		n, err := actor.Call[int](ctx, sys, actor.Name("counter"), Add{N: round})
		if err != nil {
			return err
		}
		fmt.Printf("round %d: add %d -> %d\n", round, round, n)
		if round > 4 {
			break
		}
		fmt.Printf("round %d: crashing the counter\n", round)
		start := time.Now()
		_, err = sys.Call(ctx, actor.Name("counter"), Crash{})
		var pe *actor.PanicError
		if !errors.As(err, &pe) {
			return fmt.Errorf("expected the crash to surface as a panic, got %v", err)
		}
		fmt.Printf("  call failed at once with the exit reason: %v\n", err)
		if err := waitRestarted(ctx, sys); err != nil {
			if errors.Is(err, actor.ErrNotFound) {
				fmt.Println("  the counter is gone: the supervisor gave up (intensity 3 restarts in 5s exceeded)")
				return nil
			}
			return err
		}
		fmt.Printf("  restarted in %v (state starts again from the spawn args)\n", time.Since(start).Round(time.Microsecond))
	}
	return sup.Stop(ctx)
}

// waitRestarted waits until the name "counter" points at a live actor again,
// or the supervisor has exited.
func waitRestarted(ctx context.Context, sys *actor.System) error {
	for {
		if ref, ok := sys.Whereis("counter"); ok && sys.Alive(ref) {
			return nil
		}
		if sys.Count() == 0 {
			return actor.ErrNotFound
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(time.Millisecond):
		}
	}
}
