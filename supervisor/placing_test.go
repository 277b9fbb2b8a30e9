package supervisor

import (
	"testing"

	"github.com/cohort-go/cohort/ring"
)

// What placement depends on changes with the nodes that run the
// supervisor, their kinds and their roles, and with nothing else.
func TestPlacingDependsOnlyOnNodesRunningTheSupervisor(t *testing.T) {
	d := &Distributed{name: "users"}
	d.runs = ring.Filter{Key: "dsup:users", Match: func(m ring.Member) bool { return m.RunsSupervisor("users") }}
	a := ring.Member{ID: "a", Kinds: []string{"counter"}, Supervisors: []string{"users"}}
	b := ring.Member{ID: "b", Kinds: []string{"counter"}}
	base := d.placing([]ring.Member{a, b})
	same := [][]ring.Member{
		{a},
		{a, {ID: "b", Kinds: []string{"counter", "other"}}},
		{a, {ID: "b", Kinds: []string{"counter"}, Supervisors: []string{"orders"}}},
		{a, b, {ID: "c", Kinds: []string{"counter"}}},
	}
	for i, ms := range same {
		if got := d.placing(ms); got != base {
			t.Errorf("case %d: placing changed with a node that does not run the supervisor: %q, was %q", i, got, base)
		}
	}
	differ := [][]ring.Member{
		{},
		{a, {ID: "b", Kinds: []string{"counter"}, Supervisors: []string{"users"}}},
		{{ID: "a", Kinds: []string{"counter", "x"}, Supervisors: []string{"users"}}},
		{{ID: "a", Kinds: []string{"counter"}, Roles: []string{"edge"}, Supervisors: []string{"users"}}},
	}
	for i, ms := range differ {
		if got := d.placing(ms); got == base {
			t.Errorf("case %d: placing did not change: %q", i, got)
		}
	}
}
