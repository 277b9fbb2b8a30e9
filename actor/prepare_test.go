package actor_test

import (
	"context"
	"errors"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// initOrder records its Init args and answers calls with what it has.
type initOrder struct{ args any }

func (a *initOrder) Init(_ *actor.Context, args any) error {
	if err, ok := args.(error); ok {
		return err
	}
	a.args = args
	return nil
}

func (a *initOrder) HandleCall(_ *actor.Context, msg any) (any, error) { return a.args, nil }

// A call to a prepared actor waits until it starts, and is handled after
// its Init: the Ref can be published before the actor runs.
func TestPreparedActorQueuesUntilStarted(t *testing.T) {
	sys := newSystem(t)
	pr, err := sys.Prepare(&initOrder{}, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	if !sys.Alive(pr.Ref()) {
		t.Fatal("prepared actor not alive")
	}
	got := make(chan any, 1)
	go func() {
		v, err := sys.Call(context.Background(), pr.Ref(), "what")
		if err != nil {
			v = err
		}
		got <- v
	}()
	select {
	case v := <-got:
		t.Fatalf("call answered before Start: %v", v)
	case <-time.After(50 * time.Millisecond):
	}
	if err := pr.Start("init-args"); err != nil {
		t.Fatal(err)
	}
	if v := <-got; v != "init-args" {
		t.Fatalf("call = %v, want the Init args", v)
	}
	if err := pr.Start("again"); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("second Start = %v", err)
	}
}

// Abandoning a prepared actor fails the calls that waited with
// ErrNotFound, as if it had never existed; a failing Init fails them with
// its error.
func TestPreparedActorAbandonedOrFailing(t *testing.T) {
	sys := newSystem(t)
	for _, tc := range []struct {
		name string
		end  func(*actor.Prepared) error
		want error
	}{
		{"abandon", func(pr *actor.Prepared) error { pr.Abandon(); return nil }, actor.ErrNotFound},
		{"kill", func(pr *actor.Prepared) error { return sys.Kill(pr.Ref()) }, actor.ErrKilled},
		{"init fails", func(pr *actor.Prepared) error { return pr.Start(errBoom) }, errBoom},
	} {
		t.Run(tc.name, func(t *testing.T) {
			pr, err := sys.Prepare(&initOrder{}, actor.Options{})
			if err != nil {
				t.Fatal(err)
			}
			_, downs := sys.Monitor(pr.Ref())
			errs := make(chan error, 1)
			// CallAsync returns once the call waits in the mailbox.
			if err := sys.CallAsync(context.Background(), pr.Ref(), "what", func(_ any, err error) { errs <- err }); err != nil {
				t.Fatal(err)
			}
			if err := tc.end(pr); (tc.want == errBoom) != (err != nil) {
				t.Fatalf("%s = %v", tc.name, err)
			}
			if err := <-errs; !errors.Is(err, tc.want) {
				t.Fatalf("waiting call = %v, want %v", err, tc.want)
			}
			if d := <-downs; !errors.Is(d.Reason, tc.want) {
				t.Fatalf("Down = %v, want %v", d.Reason, tc.want)
			}
			if sys.Alive(pr.Ref()) {
				t.Fatal("alive after it ended")
			}
			if err := pr.Start(nil); !errors.Is(err, actor.ErrNotFound) {
				t.Fatalf("Start after the end = %v", err)
			}
		})
	}
}

var errBoom = errors.New("boom")

// Shutting down a system does not wait for a prepared actor's shutdown
// timeout: it was never started.
func TestShutdownEndsPreparedActorsAtOnce(t *testing.T) {
	sys := actor.NewSystem(actor.Config{Node: "test"})
	if _, err := sys.Prepare(&initOrder{}, actor.Options{ShutdownTimeout: time.Minute}); err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	go func() { sys.Shutdown(context.Background()); close(done) }()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("Shutdown waited on a prepared actor")
	}
}
