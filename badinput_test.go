package cohort_test

import (
	"context"
	"errors"
	"testing"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
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
