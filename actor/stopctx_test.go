package actor

import (
	"context"
	"errors"
	"fmt"
	"testing"
	"time"
)

// blocker's handler blocks until Stopping ends; its Terminate reports
// whether the life Context is live then.
type blocker struct {
	started     chan struct{}
	handlerErr  chan error
	termCtxLive chan bool
}

func (b *blocker) HandleCall(c *Context, _ any) (any, error) {
	close(b.started)
	<-c.Stopping().Done()
	b.handlerErr <- c.Stopping().Err()
	if err := c.Context().Err(); err != nil {
		b.handlerErr <- fmt.Errorf("the actor's life Context ended with the stop request: %w", err)
	}
	return "stopped", nil
}

func (b *blocker) Terminate(c *Context, _ error) { b.termCtxLive <- c.Context().Err() == nil }

// A handler that watches Stopping returns as soon as the actor is asked to
// stop, so the actor terminates with the stop's reason, not killed at its
// shutdown timeout; the life Context stays live through Terminate.
func TestStopEndsStopping(t *testing.T) {
	sys := NewSystem(Config{Node: "n"})
	defer func() { _ = sys.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &blocker{started: make(chan struct{}), handlerErr: make(chan error, 2), termCtxLive: make(chan bool, 1)}
	ref, err := sys.Spawn(ctx, b, Options{ShutdownTimeout: 20 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	_, downs := sys.Monitor(ref)
	reply := make(chan error, 1)
	go func() { _, err := sys.Call(ctx, ref, "block"); reply <- err }()
	<-b.started
	if err := sys.Stop(ctx, ref, Shutdown); err != nil {
		t.Fatalf("stop of an actor whose handler watches its Context = %v", err)
	}
	if err := <-b.handlerErr; !errors.Is(err, context.Canceled) {
		t.Fatalf("Stopping after the stop request = %v", err)
	}
	select {
	case err := <-b.handlerErr:
		t.Fatal(err)
	default:
	}
	if !<-b.termCtxLive {
		t.Fatal("Terminate got a canceled Context")
	}
	if d := <-downs; !errors.Is(d.Reason, Shutdown) {
		t.Fatalf("down reason = %v, want Shutdown", d.Reason)
	}
	if err := <-reply; err != nil {
		t.Fatalf("the call whose handler returned = %v, want its reply", err)
	}
}
