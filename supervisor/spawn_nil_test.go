package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// A Spawn with a nil factory is an invalid spec, reported where the spec
// is validated: never a panic in the start function, never a tree that
// dies later.
func TestSpawnNilFactory(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	bad := supervisor.Spawn("p", nil, actor.Options{})
	check := func(t *testing.T, err error) {
		t.Helper()
		if !errors.Is(err, supervisor.ErrInvalidSpec) {
			t.Fatalf("err = %v, want ErrInvalidSpec", err)
		}
		if !strings.Contains(err.Error(), "nil") || !strings.Contains(err.Error(), `"p"`) {
			t.Fatalf("err = %v, want it to name the child and the nil factory", err)
		}
	}
	t.Run("Start", func(t *testing.T) {
		_, err := supervisor.Start(ctx, sys, supervisor.Spec{Children: []supervisor.Child{bad}})
		check(t, err)
	})
	t.Run("StartChild", func(t *testing.T) {
		s, err := supervisor.StartDynamic(ctx, sys, supervisor.DynamicSpec{})
		if err != nil {
			t.Fatal(err)
		}
		defer s.Stop(ctx)
		_, err = s.StartChild(ctx, bad)
		check(t, err)
	})
	t.Run("Nested", func(t *testing.T) {
		_, err := supervisor.Start(ctx, sys, supervisor.Spec{Children: []supervisor.Child{
			supervisor.Nested("n", supervisor.Spec{Children: []supervisor.Child{bad}}),
		}})
		check(t, err)
	})
	t.Run("Start replaced", func(t *testing.T) {
		// A spec whose Start is set afterwards is valid again.
		c := bad
		c.Start = workerChild(newJournal(), "p", supervisor.Permanent).Start
		s, err := supervisor.Start(ctx, sys, supervisor.Spec{Children: []supervisor.Child{c}})
		if err != nil {
			t.Fatal(err)
		}
		s.Stop(ctx)
	})
	t.Run("Singleton", func(t *testing.T) {
		cl := etcdtest.Start(t)
		m := newMember(t, "nilfactory", cl.Endpoints()[0])
		_, err := supervisor.Start(ctx, m.sys, supervisor.Spec{Children: []supervisor.Child{
			supervisor.Singleton(bad, supervisor.SingletonOptions{Session: m.sess}),
		}})
		check(t, err)
	})
}
