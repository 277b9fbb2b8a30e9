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
