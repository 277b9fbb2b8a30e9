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

// An actor that stops itself has its Stopping canceled at once, and its
// reason stands against a stop asked for from outside afterwards: the
// first request wins.
func TestSelfStopEndsStoppingAndWins(t *testing.T) {
	sys := NewSystem(Config{Node: "n"})
	defer func() { _ = sys.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	self := errors.New("self")
	asked, gate := make(chan struct{}), make(chan struct{})
	ref, err := sys.Spawn(ctx, Func(func(c *Context, _ any) (any, error) {
		c.Stop(self)
		<-c.Stopping().Done()
		close(asked)
		<-gate
		return "done", nil
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	_, downs := sys.Monitor(ref)
	reply := make(chan error, 1)
	go func() { _, err := sys.Call(ctx, ref, "stop yourself"); reply <- err }()
	<-asked
	p, err := sys.local(ref)
	if err != nil {
		t.Fatal(err)
	}
	p.requestStop(Shutdown) // what System.Stop asks first, while the handler runs
	close(gate)
	if err := <-reply; err != nil {
		t.Fatalf("call = %v", err)
	}
	if d := <-downs; !errors.Is(d.Reason, self) {
		t.Fatalf("exit reason %v, want the actor's own, asked for first", d.Reason)
	}
}

// Interrupt ends a handler blocked on Stopping and leaves the actor running.
func TestInterruptEndsStoppingWithoutStopping(t *testing.T) {
	sys := NewSystem(Config{Node: "n"})
	defer func() { _ = sys.Shutdown(context.Background()) }()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	blocked := make(chan struct{})
	ref, err := sys.Spawn(ctx, Func(func(c *Context, msg any) (any, error) {
		if msg == "block" {
			close(blocked)
			<-c.Stopping().Done()
			return "interrupted", nil
		}
		return msg, nil
	}), Options{})
	if err != nil {
		t.Fatal(err)
	}
	reply := make(chan any, 1)
	go func() { v, _ := sys.Call(ctx, ref, "block"); reply <- v }()
	<-blocked
	if err := sys.Interrupt(ctx, ref); err != nil {
		t.Fatal(err)
	}
	if v := <-reply; v != "interrupted" {
		t.Fatalf("blocked call = %v", v)
	}
	if v, err := sys.Call(ctx, ref, "next"); err != nil || v != "next" {
		t.Fatalf("call after the interrupt = %v, %v: the actor should run on", v, err)
	}
}
