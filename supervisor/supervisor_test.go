package supervisor_test

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"
)

// journal records what workers do, in order, across goroutines.
type journal struct {
	mu      sync.Mutex
	entries []string
	changed chan struct{}
}

func newJournal() *journal { return &journal{changed: make(chan struct{}, 1)} }

func (j *journal) add(format string, args ...any) {
	j.mu.Lock()
	j.entries = append(j.entries, fmt.Sprintf(format, args...))
	j.mu.Unlock()
	select {
	case j.changed <- struct{}{}:
	default:
	}
}

func (j *journal) take() []string {
	j.mu.Lock()
	defer j.mu.Unlock()
	out := j.entries
	j.entries = nil
	return out
}

// waitFor waits until the journal holds an entry equal to want.
func (j *journal) waitFor(t *testing.T, want string) {
	t.Helper()
	deadline := time.After(10 * time.Second)
	for {
		j.mu.Lock()
		found := slices.Contains(j.entries, want)
		j.mu.Unlock()
		if found {
			return
		}
		select {
		case <-j.changed:
		case <-deadline:
			t.Fatalf("journal never showed %q; has %v", want, j.take())
		}
	}
}

// worker logs its start and terminate and exits when told.
type worker struct {
	id   string
	j    *journal
	slow time.Duration
	args any
}

type exitWith struct{ Reason error }

func (w *worker) Init(_ *actor.Context, args any) error {
	w.args = args
	w.j.add("start %s", w.id)
	return nil
}

func (w *worker) HandleCall(_ *actor.Context, msg any) (any, error) {
	if msg == "args" {
		return w.args, nil
	}
	return msg, nil
}

func (w *worker) HandleCast(_ *actor.Context, msg any) error {
	if m, ok := msg.(exitWith); ok {
		return m.Reason
	}
	return nil
}

func (w *worker) Terminate(_ *actor.Context, reason error) {
	if w.slow > 0 {
		time.Sleep(w.slow)
	}
	w.j.add("stop %s", w.id)
}

func workerChild(j *journal, id string, restart supervisor.Restart) supervisor.Child {
	c := supervisor.Spawn(id, func() actor.Actor { return &worker{id: id, j: j} }, actor.Options{})
	c.Restart = restart
	return c
}

var errCrash = errors.New("crash")

func newSystem(t *testing.T) *actor.System {
	t.Helper()
	sys := actor.NewSystem(actor.Config{Node: "sup-test"})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	return sys
}

func childRef(t *testing.T, s *supervisor.Ref, id string) actor.Ref {
	t.Helper()
	cs, err := s.WhichChildren(context.Background())
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range cs {
		if c.ID == id {
			return c.Ref
		}
	}
	t.Fatalf("no child %q in %+v", id, cs)
	return actor.Ref{}
}

// crashChild makes a child exit with reason and waits until the supervisor
// has dealt with it (its Down was handled before the next call).
func crashChild(t *testing.T, sys *actor.System, s *supervisor.Ref, id string, reason error) actor.Ref {
	t.Helper()
	ref := childRef(t, s, id)
	_, downs := sys.Monitor(ref)
	if err := sys.Cast(context.Background(), ref, exitWith{reason}); err != nil {
		t.Fatal(err)
	}
	<-downs
	// Monitors fire in the order they were set, so the supervisor's Down is
	// queued before this call and handled before it returns.
	if _, err := s.WhichChildren(context.Background()); err != nil {
		t.Fatal(err)
	}
	return ref
}

func TestChildrenStartInOrderStopInReverse(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{
		workerChild(j, "a", supervisor.Permanent),
		workerChild(j, "b", supervisor.Permanent),
		workerChild(j, "c", supervisor.Permanent),
	}})
	if err != nil {
		t.Fatal(err)
	}
	if got := j.take(); !slices.Equal(got, []string{"start a", "start b", "start c"}) {
		t.Fatalf("start order %v", got)
	}
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if got := j.take(); !slices.Equal(got, []string{"stop c", "stop b", "stop a"}) {
		t.Fatalf("stop order %v", got)
	}
}

// OTP: permanent children are always restarted; transient ones only after an
// abnormal exit; temporary ones never (and their spec is dropped).
func TestRestartTypes(t *testing.T) {
	cases := []struct {
		name      string
		restart   supervisor.Restart
		reason    error
		restarted bool
		kept      bool
	}{
		{"permanent exiting normally is restarted", supervisor.Permanent, actor.Normal, true, true},
		{"permanent crashing is restarted", supervisor.Permanent, errCrash, true, true},
		{"transient exiting normally is not restarted", supervisor.Transient, actor.Normal, false, true},
		{"transient exiting with shutdown is not restarted", supervisor.Transient, actor.Shutdown, false, true},
		{"transient crashing is restarted", supervisor.Transient, errCrash, true, true},
		{"temporary crashing is not restarted and is forgotten", supervisor.Temporary, errCrash, false, false},
		{"temporary exiting normally is forgotten", supervisor.Temporary, actor.Normal, false, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			sys := newSystem(t)
			j := newJournal()
			s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{
				workerChild(j, "w", tc.restart),
			}})
			if err != nil {
				t.Fatal(err)
			}
			old := crashChild(t, sys, s, "w", tc.reason)
			cs, err := s.WhichChildren(context.Background())
			if err != nil {
				t.Fatal(err)
			}
			if tc.kept != (len(cs) == 1) {
				t.Fatalf("children after exit: %+v (spec kept: want %v)", cs, tc.kept)
			}
			if tc.kept {
				if cs[0].Running != tc.restarted {
					t.Fatalf("running = %v, want %v", cs[0].Running, tc.restarted)
				}
				if tc.restarted && cs[0].Ref == old {
					t.Fatal("restarted child kept its old Ref")
				}
			}
		})
	}
}

func TestStrategies(t *testing.T) {
	cases := []struct {
		strategy supervisor.Strategy
		crash    string
		want     []string // journal after the crash of "b"
	}{
		{supervisor.OneForOne, "b", []string{"start b"}},
		{supervisor.OneForAll, "b", []string{"stop c", "stop a", "start a", "start b", "start c"}},
		{supervisor.RestForOne, "b", []string{"stop c", "start b", "start c"}},
		{supervisor.RestForOne, "c", []string{"start c"}},
		{supervisor.RestForOne, "a", []string{"stop c", "stop b", "start a", "start b", "start c"}},
	}
	for _, tc := range cases {
		t.Run(fmt.Sprintf("%v crash %s", tc.strategy, tc.crash), func(t *testing.T) {
			sys := newSystem(t)
			j := newJournal()
			s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
				Strategy:  tc.strategy,
				Intensity: supervisor.Intensity{MaxRestarts: 10, Period: time.Minute},
				Children: []supervisor.Child{
					workerChild(j, "a", supervisor.Permanent),
					workerChild(j, "b", supervisor.Permanent),
					workerChild(j, "c", supervisor.Permanent),
				},
			})
			if err != nil {
				t.Fatal(err)
			}
			before := map[string]actor.Ref{"a": childRef(t, s, "a"), "b": childRef(t, s, "b"), "c": childRef(t, s, "c")}
			j.take()
			crashChild(t, sys, s, tc.crash, errCrash)
			// The Down is handled before this call is, so the restart is done.
			if _, err := s.WhichChildren(context.Background()); err != nil {
				t.Fatal(err)
			}
			got := j.take()
			// the crashed child's own terminate ran before the restart
			got = slices.DeleteFunc(got, func(e string) bool { return e == "stop "+tc.crash })
			if !slices.Equal(got, tc.want) {
				t.Fatalf("journal %v, want %v", got, tc.want)
			}
			for id, old := range before {
				restarted := slices.Contains(tc.want, "start "+id)
				if now := childRef(t, s, id); (now != old) != restarted {
					t.Errorf("child %s: ref changed = %v, want %v", id, now != old, restarted)
				}
			}
		})
	}
}

func TestIntensityExceededParentRestartsSupervisor(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	var mu sync.Mutex
	var events []supervisor.Event
	inner := supervisor.Spec{
		Name:      "inner",
		Intensity: supervisor.Intensity{MaxRestarts: 2, Period: time.Minute},
		Children:  []supervisor.Child{workerChild(j, "w", supervisor.Permanent)},
		Listener: func(e supervisor.Event) {
			mu.Lock()
			events = append(events, e)
			mu.Unlock()
		},
	}
	outer, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: 5, Period: time.Minute},
		Children:  []supervisor.Child{supervisor.Nested("inner", inner)},
	})
	if err != nil {
		t.Fatal(err)
	}
	innerRef := childRef(t, outer, "inner")
	_, innerDown := sys.Monitor(innerRef)
	in := supervisor.Client(sys, innerRef)
	for range 2 {
		crashChild(t, sys, in, "w", errCrash)
	}
	// The third restart within the period exceeds MaxRestarts=2.
	ref := childRef(t, in, "w")
	_ = sys.Cast(context.Background(), ref, exitWith{errCrash})
	d := <-innerDown
	var ie *supervisor.IntensityError
	if !errors.Is(d.Reason, supervisor.ErrIntensity) || !errors.As(d.Reason, &ie) || ie.MaxRestarts != 2 {
		t.Fatalf("inner supervisor exit reason = %v, want IntensityError", d.Reason)
	}
	if !strings.Contains(d.Reason.Error(), "restart intensity exceeded") {
		t.Fatalf("reason does not say why: %v", d.Reason)
	}
	// The parent applies its own strategy: the inner supervisor comes back.
	if _, err := outer.WhichChildren(context.Background()); err != nil {
		t.Fatal(err)
	}
	newInner := childRef(t, outer, "inner")
	if newInner.IsZero() || newInner == innerRef {
		t.Fatalf("parent did not restart the inner supervisor: %v", newInner)
	}
	cs, err := supervisor.Client(sys, newInner).WhichChildren(context.Background())
	if err != nil || len(cs) != 1 || !cs[0].Running {
		t.Fatalf("restarted inner supervisor children = %+v, %v", cs, err)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.ContainsFunc(events, func(e supervisor.Event) bool { return e.Type == supervisor.IntensityExceeded }) {
		t.Fatalf("no IntensityExceeded event in %v", events)
	}
}

func TestShutdownTimeoutAbandonsChildAndContinues(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	slow := supervisor.Spawn("slow", func() actor.Actor { return &worker{id: "slow", j: j, slow: 10 * time.Second} }, actor.Options{})
	slow.Shutdown = 50 * time.Millisecond
	var mu sync.Mutex
	var abandoned []string
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Children: []supervisor.Child{workerChild(j, "first", supervisor.Permanent), slow},
		Listener: func(e supervisor.Event) {
			if e.Type == supervisor.ChildAbandoned {
				mu.Lock()
				abandoned = append(abandoned, e.ChildID)
				mu.Unlock()
			}
		},
	})
	if err != nil {
		t.Fatal(err)
	}
	slowRef := childRef(t, s, "slow")
	start := time.Now()
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	if el := time.Since(start); el > 5*time.Second {
		t.Fatalf("stop took %v: the slow child was waited for", el)
	}
	if sys.Alive(slowRef) {
		t.Fatal("abandoned child still reported alive")
	}
	j.waitFor(t, "stop first")
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(abandoned, []string{"slow"}) {
		t.Fatalf("abandoned = %v", abandoned)
	}
}

func TestBrutalKillSkipsTerminate(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	c := workerChild(j, "victim", supervisor.Permanent)
	c.Shutdown = supervisor.BrutalKill
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{c}})
	if err != nil {
		t.Fatal(err)
	}
	ref := childRef(t, s, "victim")
	if err := s.TerminateChild(context.Background(), "victim"); err != nil {
		t.Fatal(err)
	}
	if sys.Alive(ref) {
		t.Fatal("killed child alive")
	}
	if got := j.take(); slices.Contains(got, "stop victim") {
		t.Fatalf("terminate ran on brutal kill: %v", got)
	}
	// A terminated static child keeps its spec and can be restarted.
	if _, err := s.RestartChild(context.Background(), "victim"); err != nil {
		t.Fatal(err)
	}
	if err := s.DeleteChild(context.Background(), "victim"); !errors.Is(err, supervisor.ErrChildRunning) {
		t.Fatalf("delete running child: %v", err)
	}
}

func TestStartFailureStopsStartedChildren(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	boom := errors.New("no database")
	failing := supervisor.Child{ID: "db", Start: func(context.Context, *actor.System, []any) (actor.Ref, error) {
		return actor.Ref{}, boom
	}}
	_, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{
		workerChild(j, "a", supervisor.Permanent), workerChild(j, "b", supervisor.Permanent), failing,
	}})
	if !errors.Is(err, supervisor.ErrStartChild) || !errors.Is(err, boom) {
		t.Fatalf("start = %v", err)
	}
	if got := j.take(); !slices.Equal(got, []string{"start a", "start b", "stop b", "stop a"}) {
		t.Fatalf("journal %v", got)
	}
	if sys.Count() != 0 {
		t.Fatalf("%d actors left", sys.Count())
	}
}

func TestDynamicSupervisor(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	ctx := context.Background()
	d, err := supervisor.StartDynamic(ctx, sys, supervisor.DynamicSpec{
		MaxChildren:    2,
		ExtraArguments: []any{"extra"},
		Intensity:      supervisor.Intensity{MaxRestarts: 3, Period: time.Minute},
	})
	if err != nil {
		t.Fatal(err)
	}
	spec := supervisor.Spawn("", func() actor.Actor { return &worker{id: "dyn", j: j} }, actor.Options{Args: "own"})
	r1, err := d.StartChild(ctx, spec)
	if err != nil {
		t.Fatal(err)
	}
	args, err := sys.Call(ctx, r1, "args")
	if err != nil || fmt.Sprint(args) != "[extra own]" {
		t.Fatalf("child init args = %v (%v), want [extra own]", args, err)
	}
	if _, err := d.StartChild(ctx, spec); err != nil {
		t.Fatal(err)
	}
	if _, err := d.StartChild(ctx, spec); !errors.Is(err, supervisor.ErrMaxChildren) {
		t.Fatalf("third child = %v, want ErrMaxChildren", err)
	}
	n, err := d.CountChildren(ctx)
	if err != nil || n.Active != 2 || n.Specs != 2 || n.Workers != 2 {
		t.Fatalf("counts = %+v, %v", n, err)
	}
	// A crashed permanent child is restarted under a new Ref.
	_, downs := sys.Monitor(r1)
	_ = sys.Cast(ctx, r1, exitWith{errCrash})
	<-downs
	cs, _ := d.WhichChildren(ctx)
	if len(cs) != 2 || !cs[0].Running || cs[0].Ref == r1 {
		t.Fatalf("after crash: %+v", cs)
	}
	if err := d.TerminateChildRef(ctx, cs[0].Ref); err != nil {
		t.Fatal(err)
	}
	if err := d.TerminateChildRef(ctx, cs[0].Ref); !errors.Is(err, supervisor.ErrChildNotFound) {
		t.Fatalf("terminate twice: %v", err)
	}
	if n, _ := d.CountChildren(ctx); n.Specs != 1 {
		t.Fatalf("after terminate: %+v", n)
	}
	// Room again below MaxChildren.
	if _, err := d.StartChild(ctx, spec); err != nil {
		t.Fatal(err)
	}
}

func TestEventsAndLogger(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	var mu sync.Mutex
	var got []supervisor.Event
	core, logs := observer.New(zap.DebugLevel)
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Children: []supervisor.Child{workerChild(j, "w", supervisor.Permanent)},
		Listener: func(e supervisor.Event) {
			mu.Lock()
			got = append(got, e)
			mu.Unlock()
		},
		Logger: zap.New(core),
	})
	if err != nil {
		t.Fatal(err)
	}
	crashChild(t, sys, s, "w", errCrash)
	if err := s.Stop(context.Background()); err != nil {
		t.Fatal(err)
	}
	mu.Lock()
	defer mu.Unlock()
	want := []supervisor.EventType{supervisor.ChildStarted, supervisor.ChildExited, supervisor.ChildStarted, supervisor.ChildRestarted, supervisor.ChildStopped}
	types := make([]supervisor.EventType, len(got))
	for i, e := range got {
		types[i] = e.Type
		if e.ChildID != "w" || e.Supervisor != s.Ref() || e.Time.IsZero() {
			t.Errorf("event %d = %+v: want child w, supervisor %v and a time", i, e, s.Ref())
		}
	}
	if !slices.Equal(types, want) {
		t.Fatalf("events %v, want %v", types, want)
	}
	if !errors.Is(got[1].Reason, errCrash) {
		t.Errorf("child_exited reason = %v, want %v", got[1].Reason, errCrash)
	}
	entries := logs.AllUntimed()
	if len(entries) != len(want) {
		t.Fatalf("%d log entries, want %d: %v", len(entries), len(want), entries)
	}
	for i, e := range entries {
		if msg := "supervisor " + want[i].String(); e.Message != msg {
			t.Errorf("log entry %d = %q, want %q", i, e.Message, msg)
		}
		if f := e.ContextMap(); f["child"] != "w" || f["ref"] != got[i].Ref.String() {
			t.Errorf("log entry %d fields = %v, want child w and ref %v", i, f, got[i].Ref)
		}
	}
	if entries[1].Level != zap.WarnLevel || entries[0].Level != zap.InfoLevel {
		t.Errorf("levels: child_started %v, child_exited %v; want info, warn", entries[0].Level, entries[1].Level)
	}
}

// Restarts older than the intensity period no longer count.
func TestIntensityForgetsRestartsOutsidePeriod(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: 1, Period: 100 * time.Millisecond},
		Children:  []supervisor.Child{workerChild(j, "w", supervisor.Permanent)},
	})
	if err != nil {
		t.Fatal(err)
	}
	_, down := sys.Monitor(s.Ref())
	for range 3 {
		crashChild(t, sys, s, "w", errCrash)
		time.Sleep(150 * time.Millisecond)
	}
	select {
	case d := <-down:
		t.Fatalf("supervisor exited with %v after restarts a period apart", d.Reason)
	default:
	}
	if ref := childRef(t, s, "w"); ref.IsZero() {
		t.Fatal("child not running")
	}
}

func TestBadSpecs(t *testing.T) {
	sys := newSystem(t)
	j := newJournal()
	ok := workerChild(j, "ok", supervisor.Permanent)
	cases := []struct {
		name string
		spec supervisor.Spec
	}{
		{"negative max restarts", supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: -1, Period: time.Second}}},
		{"negative period", supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: 1, Period: -time.Second}}},
		{"restarts without period", supervisor.Spec{Intensity: supervisor.Intensity{MaxRestarts: 3}}},
		{"duplicate child ids", supervisor.Spec{Children: []supervisor.Child{ok, ok}}},
		{"empty child id", supervisor.Spec{Children: []supervisor.Child{{Start: ok.Start}}}},
		{"nil start", supervisor.Spec{Children: []supervisor.Child{{ID: "x"}}}},
		{"unknown strategy", supervisor.Spec{Strategy: 9}},
		{"unknown restart", supervisor.Spec{Children: []supervisor.Child{{ID: "x", Start: ok.Start, Restart: 7}}}},
		{"negative shutdown", supervisor.Spec{Children: []supervisor.Child{{ID: "x", Start: ok.Start, Shutdown: -5}}}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			if _, err := supervisor.Start(context.Background(), sys, tc.spec); !errors.Is(err, supervisor.ErrInvalidSpec) {
				t.Fatalf("start = %v, want ErrInvalidSpec", err)
			}
		})
	}
	if _, err := supervisor.StartDynamic(context.Background(), sys, supervisor.DynamicSpec{MaxChildren: -1}); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("negative MaxChildren: %v", err)
	}
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{Children: []supervisor.Child{ok}})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := s.StartChild(context.Background(), ok); !errors.Is(err, supervisor.ErrInvalidSpec) {
		t.Fatalf("StartChild with duplicate id: %v", err)
	}
	if err := s.TerminateChild(context.Background(), "nope"); !errors.Is(err, supervisor.ErrChildNotFound) {
		t.Fatalf("terminate unknown: %v", err)
	}
}
