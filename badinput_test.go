package cohort_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/registry"
	"github.com/cohort-go/cohort/supervisor"
)

// Supervise with a Spawn given a nil factory fails at once with
// ErrInvalidSpec, bare or wrapped in a Singleton: no panic, no root
// supervisor that dies later.
func TestSuperviseNilFactory(t *testing.T) {
	n := startNode(t, cohort.Config{NodeID: "nilfactory"})
	ctx := context.Background()
	for name, c := range map[string]supervisor.Child{
		"Spawn":     supervisor.Spawn("p", nil, actor.Options{}),
		"Singleton": n.Singleton(supervisor.Spawn("s", nil, actor.Options{})),
	} {
		sup, err := n.Supervise(ctx, c)
		if !errors.Is(err, supervisor.ErrInvalidSpec) {
			if sup != nil {
				sup.Stop(ctx)
			}
			t.Errorf("Supervise(%s with a nil factory) = %v, want ErrInvalidSpec", name, err)
		}
	}
}

// RegisterKind refuses a kind that is not a valid name, and a nil
// factory, with ErrInvalidConfig.
func TestRegisterKindBadInput(t *testing.T) {
	n := startNode(t, cohort.Config{NodeID: "badkind"})
	f := func() actor.Actor { return echo{} }
	for name, tc := range map[string]struct {
		kind string
		f    supervisor.Factory
	}{
		"empty kind":       {"", f},
		"control char":     {"k\x00", f},
		"newline":          {"k\n", f},
		"invalid utf-8":    {"k\xff", f},
		"nil factory":      {"k", nil},
		"over length kind": {string(make([]byte, actor.MaxNameLen+1)), f},
	} {
		if err := n.RegisterKind(tc.kind, tc.f); !errors.Is(err, cohort.ErrInvalidConfig) {
			t.Errorf("%s: RegisterKind = %v, want ErrInvalidConfig", name, err)
		}
	}
	if err := n.RegisterKind("k", f); err != nil {
		t.Fatal(err)
	}
}

// CallName checks its node id and name before looking anything up: a
// malformed one is actor.ErrInvalidName, not ErrNotFound or ErrNodeDown.
func TestCallNameBadInput(t *testing.T) {
	n := startNode(t, cohort.Config{NodeID: "badcallname"})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for name, tc := range map[string]struct{ node, name string }{
		"empty name here":      {n.ID(), ""},
		"control name here":    {n.ID(), "x\x00"},
		"empty name elsewhere": {"other", ""},
		"node with slash":      {"a/b", "x"},
		"control node":         {"a\x01", "x"},
		"empty node":           {"", "x"},
	} {
		_, err := n.CallName(ctx, tc.node, tc.name, "hi")
		if !errors.Is(err, actor.ErrInvalidName) || !errors.Is(err, registry.ErrInvalidName) {
			t.Errorf("%s: CallName(%q, %q) = %v, want ErrInvalidName", name, tc.node, tc.name, err)
		}
	}
	// Well-formed but absent: ErrNotFound here, ErrNodeDown elsewhere.
	if _, err := n.CallName(ctx, n.ID(), "nobody", "hi"); !errors.Is(err, actor.ErrNotFound) {
		t.Errorf("CallName of an unregistered name = %v, want ErrNotFound", err)
	}
	if _, err := n.CallName(ctx, "absent", "x", "hi"); !errors.Is(err, cohort.ErrNodeDown) {
		t.Errorf("CallName on an absent node = %v, want ErrNodeDown", err)
	}
}

// A distributed supervisor needs a name it can keep in etcd keys.
func TestDistributedSupervisorBadName(t *testing.T) {
	cl := etcdtest.Start(t)
	n := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	for _, name := range []string{"", " ", "a/b", "x\x00"} {
		_, err := n.DistributedSupervisor(context.Background(), name, supervisor.DistributedOptions{})
		if !errors.Is(err, supervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "supervisor name") || strings.Contains(err.Error(), "child id") {
			t.Errorf("DistributedSupervisor(%q) = %v, want ErrInvalidSpec about the supervisor name", name, err)
		}
	}
}

// Calls, casts, sends and terminations of a malformed child id fail at
// once with ErrInvalidSpec, not as a child not found or a timeout.
func TestDistributedBadChildID(t *testing.T) {
	cl := etcdtest.Start(t)
	n := startNode(t, cohort.Config{NodeID: "a", Endpoints: cl.Endpoints(), LeaseTTL: 2 * time.Second})
	d, err := n.DistributedSupervisor(context.Background(), "users", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	for _, id := range []string{"", " x", "a/b", "x\x00"} {
		_, callErr := d.Call(ctx, id, "hi")
		_, whereErr := d.Whereis(id)
		for op, err := range map[string]error{
			"Whereis":        whereErr,
			"Call":           callErr,
			"Cast":           d.Cast(ctx, id, "hi"),
			"Send":           d.Send(ctx, id, "hi"),
			"TerminateChild": d.TerminateChild(ctx, id),
		} {
			if !errors.Is(err, supervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "child id") {
				t.Errorf("%s(%q) = %v, want ErrInvalidSpec about the child id", op, id, err)
			}
		}
	}
}
