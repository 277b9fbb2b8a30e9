package actor

import (
	"context"
	"errors"
	"testing"
	"time"
)

// blocker's handler blocks until its Context ends; its Terminate reports
// whether its own Context was live then.
type blocker struct {
	started     chan struct{}
	handlerErr  chan error
	termCtxLive chan bool
}

func (b *blocker) HandleCall(c *Context, _ any) (any, error) {
	close(b.started)
	<-c.Context().Done()
	b.handlerErr <- c.Context().Err()
	return "stopped", nil
}

func (b *blocker) Terminate(c *Context, _ error) { b.termCtxLive <- c.Context().Err() == nil }

// A handler that watches Context returns as soon as the actor is asked to
// stop, so the actor terminates with the stop's reason, not killed at its
// shutdown timeout; Terminate then has a live Context for its cleanup.
func TestStopCancelsTheHandlersContext(t *testing.T) {
	sys := NewSystem(Config{Node: "n"})
	defer func() { _ = sys.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	b := &blocker{started: make(chan struct{}), handlerErr: make(chan error, 1), termCtxLive: make(chan bool, 1)}
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
		t.Fatalf("handler's Context after the stop request = %v", err)
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
