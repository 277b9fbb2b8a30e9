package cohort_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/registry"
	"github.com/cohort-go/cohort/supervisor"
)

// WaitName returns once a singleton started on one node has registered its
// name, as seen from another node; it is bounded by ctx and ends with
// ErrStopped when its node stops.
func TestWaitName(t *testing.T) {
	nodes := startCluster(t, cohort.Config{}, "a", "b")
	a, b := nodes[0], nodes[1]
	ctx := timeout(t, 60*time.Second)

	short, cancel := context.WithTimeout(ctx, 100*time.Millisecond)
	start := time.Now()
	_, err := b.WaitName(short, "billing")
	cancel()
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitName for a name nobody holds = %v, want DeadlineExceeded", err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("WaitName outlived its 100ms context by %v", el)
	}
	// A call to the name before it is registered says what to do.
	if _, err := b.Call(ctx, actor.Name("billing"), "status"); !errors.Is(err, actor.ErrNotFound) || !strings.Contains(err.Error(), "Node.WaitName") {
		t.Fatalf("call to a name nobody holds = %v, want ErrNotFound pointing at WaitName", err)
	}

	type result struct {
		ref actor.Ref
		err error
	}
	got := make(chan result, 1)
	go func() {
		ref, err := b.WaitName(ctx, "billing")
		got <- result{ref, err}
	}()
	newBilling := func() actor.Actor { return &exampleCounter{} }
	if _, err := a.Supervise(ctx, a.Singleton(supervisor.Spawn("billing", newBilling, actor.Options{}))); err != nil {
		t.Fatal(err)
	}
	var r result
	select {
	case r = <-got:
	case <-time.After(20 * time.Second):
		t.Fatal("WaitName did not return after the singleton started")
	}
	if r.err != nil || r.ref.Node != "a" {
		t.Fatalf("WaitName = %v, %v; want a Ref on node a", r.ref, r.err)
	}
	if v, err := b.Call(ctx, actor.Name("billing"), "status"); err != nil || v != "ok" {
		t.Fatalf("call after WaitName = %v, %v", v, err)
	}
	// Registered already: at once.
	if ref, err := a.WaitName(ctx, "billing"); err != nil || ref != r.ref {
		t.Fatalf("WaitName for a registered name = %v, %v; want %v", ref, err, r.ref)
	}
	if _, err := a.WaitName(ctx, "bad/name"); !errors.Is(err, registry.ErrInvalidName) {
		t.Fatalf("WaitName for a malformed name = %v, want ErrInvalidName", err)
	}

	go func() {
		ref, err := b.WaitName(ctx, "never")
		got <- result{ref, err}
	}()
	time.Sleep(50 * time.Millisecond) // most likely waiting by now; either way it must end
	if err := b.Stop(ctx); err != nil {
		t.Fatal(err)
	}
	select {
	case r = <-got:
	case <-time.After(10 * time.Second):
		t.Fatal("WaitName did not end when its node stopped")
	}
	if !errors.Is(r.err, cohort.ErrStopped) {
		t.Fatalf("WaitName pending while its node stopped = %v, want ErrStopped", r.err)
	}
	if _, err := b.WaitName(ctx, "billing"); !errors.Is(err, cohort.ErrStopped) {
		t.Fatalf("WaitName on a stopped node = %v, want ErrStopped", err)
	}
}
