// Package supervisor provides OTP supervision for actors: static supervisors
// with the one_for_one, one_for_all and rest_for_one strategies, dynamic
// supervisors, restart intensity, and shutdown by timeout or brutal kill. A
// supervisor is itself an actor and a child like any other, so trees nest
// with no extra API.
package supervisor

import (
	"context"
	"fmt"
	"math"
	"time"

	"github.com/cohort-go/cohort/actor"
	"go.uber.org/zap"
)

// Strategy says which children a supervisor restarts when one exits.
type Strategy uint8

const (
	// OneForOne restarts only the child that exited.
	OneForOne Strategy = iota
	// OneForAll stops every other child and restarts them all.
	OneForAll
	// RestForOne stops the children started after the one that exited, and
	// restarts it and them, in start order.
	RestForOne
)

func (s Strategy) String() string {
	switch s {
	case OneForOne:
		return "one_for_one"
	case OneForAll:
		return "one_for_all"
	case RestForOne:
		return "rest_for_one"
	}
	return fmt.Sprintf("strategy(%d)", uint8(s))
}

// Restart says when a child that exited is restarted.
type Restart uint8

const (
	// Permanent children are always restarted.
	Permanent Restart = iota
	// Transient children are restarted only after an abnormal exit (a reason
	// other than actor.Normal or actor.Shutdown).
	Transient
	// Temporary children are never restarted.
	Temporary
)

func (r Restart) String() string {
	switch r {
	case Permanent:
		return "permanent"
	case Transient:
		return "transient"
	case Temporary:
		return "temporary"
	}
	return fmt.Sprintf("restart(%d)", uint8(r))
}

// Kind says whether a child is a worker or a supervisor.
type Kind uint8

const (
	// Worker is any actor that is not a supervisor.
	Worker Kind = iota
	// Supervisor marks a child that is itself a supervisor.
	Supervisor
)

func (k Kind) String() string {
	if k == Supervisor {
		return "supervisor"
	}
	return "worker"
}

// Shutdown values with special meaning in Child.Shutdown.
const (
	// BrutalKill abandons the child at once; its Terminate does not run.
	BrutalKill time.Duration = -1
	// Infinity waits for the child to terminate however long it takes; the
	// default for supervisors.
	Infinity time.Duration = math.MaxInt64
	// DefaultWorkerShutdown is the default shutdown timeout of workers, as
	// in OTP.
	DefaultWorkerShutdown = 5 * time.Second
)

// StartFunc starts a child and returns its Ref. It runs in the supervisor's
// goroutine and must return promptly; extra holds a dynamic supervisor's
// ExtraArguments (nil otherwise).
type StartFunc func(ctx context.Context, sys *actor.System, extra []any) (actor.Ref, error)

// Child is a child specification.
type Child struct {
	// ID names the child within its supervisor; required and unique in a
	// static supervisor, optional in a dynamic one.
	ID string
	// Start starts the child. Required.
	Start StartFunc
	// Restart is the restart type. Default Permanent.
	Restart Restart
	// Shutdown is how long the supervisor waits for the child's Terminate
	// when stopping it: a duration, BrutalKill, or Infinity. Zero means
	// DefaultWorkerShutdown for workers and Infinity for supervisors.
	Shutdown time.Duration
	// Kind is Worker (default) or Supervisor.
	Kind Kind

	// invalid, set by a constructor given bad input (Spawn with a nil
	// factory), says why the spec has no Start; validate reports it.
	invalid string
}

func (c Child) shutdown() time.Duration {
	switch {
	case c.Shutdown != 0:
		return c.Shutdown
	case c.Kind == Supervisor:
		return Infinity
	}
	return DefaultWorkerShutdown
}

func (c Child) validate() error {
	if c.Start == nil {
		if c.invalid != "" {
			return fmt.Errorf("%w: child %q: %s", ErrInvalidSpec, c.ID, c.invalid)
		}
		return fmt.Errorf("%w: child %q has no Start function", ErrInvalidSpec, c.ID)
	}
	if c.Restart > Temporary {
		return fmt.Errorf("%w: child %q has unknown restart type %d", ErrInvalidSpec, c.ID, c.Restart)
	}
	if c.Kind > Supervisor {
		return fmt.Errorf("%w: child %q has unknown kind %d", ErrInvalidSpec, c.ID, c.Kind)
	}
	if c.Shutdown < 0 && c.Shutdown != BrutalKill {
		return fmt.Errorf("%w: child %q has negative shutdown %v (use BrutalKill)", ErrInvalidSpec, c.ID, c.Shutdown)
	}
	return nil
}

// Spawn returns a Child that spawns the actor made by newActor with opts.
// When a dynamic supervisor has ExtraArguments, Init receives
// append(extra, opts.Args) as a []any, as OTP prepends extra arguments.
// A nil newActor makes an invalid spec: the supervisor it is given to
// (Start, StartChild, Singleton…) fails with an error wrapping
// ErrInvalidSpec.
func Spawn(id string, newActor func() actor.Actor, opts actor.Options) Child {
	if newActor == nil {
		return Child{ID: id, invalid: "supervisor.Spawn was given a nil actor factory"}
	}
	return Child{ID: id, Start: func(ctx context.Context, sys *actor.System, extra []any) (actor.Ref, error) {
		o := opts
		if len(extra) > 0 {
			o.Args = append(append([]any(nil), extra...), opts.Args)
		}
		return sys.Spawn(ctx, newActor(), o)
	}}
}

// Nested returns a Child that is a supervisor started from spec: trees nest
// with no other API.
func Nested(id string, spec Spec) Child {
	return Child{ID: id, Kind: Supervisor, Start: func(ctx context.Context, sys *actor.System, _ []any) (actor.Ref, error) {
		s, err := Start(ctx, sys, spec)
		if err != nil {
			return actor.Ref{}, err
		}
		return s.Ref(), nil
	}}
}

// NestedDynamic returns a Child that is a dynamic supervisor.
func NestedDynamic(id string, spec DynamicSpec) Child {
	return Child{ID: id, Kind: Supervisor, Start: func(ctx context.Context, sys *actor.System, _ []any) (actor.Ref, error) {
		s, err := StartDynamic(ctx, sys, spec)
		if err != nil {
			return actor.Ref{}, err
		}
		return s.Ref(), nil
	}}
}

// Intensity bounds restarts: more than MaxRestarts within Period makes the
// supervisor stop all its children and exit with an *IntensityError. The
// zero value means OTP's default, 1 restart in 5 seconds; to allow no
// restart at all set Period and leave MaxRestarts 0.
type Intensity struct {
	MaxRestarts int
	Period      time.Duration
}

func (i Intensity) resolve() (Intensity, error) {
	if i.MaxRestarts < 0 || i.Period < 0 {
		return i, fmt.Errorf("%w: intensity %d in %v: neither may be negative", ErrInvalidSpec, i.MaxRestarts, i.Period)
	}
	if i == (Intensity{}) {
		return Intensity{MaxRestarts: 1, Period: 5 * time.Second}, nil
	}
	if i.Period == 0 {
		return i, fmt.Errorf("%w: intensity %d restarts needs a Period", ErrInvalidSpec, i.MaxRestarts)
	}
	return i, nil
}

// Spec configures a static supervisor. The zero value (with children added)
// works: one_for_one, 1 restart in 5 s.
type Spec struct {
	// Name, if set, registers the supervisor in the local name table.
	Name string
	// Strategy is the restart strategy. Default OneForOne.
	Strategy Strategy
	// Intensity bounds restarts. Default 1 in 5 s.
	Intensity Intensity
	// Children start in order and stop in reverse order.
	Children []Child
	// Listener, if set, receives every lifecycle event, synchronously in
	// the supervisor's goroutine: it must not block, and a panic in it
	// crashes the supervisor (which stops its children first).
	Listener func(Event)
	// Logger receives lifecycle events. Default: the system's logger.
	Logger *zap.Logger
}

// DynamicSpec configures a dynamic supervisor: one_for_one, children started
// on demand with StartChild and identified by Ref.
type DynamicSpec struct {
	// Name, if set, registers the supervisor in the local name table.
	Name string
	// Intensity bounds restarts. Default 1 in 5 s.
	Intensity Intensity
	// MaxChildren bounds the number of children; StartChild beyond it fails
	// with ErrMaxChildren. Zero means no bound.
	MaxChildren int
	// ExtraArguments are passed to every child's StartFunc.
	ExtraArguments []any
	// Listener, if set, receives every lifecycle event, synchronously in
	// the supervisor's goroutine: it must not block, and a panic in it
	// crashes the supervisor (which stops its children first).
	Listener func(Event)
	// Logger receives lifecycle events. Default: the system's logger.
	Logger *zap.Logger
}
