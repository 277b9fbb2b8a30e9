package supervisor

import (
	"context"

	"github.com/cohort-go/cohort/actor"
)

// ChildInfo describes one child, as WhichChildren reports it.
type ChildInfo struct {
	ID      string
	Ref     actor.Ref // zero when the child is not running
	Running bool
	Kind    Kind
	Restart Restart
}

// Counts is what CountChildren reports.
type Counts struct {
	Specs       int // child specs held
	Active      int // children running
	Supervisors int
	Workers     int
}

// Ref addresses a supervisor. Its methods are calls to the supervisor actor
// and fail with actor.ErrNotFound once it has exited.
type Ref struct {
	sys    *actor.System
	target actor.Target
	ref    actor.Ref
}

// Client returns a Ref for the supervisor at target (a Ref or a registered
// name), for instance a nested supervisor found through WhichChildren.
func Client(sys *actor.System, target actor.Target) *Ref {
	r := &Ref{sys: sys, target: target}
	if ref, ok := target.(actor.Ref); ok {
		r.ref = ref
	}
	return r
}

// Ref returns the supervisor actor's Ref (zero for a Client made from a
// name).
func (r *Ref) Ref() actor.Ref { return r.ref }

// WhichChildren lists the children in start order.
func (r *Ref) WhichChildren(ctx context.Context) ([]ChildInfo, error) {
	return actor.Call[[]ChildInfo](ctx, r.sys, r.target, whichChildren{})
}

// CountChildren counts the children.
func (r *Ref) CountChildren(ctx context.Context) (Counts, error) {
	return actor.Call[Counts](ctx, r.sys, r.target, countChildren{})
}

// StartChild adds and starts a child. In a static supervisor its id must
// be new; in a dynamic supervisor an empty id is generated, and the start
// fails with ErrMaxChildren when MaxChildren children exist. A child whose
// start declines with actor.Ignore returns the zero Ref and no error: a
// static supervisor keeps its spec, not running; a dynamic one forgets it.
func (r *Ref) StartChild(ctx context.Context, c Child) (actor.Ref, error) {
	return actor.Call[actor.Ref](ctx, r.sys, r.target, startChild{spec: c})
}

// TerminateChild stops the child with this id by its shutdown spec. A
// static supervisor keeps the spec (see RestartChild, DeleteChild), except
// for temporary children; a dynamic supervisor forgets it. In a dynamic
// supervisor where several children share the id it fails with
// ErrInvalidSpec: stop one with TerminateChildRef.
func (r *Ref) TerminateChild(ctx context.Context, id string) error {
	_, err := r.sys.Call(ctx, r.target, terminateChild{id: id})
	return err
}

// TerminateChildRef stops the child running as ref.
func (r *Ref) TerminateChildRef(ctx context.Context, ref actor.Ref) error {
	_, err := r.sys.Call(ctx, r.target, terminateChild{ref: ref})
	return err
}

// RestartChild starts a terminated child of a static supervisor again.
func (r *Ref) RestartChild(ctx context.Context, id string) (actor.Ref, error) {
	return actor.Call[actor.Ref](ctx, r.sys, r.target, restartChild{id: id})
}

// DeleteChild removes a terminated child's spec.
func (r *Ref) DeleteChild(ctx context.Context, id string) error {
	_, err := r.sys.Call(ctx, r.target, deleteChild{id: id})
	return err
}

// Stop stops the supervisor: its children stop in reverse start order,
// then it exits with actor.Shutdown.
func (r *Ref) Stop(ctx context.Context) error {
	return r.sys.Stop(ctx, r.target, actor.Shutdown)
}
