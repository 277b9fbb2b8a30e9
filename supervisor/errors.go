package supervisor

import (
	"errors"
	"fmt"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// Sentinel errors of the supervisor package; test for them with errors.Is.
var (
	// ErrInvalidSpec: a supervisor or child spec is malformed (missing
	// Start, negative intensity, unknown strategy, duplicate or empty id…).
	ErrInvalidSpec = errors.New("supervisor: invalid spec")
	// ErrIntensity: the supervisor exited because its children restarted
	// too often. The exit reason is an *IntensityError.
	ErrIntensity = errors.New("supervisor: restart intensity exceeded")
	// ErrChildNotFound: no child with that id or Ref.
	ErrChildNotFound = errors.New("supervisor: no such child")
	// ErrMaxChildren: a dynamic supervisor already has MaxChildren children.
	ErrMaxChildren = errors.New("supervisor: max children reached")
	// ErrChildRunning: the child is running; terminate it first.
	ErrChildRunning = errors.New("supervisor: child is running")
	// ErrStartChild: a child failed to start.
	ErrStartChild = errors.New("supervisor: child failed to start")
	// ErrLeadershipLost: a singleton's term ended. It is the exit reason
	// a singleton's child gets when the term ends under it (lease lost,
	// leader key deleted), and Term.Err wraps it; the error also wraps
	// the election's reason (election.ErrEpochLost, ErrLeaderKeyLost,
	// ErrResigned).
	ErrLeadershipLost = errors.New("supervisor: singleton leadership lost")
	// ErrFenced: a write guarded by a singleton term's fencing token was
	// rejected by etcd because the term has ended.
	ErrFenced = errors.New("supervisor: fenced write rejected: stale token")
	// ErrNoTerm: a child that needs a singleton term (Fenced,
	// NestedFenced) was started outside a Singleton.
	ErrNoTerm = errors.New("supervisor: no singleton term")
	// ErrSingletonRunning: a singleton with this id already runs on this
	// node's session; one node takes part in a singleton's election once.
	ErrSingletonRunning = errors.New("supervisor: singleton already running on this node")
)

// IntensityError is the exit reason of a supervisor whose children
// restarted more than MaxRestarts times within Period.
type IntensityError struct {
	Supervisor  string
	MaxRestarts int
	Period      time.Duration
	LastChild   string
	LastReason  error
}

func (e *IntensityError) Error() string {
	return fmt.Sprintf("supervisor %s: restart intensity exceeded: more than %d restarts in %v (last: child %q exited: %v)",
		e.Supervisor, e.MaxRestarts, e.Period, e.LastChild, e.LastReason)
}

// Is makes errors.Is(err, ErrIntensity) hold.
func (e *IntensityError) Is(target error) bool { return target == ErrIntensity }

// Unwrap returns the last child's exit reason, unless it was a normal one
// (actor.IsNormal): an intensity exit is abnormal whatever the last exit
// was, so a transient parent restarts the supervisor every time.
func (e *IntensityError) Unwrap() error {
	if actor.IsNormal(e.LastReason) {
		return nil
	}
	return e.LastReason
}
