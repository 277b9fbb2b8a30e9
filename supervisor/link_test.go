package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/supervisor"
)

// waitDead waits until none of refs is alive.
func waitDead(t *testing.T, sys *actor.System, what string, refs ...actor.Ref) {
	t.Helper()
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, what, func() bool {
		for _, r := range refs {
			if sys.Alive(r) {
				return false
			}
		}
		return true
	})
}

// A supervisor killed, or brutally killed by its parent, takes its
// children with it, as linked processes go with an OTP supervisor: none
// is left running unsupervised, and its parent can start it again.
func TestKilledSupervisorTakesItsChildren(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{
		workerChild(j, "x", supervisor.Permanent), workerChild(j, "y", supervisor.Permanent)}})
	if err != nil {
		t.Fatal(err)
	}
	x, y := childRef(t, s, "x"), childRef(t, s, "y")
	if err := sys.Kill(s.Ref()); err != nil {
		t.Fatal(err)
	}
	waitDead(t, sys, "the killed supervisor's children to go", x, y)

	inner := supervisor.Nested("inner", supervisor.Spec{Children: []supervisor.Child{
		supervisor.Spawn("named", func() actor.Actor { return &worker{id: "named", j: j} }, actor.Options{Name: "named"})}})
	inner.Shutdown = supervisor.BrutalKill
	top, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{inner}})
	if err != nil {
		t.Fatal(err)
	}
	grandchild := childRef(t, supervisor.Client(sys, childRef(t, top, "inner")), "named")
	if err := top.TerminateChild(context.Background(), "inner"); err != nil {
		t.Fatal(err)
	}
	waitDead(t, sys, "the brutally killed supervisor's child to go", grandchild)
	// Its child's name is free again: the supervisor restarts.
	if _, err := top.RestartChild(context.Background(), "inner"); err != nil {
		t.Fatalf("restart of the killed supervisor = %v", err)
	}
}

// An intensity exit is abnormal whatever the last child's exit was: a
// transient parent restarts the supervisor whether its last child crashed
// or stopped normally.
func TestIntensityExitIsAbnormalEvenAfterANormalExit(t *testing.T) {
	for _, last := range []error{errCrash, actor.Normal, actor.Shutdown} {
		err := &supervisor.IntensityError{Supervisor: "s", MaxRestarts: 0, Period: time.Second, LastChild: "x", LastReason: last}
		if actor.IsNormal(err) {
			t.Errorf("an intensity exit after a %v exit counts as normal", last)
		}
	}
	sys := newSystem(t)
	j := newJournal()
	inner := supervisor.Nested("inner", supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: 0, Period: time.Minute},
		Children: []supervisor.Child{workerChild(j, "x", supervisor.Permanent)}})
	inner.Restart = supervisor.Transient
	top, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: 5, Period: time.Minute}, Children: []supervisor.Child{inner}})
	if err != nil {
		t.Fatal(err)
	}
	first := childRef(t, top, "inner")
	_, down := sys.Monitor(first)
	if err := sys.Cast(context.Background(), childRef(t, supervisor.Client(sys, first), "x"), exitWith{actor.Normal}); err != nil {
		t.Fatal(err)
	}
	<-down
	etcdtest.WaitFor(t, 10*time.Second, time.Millisecond, "the transient supervisor to be restarted", func() bool {
		cs, err := top.WhichChildren(context.Background())
		return err == nil && len(cs) == 1 && cs[0].Running && cs[0].Ref != first
	})
}

// flaky starts once, then fails its Init every time.
type flaky struct{ starts *atomic.Int32 }

var errInitFails = errors.New("init fails from the second start")

func (f *flaky) Init(*actor.Context, any) error {
	if f.starts.Add(1) > 1 {
		return errInitFails
	}
	return nil
}

func (f *flaky) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

func (f *flaky) HandleCast(*actor.Context, any) error { return errCrash }

// A supervisor that gives up because its restarts keep failing says why:
// the last start's error, not a nil reason.
func TestIntensityExceededByFailedRestartsSaysWhy(t *testing.T) {
	sys := newSystem(t)
	var starts atomic.Int32
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: 3, Period: time.Minute},
		Children:  []supervisor.Child{supervisor.Spawn("a", func() actor.Actor { return &flaky{starts: &starts} }, actor.Options{})}})
	if err != nil {
		t.Fatal(err)
	}
	_, down := sys.Monitor(s.Ref())
	if err := sys.Cast(context.Background(), childRef(t, s, "a"), "crash"); err != nil {
		t.Fatal(err)
	}
	d := <-down
	var ie *supervisor.IntensityError
	if !errors.As(d.Reason, &ie) || !errors.Is(ie.LastReason, errInitFails) || !strings.Contains(d.Reason.Error(), errInitFails.Error()) {
		t.Fatalf("supervisor exit = %v; want an IntensityError whose last reason is the failing Init", d.Reason)
	}
}

// Bad input to Start and to Spawn options fails with a clear error.
func TestStartWithoutSystemAndBadFullPolicy(t *testing.T) {
	if _, err := supervisor.Start(context.Background(), nil, supervisor.Spec{}); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Errorf("Start with a nil system = %v, want ErrInvalidSpec", err)
	}
	if _, err := supervisor.StartDynamic(context.Background(), nil, supervisor.DynamicSpec{}); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Errorf("StartDynamic with a nil system = %v, want ErrInvalidSpec", err)
	}
	sys := newSystem(t)
	if _, err := sys.Spawn(context.Background(), &worker{j: newJournal()}, actor.Options{WhenFull: 7}); !errors.Is(err, actor.ErrInvalidOption) {
		t.Errorf("spawn with WhenFull 7 = %v, want ErrInvalidOption", err)
	}
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s.TerminateChild(context.Background(), "nope"); !errors.Is(err, supervisor.ErrChildNotFound) || strings.Contains(err.Error(), "nil ref") {
		t.Errorf("terminate of an unknown child = %v", err)
	}
}

// A system shutdown stops a supervisor's children as it stops every actor:
// the supervisor reports them stopped (or exited), not abandoned, and does
// not restart them.
func TestSystemShutdownReportsChildrenStopped(t *testing.T) {
	sys := actor.NewSystem(actor.Config{Node: "sup-test"})
	j := newJournal()
	events := make(chan supervisor.Event, 16)
	if _, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Children: []supervisor.Child{workerChild(j, "x", supervisor.Permanent), workerChild(j, "y", supervisor.Permanent)},
		Listener: func(e supervisor.Event) { events <- e },
	}); err != nil {
		t.Fatal(err)
	}
	if err := sys.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	close(events)
	// The system stops every actor at once: a child is reported stopped
	// by its supervisor, or exited if its exit reached the supervisor
	// first; never abandoned, nor restarted.
	ended := map[string]bool{}
	for e := range events {
		switch e.Type {
		case supervisor.ChildStopped, supervisor.ChildExited:
			ended[e.ChildID] = true
		case supervisor.ChildStarted:
		default:
			t.Errorf("child %s reported %v at shutdown: %v", e.ChildID, e.Type, e.Reason)
		}
	}
	if len(ended) != 2 {
		t.Errorf("children reported stopped or exited: %v, want x and y", ended)
	}
}

// declines returns actor.Ignore from Init.
type declines struct{}

func (declines) Init(*actor.Context, any) error { return actor.Ignore }

func (declines) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

// A child that declines to start with actor.Ignore, as OTP's ignore, is
// not a failure: the supervisor starts, keeps its spec not running, and
// starts the next children.
func TestIgnoredChildIsKeptNotRunning(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{
		supervisor.Spawn("quiet", func() actor.Actor { return declines{} }, actor.Options{}),
		workerChild(j, "after", supervisor.Permanent)}})
	if err != nil {
		t.Fatalf("start with an ignored child = %v", err)
	}
	cs, err := s.WhichChildren(context.Background())
	if err != nil || len(cs) != 2 || cs[0].ID != "quiet" || cs[0].Running || !cs[1].Running {
		t.Fatalf("children = %+v, %v; want quiet kept not running, after running", cs, err)
	}
	if ref, err := s.RestartChild(context.Background(), "quiet"); err != nil || !ref.IsZero() {
		t.Fatalf("restart of an ignoring child = %v, %v; want the zero Ref and no error", ref, err)
	}
	dyn, err := supervisor.StartDynamic(context.Background(), sys, supervisor.DynamicSpec{})
	if err != nil {
		t.Fatal(err)
	}
	ref, err := dyn.StartChild(context.Background(), supervisor.Spawn("", func() actor.Actor { return declines{} }, actor.Options{}))
	if err != nil || !ref.IsZero() {
		t.Fatalf("dynamic start of an ignoring child = %v, %v", ref, err)
	}
	if n, err := dyn.CountChildren(context.Background()); err != nil || n.Specs != 0 {
		t.Fatalf("dynamic supervisor counts %+v, %v after an ignored start; want nothing kept", n, err)
	}
	if _, err := sys.Spawn(context.Background(), declines{}, actor.Options{}); !errors.Is(err, actor.Ignore) {
		t.Fatalf("spawn of an actor that declines = %v, want Ignore", err)
	}
}

// In a dynamic supervisor, where ids need not be unique, TerminateChild of
// an id several children share is refused rather than stopping one of
// them at random; TerminateChildRef stops the one meant.
func TestDynamicTerminateOfASharedIDIsRefused(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	dyn, err := supervisor.StartDynamic(context.Background(), sys, supervisor.DynamicSpec{})
	if err != nil {
		t.Fatal(err)
	}
	first, err := dyn.StartChild(context.Background(), workerChild(j, "k", supervisor.Temporary))
	if err != nil {
		t.Fatal(err)
	}
	second, err := dyn.StartChild(context.Background(), workerChild(j, "k", supervisor.Temporary))
	if err != nil {
		t.Fatal(err)
	}
	if err := dyn.TerminateChild(context.Background(), "k"); !errors.Is(err, supervisor.ErrInvalidSpec) || !strings.Contains(err.Error(), "TerminateChildRef") {
		t.Fatalf("terminate of a shared id = %v; want ErrInvalidSpec pointing at TerminateChildRef", err)
	}
	if !sys.Alive(first) || !sys.Alive(second) {
		t.Fatal("a child was stopped by a refused terminate")
	}
	if err := dyn.TerminateChildRef(context.Background(), second); err != nil {
		t.Fatal(err)
	}
	if err := dyn.TerminateChild(context.Background(), "k"); err != nil {
		t.Fatalf("terminate of an id one child has = %v", err)
	}
	if sys.Alive(first) {
		t.Fatal("the last child with the id still runs")
	}
}
