package actor_test

import (
	"context"
	"errors"
	"fmt"
	"runtime"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
)

func newSystem(t *testing.T) *actor.System {
	t.Helper()
	sys := actor.NewSystem(actor.Config{Node: "test"})
	t.Cleanup(func() { sys.Shutdown(context.Background()) })
	return sys
}

func spawn(t *testing.T, sys *actor.System, a actor.Actor, opts actor.Options) actor.Ref {
	t.Helper()
	ref, err := sys.Spawn(context.Background(), a, opts)
	if err != nil {
		t.Fatalf("spawn: %v", err)
	}
	return ref
}

// probe is a test actor whose behaviour is driven by its messages.
type probe struct {
	initArgs   any
	got        []any
	terminated chan error
	block      chan struct{}
	entered    chan struct{}
	deferred   chan actor.ReplyTo
}

type (
	echo        struct{ V any }
	crash       struct{ V any }
	stopWith    struct{ Reason error }
	deferReply  struct{}
	blockNow    struct{}
	history     struct{}
	deadlineOf  struct{}
	monitorThis struct{ Ref actor.Ref }
	blockCrash  struct{ V any }
	record      struct{ V any }
)

func (p *probe) Init(_ *actor.Context, args any) error {
	p.initArgs = args
	if err, ok := args.(error); ok {
		return err
	}
	if args == "panic" {
		panic("init exploded")
	}
	return nil
}

func (p *probe) HandleCall(ctx *actor.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case echo:
		return m.V, nil
	case crash:
		panic(m.V)
	case stopWith:
		ctx.Stop(m.Reason)
		return "stopping", nil
	case deferReply:
		p.deferred <- ctx.DeferReply()
		return "ignored", nil
	case history:
		return append([]any(nil), p.got...), nil
	case deadlineOf:
		d, ok := ctx.Deadline()
		if !ok {
			return nil, errors.New("no deadline")
		}
		return d, nil
	case monitorThis:
		return ctx.Monitor(m.Ref), nil
	case record:
		p.got = append(p.got, m.V)
		return nil, nil
	case blockNow:
		<-p.block
		return nil, nil
	}
	return nil, actor.ErrUnhandled
}

func (p *probe) HandleCast(_ *actor.Context, msg any) error {
	switch m := msg.(type) {
	case stopWith:
		return m.Reason
	case blockNow:
		<-p.block
		return nil
	case blockCrash:
		close(p.entered)
		<-p.block
		panic(m.V)
	}
	p.got = append(p.got, msg)
	return nil
}

func (p *probe) HandleInfo(_ *actor.Context, msg any) error {
	p.got = append(p.got, msg)
	return nil
}

func (p *probe) Terminate(_ *actor.Context, reason error) {
	if p.terminated != nil {
		p.terminated <- reason
	}
	if p.block != nil && errors.Is(reason, errSlowTerminate) {
		<-p.block
	}
}

var errSlowTerminate = errors.New("slow terminate")

func TestCallReplies(t *testing.T) {
	sys := newSystem(t)
	ref := spawn(t, sys, &probe{}, actor.Options{Args: 42})
	got, err := actor.Call[string](context.Background(), sys, ref, echo{"hello"})
	if err != nil || got != "hello" {
		t.Fatalf("call = %q, %v; want hello", got, err)
	}
	if _, err := actor.Call[int](context.Background(), sys, ref, echo{"x"}); !errors.Is(err, actor.ErrReplyType) {
		t.Fatalf("typed call with wrong type: %v, want ErrReplyType", err)
	}
	if _, err := sys.Call(context.Background(), ref, "unknown"); !errors.Is(err, actor.ErrUnhandled) {
		t.Fatalf("unknown message: %v, want ErrUnhandled", err)
	}
}

func TestInitReceivesArgs(t *testing.T) {
	sys := newSystem(t)
	p := &probe{}
	spawn(t, sys, p, actor.Options{Args: 42})
	if p.initArgs != 42 {
		t.Fatalf("init args = %v, want 42", p.initArgs)
	}
}

func TestInitFailureAbortsSpawn(t *testing.T) {
	sys := newSystem(t)
	boom := errors.New("boom")
	for _, tc := range []struct {
		name string
		args any
		want func(error) bool
	}{
		{"error", boom, func(err error) bool { return errors.Is(err, boom) }},
		{"panic", "panic", func(err error) bool { var pe *actor.PanicError; return errors.As(err, &pe) }},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, err := sys.Spawn(context.Background(), &probe{}, actor.Options{Name: "init-" + tc.name, Args: tc.args})
			if err == nil || !tc.want(err) {
				t.Fatalf("spawn error = %v", err)
			}
			if _, ok := sys.Whereis("init-" + tc.name); ok {
				t.Fatal("name of a failed spawn is still registered")
			}
			if sys.Count() != 0 {
				t.Fatalf("%d actors alive after failed spawn", sys.Count())
			}
		})
	}
}

func TestDeferredReplyFromAnotherGoroutine(t *testing.T) {
	sys := newSystem(t)
	p := &probe{deferred: make(chan actor.ReplyTo, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	go func() {
		r := <-p.deferred
		if !r.Reply("later", nil) {
			t.Error("deferred reply not delivered")
		}
		if r.Reply("twice", nil) {
			t.Error("second reply delivered")
		}
	}()
	got, err := sys.Call(context.Background(), ref, deferReply{})
	if err != nil || got != "later" {
		t.Fatalf("call = %v, %v; want later", got, err)
	}
	// The actor keeps serving while a reply is deferred.
	if v, err := sys.Call(context.Background(), ref, echo{1}); err != nil || v != 1 {
		t.Fatalf("call after deferred = %v, %v", v, err)
	}
}

func TestLateReplyDoesNotReachLaterCall(t *testing.T) {
	sys := newSystem(t)
	p := &probe{deferred: make(chan actor.ReplyTo, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sys.Call(ctx, ref, deferReply{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want deadline exceeded", err)
	}
	stale := <-p.deferred
	for i := range 100 {
		if stale.Reply("stale", nil) {
			t.Fatal("reply to an abandoned call was delivered")
		}
		if v, err := sys.Call(context.Background(), ref, echo{i}); err != nil || v != i {
			t.Fatalf("call %d = %v, %v", i, v, err)
		}
	}
}

func TestCallToMissingActorFailsAtOnce(t *testing.T) {
	sys := newSystem(t)
	ref := spawn(t, sys, &probe{}, actor.Options{})
	if err := sys.Stop(context.Background(), ref, nil); err != nil {
		t.Fatal(err)
	}
	cases := []struct {
		name   string
		target actor.Target
		want   error
	}{
		{"stopped ref", ref, actor.ErrNotFound},
		{"never existed", actor.Ref{Node: "test", ID: 999999, Incarnation: ref.Incarnation}, actor.ErrNotFound},
		{"earlier incarnation", actor.Ref{Node: "test", ID: ref.ID, Incarnation: ref.Incarnation + 2}, actor.ErrNotFound},
		{"zero ref", actor.Ref{}, actor.ErrInvalidRef},
		{"nil target", nil, actor.ErrInvalidRef},
		{"unknown name", actor.Name("nobody"), actor.ErrNotFound},
		{"empty name", actor.Name(""), actor.ErrInvalidName},
		{"control char name", actor.Name("a\nb"), actor.ErrInvalidName},
		{"other node", actor.Ref{Node: "elsewhere", ID: 1, Incarnation: 1}, actor.ErrRemoteNode},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
			defer cancel()
			start := time.Now()
			_, err := sys.Call(ctx, tc.target, echo{1})
			if !errors.Is(err, tc.want) {
				t.Fatalf("call: %v, want %v", err, tc.want)
			}
			if err := sys.Cast(ctx, tc.target, 1); !errors.Is(err, tc.want) {
				t.Fatalf("cast: %v, want %v", err, tc.want)
			}
			if err := sys.Send(tc.target, 1); !errors.Is(err, tc.want) {
				t.Fatalf("send: %v, want %v", err, tc.want)
			}
			if time.Since(start) > 10*time.Second {
				t.Fatal("failure was not immediate")
			}
		})
	}
}

func TestCalleeDyingMidCallFailsWithReason(t *testing.T) {
	sys := newSystem(t)
	p := &probe{deferred: make(chan actor.ReplyTo, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	boom := errors.New("callee broke")
	go func() {
		<-p.deferred
		_ = sys.Cast(context.Background(), ref, stopWith{boom})
	}()
	ctx, cancel := context.WithTimeout(context.Background(), time.Hour)
	defer cancel()
	_, err := sys.Call(ctx, ref, deferReply{})
	var exit *actor.ExitError
	if !errors.As(err, &exit) || !errors.Is(err, boom) || exit.Ref != ref {
		t.Fatalf("call = %v, want ExitError with reason %v", err, boom)
	}
}

func TestPanicCrashesOnlyThatActor(t *testing.T) {
	sys := newSystem(t)
	crashing := spawn(t, sys, &probe{}, actor.Options{})
	other := spawn(t, sys, &probe{}, actor.Options{})
	_, downs := sys.Monitor(crashing)
	_, err := sys.Call(context.Background(), crashing, crash{"kaboom"})
	var pe *actor.PanicError
	if !errors.As(err, &pe) || pe.Value != "kaboom" {
		t.Fatalf("call = %v, want PanicError(kaboom)", err)
	}
	if !strings.Contains(pe.Stack(), "probe).HandleCall") {
		t.Fatalf("panic stack does not show the handler:\n%s", pe.Stack())
	}
	d := <-downs
	if !errors.As(d.Reason, &pe) {
		t.Fatalf("down reason = %v, want PanicError", d.Reason)
	}
	if actor.IsNormal(d.Reason) {
		t.Fatal("panic counted as a normal exit")
	}
	if v, err := sys.Call(context.Background(), other, echo{"ok"}); err != nil || v != "ok" {
		t.Fatalf("other actor: %v, %v", v, err)
	}
}

// A panic is the exit reason even when a stop was asked for while the
// callback ran; Terminate and the monitors see it.
func TestPanicReasonWinsOverPendingStop(t *testing.T) {
	sys := newSystem(t)
	p := &probe{terminated: make(chan error, 1), block: make(chan struct{}), entered: make(chan struct{})}
	ref := spawn(t, sys, p, actor.Options{})
	_, downs := sys.Monitor(ref)
	if err := sys.Cast(context.Background(), ref, blockCrash{"late"}); err != nil {
		t.Fatal(err)
	}
	<-p.entered
	stopped := make(chan error, 1)
	go func() { stopped <- sys.Stop(context.Background(), ref, errors.New("asked to stop")) }()
	time.Sleep(20 * time.Millisecond) // let Stop ask before the callback panics
	close(p.block)
	var pe *actor.PanicError
	if d := <-downs; !errors.As(d.Reason, &pe) || pe.Value != "late" {
		t.Fatalf("down reason = %v, want the panic", d.Reason)
	}
	if r := <-p.terminated; !errors.As(r, &pe) {
		t.Fatalf("terminate reason = %v, want the panic", r)
	}
	if !strings.Contains(pe.Stack(), "probe).HandleCast") {
		t.Fatalf("panic stack does not show the handler:\n%s", pe.Stack())
	}
	if err := <-stopped; err != nil {
		t.Fatalf("stop = %v", err)
	}
}

func TestDeadlineTravelsWithCall(t *testing.T) {
	sys := newSystem(t)
	ref := spawn(t, sys, &probe{}, actor.Options{})
	deadline := time.Now().Add(time.Minute)
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	got, err := actor.Call[time.Time](ctx, sys, ref, deadlineOf{})
	if err != nil || !got.Equal(deadline) {
		t.Fatalf("callee saw deadline %v (%v), want %v", got, err, deadline)
	}
	if _, err := sys.Call(context.Background(), ref, deadlineOf{}); err == nil {
		t.Fatal("callee saw a deadline for a call without one")
	}
	async := make(chan any, 1)
	if err := sys.CallAsync(ctx, ref, deadlineOf{}, func(v any, _ error) { async <- v }); err != nil {
		t.Fatal(err)
	}
	if d, _ := (<-async).(time.Time); !d.Equal(deadline) {
		t.Fatalf("callee saw deadline %v through CallAsync, want %v", d, deadline)
	}
}

// A call whose deadline passes while it waits in the mailbox is not
// handled, even when its caller has gone and later calls have started.
func TestExpiredCallIsNotHandled(t *testing.T) {
	sys := newSystem(t)
	p := &probe{block: make(chan struct{})}
	ref := spawn(t, sys, p, actor.Options{})
	if err := sys.Cast(context.Background(), ref, blockNow{}); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := sys.Call(ctx, ref, record{"expired"}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want DeadlineExceeded", err)
	}
	// Calls made after the caller gave up, queued behind its call.
	var wg sync.WaitGroup
	for i := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := sys.Call(context.Background(), ref, record{i}); err != nil {
				t.Error(err)
			}
		}()
	}
	time.Sleep(20 * time.Millisecond)
	close(p.block)
	wg.Wait()
	got, err := actor.Call[[]any](context.Background(), sys, ref, history{})
	if err != nil {
		t.Fatal(err)
	}
	if slices.Contains(got, any("expired")) || len(got) != 4 {
		t.Fatalf("handled %v; want the four later calls and not the expired one", got)
	}
}

func TestCallDeadlineComesFromContext(t *testing.T) {
	sys := newSystem(t)
	p := &probe{block: make(chan struct{})}
	ref := spawn(t, sys, p, actor.Options{})
	defer close(p.block)
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Millisecond)
	defer cancel()
	if _, err := sys.Call(ctx, ref, blockNow{}); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("call = %v, want DeadlineExceeded", err)
	}
	canceled, cancel2 := context.WithCancel(context.Background())
	cancel2()
	if _, err := sys.Call(canceled, ref, echo{1}); !errors.Is(err, context.Canceled) {
		t.Fatalf("call with canceled ctx = %v", err)
	}
}

func TestNames(t *testing.T) {
	sys := newSystem(t)
	a := spawn(t, sys, &probe{}, actor.Options{Name: "alpha"})
	b := spawn(t, sys, &probe{}, actor.Options{})
	if got, ok := sys.Whereis("alpha"); !ok || got != a {
		t.Fatalf("whereis alpha = %v %v", got, ok)
	}
	err := sys.Register("alpha", b)
	var are *actor.AlreadyRegisteredError
	if !errors.Is(err, actor.ErrAlreadyRegistered) || !errors.As(err, &are) || are.Owner != a {
		t.Fatalf("second register = %v, want AlreadyRegistered owned by %v", err, a)
	}
	_, err = sys.Spawn(context.Background(), &probe{}, actor.Options{Name: "alpha"})
	if !errors.Is(err, actor.ErrAlreadyRegistered) {
		t.Fatalf("spawn with taken name = %v", err)
	}
	if v, err := sys.Call(context.Background(), actor.Name("alpha"), echo{7}); err != nil || v != 7 {
		t.Fatalf("call by name = %v %v", v, err)
	}
	if err := sys.Stop(context.Background(), actor.Name("alpha"), nil); err != nil {
		t.Fatal(err)
	}
	if _, ok := sys.Whereis("alpha"); ok {
		t.Fatal("name not freed when its actor exited")
	}
	if err := sys.Register("alpha", b); err != nil {
		t.Fatalf("register freed name: %v", err)
	}
	if !sys.Unregister("alpha") || sys.Unregister("alpha") {
		t.Fatal("unregister should succeed once")
	}
	for _, bad := range []string{"", "tab\there", "nul\x00", strings.Repeat("x", actor.MaxNameLen+1), "bad\xffutf8"} {
		if err := sys.Register(bad, b); !errors.Is(err, actor.ErrInvalidName) {
			t.Errorf("register %q = %v, want ErrInvalidName", bad, err)
		}
	}
}

func TestResolverPlugsIntoNames(t *testing.T) {
	sys := newSystem(t)
	ref := spawn(t, sys, &probe{}, actor.Options{})
	sys.AddResolver(actor.ResolverFunc(func(_ context.Context, name string) (actor.Ref, error) {
		if name == "global-thing" {
			return ref, nil
		}
		return actor.Ref{}, fmt.Errorf("%w: %s", actor.ErrNotFound, name)
	}))
	if v, err := sys.Call(context.Background(), actor.Name("global-thing"), echo{"via"}); err != nil || v != "via" {
		t.Fatalf("call via resolver = %v, %v", v, err)
	}
	if _, err := sys.Call(context.Background(), actor.Name("missing"), echo{1}); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("missing via resolver: %v", err)
	}
}

func TestMailboxFIFOPerSender(t *testing.T) {
	sys := newSystem(t)
	p := &probe{}
	ref := spawn(t, sys, p, actor.Options{})
	const senders, per = 4, 2000
	type tagged struct{ S, N int }
	var wg sync.WaitGroup
	for s := range senders {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for n := range per {
				if err := sys.Cast(context.Background(), ref, tagged{s, n}); err != nil {
					t.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	got, err := actor.Call[[]any](context.Background(), sys, ref, history{})
	if err != nil {
		t.Fatal(err)
	}
	if len(got) != senders*per {
		t.Fatalf("handled %d messages, want %d", len(got), senders*per)
	}
	next := make([]int, senders)
	for _, m := range got {
		tm := m.(tagged)
		if tm.N != next[tm.S] {
			t.Fatalf("sender %d: got %d, want %d", tm.S, tm.N, next[tm.S])
		}
		next[tm.S]++
	}
}

func TestBoundedMailbox(t *testing.T) {
	sys := newSystem(t)
	t.Run("fail fast", func(t *testing.T) {
		p := &probe{block: make(chan struct{})}
		ref := spawn(t, sys, p, actor.Options{MailboxSize: 2, WhenFull: actor.FailFast})
		ctx := context.Background()
		if err := sys.Cast(ctx, ref, blockNow{}); err != nil {
			t.Fatal(err)
		}
		if err := sys.Cast(ctx, ref, 1); err != nil {
			t.Fatal(err)
		}
		if err := sys.Cast(ctx, ref, 2); !errors.Is(err, actor.ErrMailboxFull) {
			t.Fatalf("third cast = %v, want ErrMailboxFull", err)
		}
		if err := sys.Send(ref, 3); !errors.Is(err, actor.ErrMailboxFull) {
			t.Fatalf("send to full = %v, want ErrMailboxFull", err)
		}
		close(p.block)
		if err := castEventually(ctx, sys, ref, 4); err != nil {
			t.Fatal(err)
		}
		got, err := callEventually(ctx, sys, ref, history{})
		if err != nil {
			t.Fatal(err)
		}
		if fmt.Sprint(got) != "[1 4]" {
			t.Fatalf("handled %v, want [1 4]: nothing but the refused message may be missing", got)
		}
	})
	t.Run("block", func(t *testing.T) {
		p := &probe{block: make(chan struct{})}
		ref := spawn(t, sys, p, actor.Options{MailboxSize: 1})
		ctx := context.Background()
		if err := sys.Cast(ctx, ref, blockNow{}); err != nil {
			t.Fatal(err)
		}
		short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
		defer cancel()
		if err := sys.Cast(short, ref, 1); !errors.Is(err, context.DeadlineExceeded) {
			t.Fatalf("cast to full blocking mailbox = %v, want deadline exceeded", err)
		}
		done := make(chan error, 1)
		go func() { done <- sys.Cast(ctx, ref, 2) }()
		close(p.block)
		if err := <-done; err != nil {
			t.Fatalf("blocked cast after room: %v", err)
		}
		got, _ := actor.Call[[]any](ctx, sys, ref, history{})
		if fmt.Sprint(got) != "[2]" {
			t.Fatalf("handled %v, want [2]", got)
		}
	})
}

// castEventually retries a fail-fast cast until the mailbox has room; the
// mailbox drains as soon as its actor runs.
func castEventually(ctx context.Context, sys *actor.System, ref actor.Ref, msg any) error {
	for {
		err := sys.Cast(ctx, ref, msg)
		if !errors.Is(err, actor.ErrMailboxFull) {
			return err
		}
		if _, err := callEventually(ctx, sys, ref, echo{nil}); err != nil {
			return err
		}
	}
}

// callEventually retries a call refused by a full fail-fast mailbox.
func callEventually(ctx context.Context, sys *actor.System, ref actor.Ref, msg any) (any, error) {
	for {
		v, err := sys.Call(ctx, ref, msg)
		if !errors.Is(err, actor.ErrMailboxFull) {
			return v, err
		}
		runtime.Gosched()
	}
}

func TestMonitors(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	t.Run("down carries reason", func(t *testing.T) {
		ref := spawn(t, sys, &probe{}, actor.Options{})
		_, downs := sys.Monitor(ref)
		boom := errors.New("boom")
		_ = sys.Cast(ctx, ref, stopWith{boom})
		d := <-downs
		if d.Ref != ref || !errors.Is(d.Reason, boom) {
			t.Fatalf("down = %+v", d)
		}
	})
	t.Run("already gone", func(t *testing.T) {
		ref := spawn(t, sys, &probe{}, actor.Options{})
		_ = sys.Stop(ctx, ref, nil)
		_, downs := sys.Monitor(ref)
		select {
		case d := <-downs:
			if !errors.Is(d.Reason, actor.ErrNotFound) {
				t.Fatalf("down reason = %v, want ErrNotFound", d.Reason)
			}
		default:
			t.Fatal("monitor of a dead actor did not fire at once")
		}
	})
	t.Run("demonitor", func(t *testing.T) {
		ref := spawn(t, sys, &probe{}, actor.Options{})
		m, downs := sys.Monitor(ref)
		sys.Demonitor(m)
		_ = sys.Stop(ctx, ref, nil)
		select {
		case d := <-downs:
			t.Fatalf("down after demonitor: %+v", d)
		default:
		}
	})
	t.Run("actor receives down as info", func(t *testing.T) {
		watcher := &probe{}
		w := spawn(t, sys, watcher, actor.Options{})
		target := spawn(t, sys, &probe{}, actor.Options{})
		if _, err := sys.Call(ctx, w, monitorThis{target}); err != nil {
			t.Fatal(err)
		}
		_ = sys.Stop(ctx, target, actor.Shutdown)
		got := waitHistory(t, sys, w, 1)
		d, ok := got[0].(actor.Down)
		if !ok || d.Ref != target || !errors.Is(d.Reason, actor.Shutdown) {
			t.Fatalf("watcher got %v", got)
		}
	})
}

// waitHistory polls the probe until it has handled n casts or infos.
func waitHistory(t *testing.T, sys *actor.System, ref actor.Ref, n int) []any {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		got, err := actor.Call[[]any](context.Background(), sys, ref, history{})
		if err != nil {
			t.Fatal(err)
		}
		if len(got) >= n {
			return got
		}
		time.Sleep(time.Millisecond)
	}
	t.Fatalf("actor did not handle %d messages", n)
	return nil
}

func TestStopRunsTerminate(t *testing.T) {
	sys := newSystem(t)
	p := &probe{terminated: make(chan error, 1)}
	ref := spawn(t, sys, p, actor.Options{Name: "stoppable"})
	why := errors.New("operator asked")
	if err := sys.Stop(context.Background(), ref, why); err != nil {
		t.Fatal(err)
	}
	if got := <-p.terminated; !errors.Is(got, why) {
		t.Fatalf("terminate reason = %v", got)
	}
	if sys.Alive(ref) {
		t.Fatal("actor alive after Stop")
	}
	if _, err := sys.Call(context.Background(), ref, echo{1}); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("call to stopped actor = %v, want ErrNotFound", err)
	}
}

func TestStopTimeoutAbandonsActor(t *testing.T) {
	sys := newSystem(t)
	p := &probe{terminated: make(chan error, 1), block: make(chan struct{})}
	defer close(p.block)
	ref := spawn(t, sys, p, actor.Options{Name: "stuck", ShutdownTimeout: 30 * time.Millisecond})
	_, downs := sys.Monitor(ref)
	err := sys.Stop(context.Background(), ref, errSlowTerminate)
	if !errors.Is(err, actor.ErrKilled) {
		t.Fatalf("stop = %v, want ErrKilled", err)
	}
	if d := <-downs; !errors.Is(d.Reason, actor.ErrKilled) {
		t.Fatalf("down reason = %v, want ErrKilled", d.Reason)
	}
	if _, ok := sys.Whereis("stuck"); ok {
		t.Fatal("name of an abandoned actor not freed")
	}
	if err := sys.Cast(context.Background(), ref, 1); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("cast to abandoned actor = %v", err)
	}
	if _, err := sys.Spawn(context.Background(), &probe{}, actor.Options{Name: "stuck"}); err != nil {
		t.Fatalf("name not reusable after abandon: %v", err)
	}
}

func TestKillSkipsTerminate(t *testing.T) {
	sys := newSystem(t)
	p := &probe{terminated: make(chan error, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	_, downs := sys.Monitor(ref)
	if err := sys.Kill(ref); err != nil {
		t.Fatal(err)
	}
	if d := <-downs; !errors.Is(d.Reason, actor.ErrKilled) {
		t.Fatalf("down = %v", d.Reason)
	}
	select {
	case r := <-p.terminated:
		t.Fatalf("terminate ran on kill with %v", r)
	default:
	}
}

func TestCastStopReason(t *testing.T) {
	sys := newSystem(t)
	p := &probe{terminated: make(chan error, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	_ = sys.Cast(context.Background(), ref, stopWith{actor.Normal})
	if r := <-p.terminated; !actor.IsNormal(r) {
		t.Fatalf("terminate reason = %v, want normal", r)
	}
}

type callOnly struct{}

func (callOnly) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func TestBadInput(t *testing.T) {
	ctx := context.Background()
	sys := newSystem(t)
	if _, err := sys.Spawn(ctx, nil, actor.Options{}); !errors.Is(err, actor.ErrNilActor) {
		t.Errorf("nil actor: %v", err)
	}
	if _, err := sys.Spawn(ctx, callOnly{}, actor.Options{MailboxSize: -1}); !errors.Is(err, actor.ErrInvalidOption) {
		t.Errorf("negative mailbox: %v", err)
	}
	for _, name := range []string{"bad\x01name", " ", "padded ", " padded"} {
		if _, err := sys.Spawn(ctx, callOnly{}, actor.Options{Name: name}); !errors.Is(err, actor.ErrInvalidName) {
			t.Errorf("name %q: %v", name, err)
		}
	}
	ref := spawn(t, sys, callOnly{}, actor.Options{})
	if err := sys.Cast(ctx, ref, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("cast to actor without HandleCast: %v", err)
	}
	if err := sys.Send(ref, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("send to actor without HandleInfo: %v", err)
	}
	if err := sys.Stop(ctx, actor.Ref{}, nil); !errors.Is(err, actor.ErrInvalidRef) {
		t.Errorf("stop zero ref: %v", err)
	}
	stopped := actor.NewSystem(actor.Config{Node: "gone"})
	r := spawn(t, stopped, callOnly{}, actor.Options{})
	if err := stopped.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if _, err := stopped.Call(ctx, r, 1); !errors.Is(err, actor.ErrSystemStopped) {
		t.Errorf("call on stopped system: %v", err)
	}
	if _, err := stopped.Spawn(ctx, callOnly{}, actor.Options{}); !errors.Is(err, actor.ErrSystemStopped) {
		t.Errorf("spawn on stopped system: %v", err)
	}
}

func TestShutdownStopsEveryActor(t *testing.T) {
	sys := actor.NewSystem(actor.Config{})
	var terms []chan error
	for range 10 {
		p := &probe{terminated: make(chan error, 1)}
		terms = append(terms, p.terminated)
		spawn(t, sys, p, actor.Options{})
	}
	if err := sys.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	for _, c := range terms {
		if r := <-c; !errors.Is(r, actor.Shutdown) {
			t.Fatalf("terminate reason = %v", r)
		}
	}
	if sys.Count() != 0 {
		t.Fatalf("%d actors alive after Shutdown", sys.Count())
	}
}

func TestConcurrentCallsAndStops(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for j := range 200 {
				ref, err := sys.Spawn(ctx, &probe{}, actor.Options{})
				if err != nil {
					t.Error(err)
					return
				}
				go func() { _ = sys.Stop(ctx, ref, nil) }()
				v, err := sys.Call(ctx, ref, echo{j})
				if err == nil && v != j {
					t.Errorf("reply %v, want %d", v, j)
				}
				if err != nil && !errors.Is(err, actor.ErrNotFound) && !errors.As(err, new(*actor.ExitError)) {
					t.Errorf("unexpected error %v", err)
				}
			}
		}()
	}
	wg.Wait()
}

func TestCallAsync(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	p := &probe{deferred: make(chan actor.ReplyTo, 1)}
	ref := spawn(t, sys, p, actor.Options{})
	type res struct {
		v   any
		err error
	}
	got := make(chan res, 2)
	reply := func(v any, err error) { got <- res{v, err} }
	if err := sys.CallAsync(ctx, ref, echo{"async"}, reply); err != nil {
		t.Fatal(err)
	}
	if r := <-got; r.v != "async" || r.err != nil {
		t.Fatalf("reply %+v", r)
	}
	// The callee exits before replying: reply is called once, with the reason.
	boom := errors.New("gone")
	if err := sys.CallAsync(ctx, ref, deferReply{}, reply); err != nil {
		t.Fatal(err)
	}
	late := <-p.deferred
	_ = sys.Cast(ctx, ref, stopWith{boom})
	r := <-got
	if !errors.Is(r.err, boom) {
		t.Fatalf("reply after exit = %+v", r)
	}
	if late.Reply("too late", nil) {
		t.Fatal("a second reply was delivered")
	}
	select {
	case r := <-got:
		t.Fatalf("reply called twice: %+v", r)
	default:
	}
	if err := sys.CallAsync(ctx, ref, echo{1}, reply); !errors.Is(err, actor.ErrNotFound) {
		t.Fatalf("CallAsync to dead actor = %v", err)
	}
}

func TestMonitorFunc(t *testing.T) {
	sys := newSystem(t)
	ref := spawn(t, sys, &probe{}, actor.Options{})
	got := make(chan actor.Down, 1)
	sys.MonitorFunc(ref, func(d actor.Down) { got <- d })
	_ = sys.Stop(context.Background(), ref, actor.Shutdown)
	if d := <-got; d.Ref != ref || !errors.Is(d.Reason, actor.Shutdown) {
		t.Fatalf("down %+v", d)
	}
}

func TestExecRunsInActor(t *testing.T) {
	sys := newSystem(t)
	p := &probe{}
	ref := spawn(t, sys, p, actor.Options{})
	_ = sys.Cast(context.Background(), ref, "one")
	got, err := sys.Exec(context.Background(), ref, func(a actor.Actor, c *actor.Context) (any, error) {
		if c.Self() != ref {
			return nil, errors.New("wrong self")
		}
		return len(a.(*probe).got), nil
	})
	if err != nil || got != 1 {
		t.Fatalf("exec = %v, %v", got, err)
	}
	if _, err := sys.Exec(context.Background(), actor.Ref{}, nil); !errors.Is(err, actor.ErrInvalidRef) {
		t.Fatalf("exec on zero ref: %v", err)
	}
}

func TestReserveRef(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	r := sys.ReserveRef()
	got, err := sys.Spawn(ctx, &probe{}, actor.Options{Ref: r})
	if err != nil || got != r {
		t.Fatalf("spawn with reserved ref = %v, %v", got, err)
	}
	if _, err := sys.Spawn(ctx, &probe{}, actor.Options{Ref: r}); !errors.Is(err, actor.ErrInvalidOption) {
		t.Fatalf("reusing a live ref: %v", err)
	}
	forged := actor.Ref{Node: "test", ID: r.ID + 1000, Incarnation: r.Incarnation}
	if _, err := sys.Spawn(ctx, &probe{}, actor.Options{Ref: forged}); !errors.Is(err, actor.ErrInvalidOption) {
		t.Fatalf("unreserved ref: %v", err)
	}
}

// A call that wakes an idle actor leaves the actor to the caller, which
// runs it on its own goroutine until its mailbox is empty; a call that
// finds the actor claimed leaves nothing.
func TestCallAsyncLendRunsTheActorOnTheCaller(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	ref := spawn(t, sys, &probe{}, actor.Options{})
	got := make(chan any, 3)
	reply := func(v any, err error) {
		if err != nil {
			got <- err
			return
		}
		got <- v
	}
	lent, err := sys.CallAsyncLend(ctx, ref, echo{"lent"}, reply)
	if err != nil || !lent.Woken() {
		t.Fatalf("call to an idle actor: woken %v, %v", lent.Woken(), err)
	}
	second, err := sys.CallAsyncLend(ctx, ref, echo{"second"}, reply)
	if err != nil || second.Woken() {
		t.Fatalf("call to a claimed actor: woken %v, %v", second.Woken(), err)
	}
	if len(got) != 0 {
		t.Fatalf("the actor answered %v before it was run", <-got)
	}
	lent.Run()
	if len(got) != 2 {
		t.Fatalf("Run returned with %d of 2 calls answered", len(got))
	}
	for _, want := range []any{"lent", "second"} {
		if v := <-got; v != want {
			t.Fatalf("reply %v, want %v", v, want)
		}
	}
	again, err := sys.CallAsyncLend(ctx, ref, echo{"again"}, reply)
	if err != nil || !again.Woken() {
		t.Fatalf("call once the actor is idle again: woken %v, %v", again.Woken(), err)
	}
	again.Run()
	if v := <-got; v != "again" {
		t.Fatalf("reply %v", v)
	}
}

// CastTaken and SendTaken return once the actor has taken the message;
// one it never takes fails, and is then never handled.
func TestCastTaken(t *testing.T) {
	sys := newSystem(t)
	ctx := context.Background()
	p := &probe{block: make(chan struct{})}
	ref := spawn(t, sys, p, actor.Options{})
	if err := sys.CastTaken(ctx, ref, "cast"); err != nil {
		t.Fatal(err)
	}
	if err := sys.SendTaken(ctx, ref, "info"); err != nil {
		t.Fatal(err)
	}
	only := spawn(t, sys, callOnly{}, actor.Options{})
	if err := sys.CastTaken(ctx, only, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("CastTaken to an actor without HandleCast: %v", err)
	}
	if err := sys.SendTaken(ctx, only, 1); !errors.Is(err, actor.ErrUnhandled) {
		t.Errorf("SendTaken to an actor without HandleInfo: %v", err)
	}

	// Its deadline passes while it waits behind a blocked handler.
	if err := sys.Cast(ctx, ref, blockNow{}); err != nil {
		t.Fatal(err)
	}
	short, cancel := context.WithTimeout(ctx, 20*time.Millisecond)
	defer cancel()
	if err := sys.CastTaken(short, ref, "late"); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("CastTaken past its deadline: %v", err)
	}
	p.block <- struct{}{}

	// The actor is stopped before it takes it.
	w := &stopWaiter{}
	wref := spawn(t, sys, w, actor.Options{})
	if err := sys.Cast(ctx, wref, "wait"); err != nil {
		t.Fatal(err)
	}
	never := make(chan error, 1)
	go func() { never <- sys.CastTaken(ctx, wref, "never") }()
	if err := sys.Stop(ctx, wref, errors.New("gone")); err != nil {
		t.Fatal(err)
	}
	// Queued before the stop it gets the exit; after it, ErrNotFound:
	// either way it was not handled.
	var exit *actor.ExitError
	if err := <-never; !errors.As(err, &exit) && !errors.Is(err, actor.ErrNotFound) {
		t.Errorf("CastTaken to an actor that exits first: %v, want *ExitError or ErrNotFound", err)
	}
	if slices.Contains(w.got, any("never")) {
		t.Errorf("the stopped actor handled %v, the failed cast among them", w.got)
	}
	if err := sys.Stop(ctx, ref, nil); err != nil {
		t.Fatal(err)
	}
	if got := fmt.Sprint(p.got); got != "[cast info]" {
		t.Errorf("handled %s, want [cast info]", got)
	}
}

// stopWaiter records its casts, and handles each until a stop is
// requested.
type stopWaiter struct{ got []any }

func (w *stopWaiter) HandleCast(c *actor.Context, msg any) error {
	w.got = append(w.got, msg)
	<-c.Stopping().Done()
	return nil
}

func (w *stopWaiter) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }
