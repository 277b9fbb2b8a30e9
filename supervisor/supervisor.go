package supervisor

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"math"
	"slices"
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
	"go.uber.org/zap"
)

// child is the supervisor's record of one child.
type child struct {
	spec Child
	ref  actor.Ref // zero when not running
	mon  actor.MonitorRef
	// startErr is why the last start failed, the reason of the restart
	// retried through the mailbox.
	startErr error
}

// sup is the supervisor actor. All its state is touched only from its own
// callbacks.
type sup struct {
	name      string
	strategy  Strategy
	intensity Intensity
	dynamic   bool
	max       int
	extra     []any
	listener  func(Event)
	log       *zap.Logger

	sys      *actor.System
	self     actor.Ref
	ctx      context.Context
	children []*child
	restarts []int64 // monotonic readings of clock(), oldest first
	dynIDs   uint64

	// linked holds the running children, by start order, for the one
	// place that reads them from outside the supervisor's callbacks: its
	// exit (see orphaned).
	linkMu  sync.Mutex
	linked  map[actor.Ref]uint64
	linkSeq uint64
}

// Internal call messages.
type (
	whichChildren  struct{}
	countChildren  struct{}
	startChild     struct{ spec Child }
	terminateChild struct {
		id  string
		ref actor.Ref
	}
	restartChild struct{ id string }
	deleteChild  struct{ id string }
	retryRestart struct{ id string }
)

// Init starts the static children in order. If one fails, those already
// started are stopped in reverse order and the supervisor does not start.
func (s *sup) Init(ctx *actor.Context, _ any) error {
	s.sys, s.self, s.ctx = ctx.System(), ctx.Self(), ctx.Context()
	if s.log == nil {
		s.log = s.sys.Logger()
	}
	s.linked = make(map[actor.Ref]uint64)
	s.sys.MonitorFunc(s.self, s.orphaned)
	for i, c := range s.children {
		if err := s.start(ctx, c); err != nil {
			s.stopChildren(s.children[:i])
			return fmt.Errorf("%w: %q: %w", ErrStartChild, c.spec.ID, err)
		}
	}
	return nil
}

func (s *sup) HandleCall(ctx *actor.Context, msg any) (any, error) {
	switch m := msg.(type) {
	case whichChildren:
		return s.which(), nil
	case countChildren:
		return s.count(), nil
	case startChild:
		return s.startChild(ctx, m.spec)
	case terminateChild:
		return nil, s.terminateChild(m)
	case restartChild:
		return s.restartChild(ctx, m.id)
	case deleteChild:
		return nil, s.deleteChild(m.id)
	}
	return nil, fmt.Errorf("%w: supervisor got %T", actor.ErrUnhandled, msg)
}

func (s *sup) HandleInfo(ctx *actor.Context, msg any) error {
	switch m := msg.(type) {
	case actor.Down:
		s.childExited(ctx, m)
	case retryRestart:
		if i := s.index(m.id); i >= 0 && s.children[i].ref.IsZero() {
			s.restart(ctx, s.children[i], s.children[i].startErr)
		}
	}
	return nil
}

// Terminate stops every child in reverse start order.
func (s *sup) Terminate(_ *actor.Context, _ error) {
	s.stopChildren(s.children)
}

// orphaned runs when the supervisor has exited, however it did: its
// children are linked to it, as in OTP, and go with it. After a stop they
// are gone already (Terminate stopped them, in order); a supervisor
// killed, or abandoned past its shutdown timeout, runs no Terminate, and
// the children still running are killed here, latest first (a child
// supervisor's own exit then takes its children).
func (s *sup) orphaned(d actor.Down) {
	s.linkMu.Lock()
	refs := make([]actor.Ref, 0, len(s.linked))
	for ref := range s.linked {
		refs = append(refs, ref)
	}
	seq := s.linked
	s.linked = nil
	s.linkMu.Unlock()
	slices.SortFunc(refs, func(a, b actor.Ref) int { return cmp.Compare(seq[b], seq[a]) })
	for _, ref := range refs {
		if s.sys.Kill(ref) == nil {
			s.log.Warn("supervisor exited without stopping its child; the child is killed",
				zap.Stringer("supervisor", s.self), zap.Stringer("child", ref), zap.NamedError("supervisor_reason", d.Reason))
		}
	}
}

// link records ref as a running child; unlink forgets it.
func (s *sup) link(ref actor.Ref) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	if s.linked == nil {
		return
	}
	s.linkSeq++
	s.linked[ref] = s.linkSeq
}

func (s *sup) unlink(ref actor.Ref) {
	s.linkMu.Lock()
	defer s.linkMu.Unlock()
	delete(s.linked, ref)
}

// emit logs an event and hands it to the listener. It builds nothing the
// logger or the listener does not take: a restart emits three events.
func (s *sup) emit(t EventType, c *child, ref actor.Ref, reason error) {
	var id string
	if c != nil {
		id = c.spec.ID
	}
	level := zap.InfoLevel
	switch t {
	case ChildStartFailed, ChildAbandoned, IntensityExceeded:
		level = zap.ErrorLevel
	case ChildExited:
		if !actor.IsNormal(reason) {
			level = zap.WarnLevel
		}
	}
	if ce := s.log.Check(level, t.logMessage()); ce != nil {
		ce.Write(zap.Stringer("supervisor", s.self), zap.String("child", id),
			zap.Stringer("ref", ref), zap.Error(reason))
	}
	if s.listener != nil {
		s.listener(Event{Type: t, Supervisor: s.self, Name: s.name, ChildID: id, Ref: ref, Reason: reason, Time: time.Now()})
	}
}

func (s *sup) start(ctx *actor.Context, c *child) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start function panicked: %v", r)
		}
	}()
	ref, err := c.spec.Start(s.ctx, s.sys, s.extra)
	if err == nil && ref.IsZero() {
		err = errors.New("start function returned the zero Ref and no error (return actor.Ignore to start nothing)")
	}
	if errors.Is(err, actor.Ignore) {
		c.ref = actor.Ref{}
		s.emit(ChildIgnored, c, actor.Ref{}, nil)
		return nil
	}
	if err != nil {
		s.emit(ChildStartFailed, c, actor.Ref{}, err)
		return err
	}
	c.ref = ref
	c.mon = ctx.Monitor(ref)
	s.link(ref)
	s.emit(ChildStarted, c, ref, nil)
	return nil
}

// stop stops one running child by its shutdown spec. The monitor is removed
// first, so the child's exit is not taken for a crash.
func (s *sup) stop(c *child) {
	if c.ref.IsZero() {
		return
	}
	ref := c.ref
	s.sys.Demonitor(c.mon)
	c.ref = actor.Ref{}
	timeout := c.spec.shutdown()
	err := s.sys.StopTimeout(context.Background(), ref, actor.Shutdown, timeout)
	s.unlink(ref)
	switch {
	case timeout == BrutalKill:
		s.emit(ChildAbandoned, c, ref, fmt.Errorf("%w: brutal kill", actor.ErrKilled))
	case err == nil, errors.Is(err, actor.ErrNotFound), errors.Is(err, actor.ErrSystemStopped):
		// ErrSystemStopped: the system's Shutdown is stopping every
		// actor at once, this child with them.
		s.emit(ChildStopped, c, ref, actor.Shutdown)
	default:
		s.emit(ChildAbandoned, c, ref, err)
	}
}

func (s *sup) stopChildren(cs []*child) {
	for i := len(cs) - 1; i >= 0; i-- {
		s.stop(cs[i])
	}
}

func (s *sup) index(id string) int {
	for i, c := range s.children {
		if c.spec.ID == id {
			return i
		}
	}
	return -1
}

// countID counts the children with id: more than one only in a dynamic
// supervisor, where ids need not be unique.
func (s *sup) countID(id string) int {
	n := 0
	for _, c := range s.children {
		if c.spec.ID == id {
			n++
		}
	}
	return n
}

func (s *sup) byRef(ref actor.Ref) int {
	for i, c := range s.children {
		if c.ref == ref {
			return i
		}
	}
	return -1
}

func (s *sup) remove(i int) {
	s.children = append(s.children[:i], s.children[i+1:]...)
}

// childExited applies the restart type, the intensity and the strategy to a
// child that exited on its own.
func (s *sup) childExited(ctx *actor.Context, d actor.Down) {
	i := s.byRef(d.Ref)
	if i < 0 {
		return // an instance this supervisor already stopped or replaced
	}
	c := s.children[i]
	c.ref = actor.Ref{}
	s.unlink(d.Ref)
	s.emit(ChildExited, c, d.Ref, d.Reason)
	restart := c.spec.Restart == Permanent || (c.spec.Restart == Transient && !actor.IsNormal(d.Reason))
	if s.sys.Stopped() {
		// The system is shutting down, stopping every actor at once: a
		// child it stopped is not restarted.
		return
	}
	if !restart {
		if c.spec.Restart == Temporary || s.dynamic {
			s.remove(i)
		}
		return
	}
	s.restart(ctx, c, d.Reason)
}

// restart counts a restart against the intensity and restarts c (and, by
// the strategy, its siblings).
func (s *sup) restart(ctx *actor.Context, c *child, reason error) {
	if !s.allowRestart() {
		err := &IntensityError{Supervisor: s.label(), MaxRestarts: s.intensity.MaxRestarts,
			Period: s.intensity.Period, LastChild: c.spec.ID, LastReason: reason}
		s.emit(IntensityExceeded, c, actor.Ref{}, err)
		ctx.Stop(err)
		return
	}
	group := []*child{c}
	switch s.strategy {
	case OneForAll:
		group = s.children
	case RestForOne:
		group = s.children[s.index(c.spec.ID):]
	}
	if len(group) > 1 {
		s.stopChildren(group)
		kept := group[:0:0]
		for _, g := range group {
			if g == c || g.spec.Restart != Temporary {
				kept = append(kept, g)
			}
		}
		s.children = append(s.children[:len(s.children)-len(group)], kept...)
		group = kept
	}
	for _, g := range group {
		if !g.ref.IsZero() {
			continue
		}
		if err := s.start(ctx, g); err != nil {
			// Try again through the mailbox, so the retry counts against
			// the intensity and other messages are not starved.
			g.startErr = err
			_ = s.sys.Send(s.self, retryRestart{id: g.spec.ID})
			return
		}
		if !g.ref.IsZero() {
			s.emit(ChildRestarted, g, g.ref, nil)
		}
	}
}

// allowRestart records a restart and reports whether the restarts within
// the period are still within MaxRestarts. Only the last MaxRestarts+1
// times are kept, oldest first.
func (s *sup) allowRestart() bool {
	now := clock()
	cut := now - int64(s.intensity.Period)
	drop := 0
	for drop < len(s.restarts) && s.restarts[drop] <= cut {
		drop++
	}
	if over := len(s.restarts) - drop + 1 - (s.intensity.MaxRestarts + 1); over > 0 {
		drop += over
	}
	s.restarts = append(s.restarts[drop:], now)
	return len(s.restarts) <= s.intensity.MaxRestarts
}

// epoch anchors clock.
var epoch = time.Now()

// clock reads the monotonic clock in nanoseconds since epoch: restart times
// kept as plain integers hold no pointer for the garbage collector to scan.
func clock() int64 { return int64(time.Since(epoch)) }

func (s *sup) label() string {
	if s.name != "" {
		return s.name
	}
	return s.self.String()
}

func (s *sup) which() []ChildInfo {
	out := make([]ChildInfo, len(s.children))
	for i, c := range s.children {
		out[i] = ChildInfo{ID: c.spec.ID, Ref: c.ref, Running: !c.ref.IsZero(), Kind: c.spec.Kind, Restart: c.spec.Restart}
	}
	return out
}

func (s *sup) count() Counts {
	var n Counts
	for _, c := range s.children {
		n.Specs++
		if !c.ref.IsZero() {
			n.Active++
		}
		if c.spec.Kind == Supervisor {
			n.Supervisors++
		} else {
			n.Workers++
		}
	}
	return n
}

func (s *sup) startChild(ctx *actor.Context, spec Child) (actor.Ref, error) {
	if s.dynamic {
		if s.max > 0 && len(s.children) >= s.max {
			return actor.Ref{}, fmt.Errorf("%w: %d", ErrMaxChildren, s.max)
		}
		if spec.ID == "" {
			s.dynIDs++
			spec.ID = fmt.Sprintf("child-%d", s.dynIDs)
		}
	} else if spec.ID == "" {
		return actor.Ref{}, fmt.Errorf("%w: child id is empty", ErrInvalidSpec)
	}
	if err := spec.validate(); err != nil {
		return actor.Ref{}, err
	}
	if !s.dynamic && s.index(spec.ID) >= 0 {
		return actor.Ref{}, fmt.Errorf("%w: duplicate child id %q: it is present already (RestartChild starts it again, DeleteChild removes it)", ErrInvalidSpec, spec.ID)
	}
	c := &child{spec: spec}
	if err := s.start(ctx, c); err != nil {
		return actor.Ref{}, fmt.Errorf("%w: %q: %w", ErrStartChild, spec.ID, err)
	}
	if s.dynamic && c.ref.IsZero() {
		return actor.Ref{}, nil // ignored: a dynamic supervisor keeps no spec
	}
	s.children = append(s.children, c)
	return c.ref, nil
}

func (s *sup) terminateChild(m terminateChild) error {
	i := -1
	if !m.ref.IsZero() {
		i = s.byRef(m.ref)
	} else {
		i = s.index(m.id)
		if n := s.countID(m.id); n > 1 {
			return fmt.Errorf("%w: %d children have the id %q: terminate one by its Ref (TerminateChildRef)", ErrInvalidSpec, n, m.id)
		}
	}
	if i < 0 {
		if m.ref.IsZero() {
			return fmt.Errorf("%w: %q", ErrChildNotFound, m.id)
		}
		return fmt.Errorf("%w: %v", ErrChildNotFound, m.ref)
	}
	c := s.children[i]
	s.stop(c)
	if s.dynamic || c.spec.Restart == Temporary {
		s.remove(i)
	}
	return nil
}

func (s *sup) restartChild(ctx *actor.Context, id string) (actor.Ref, error) {
	i := s.index(id)
	if i < 0 {
		return actor.Ref{}, fmt.Errorf("%w: %q", ErrChildNotFound, id)
	}
	c := s.children[i]
	if !c.ref.IsZero() {
		return c.ref, fmt.Errorf("%w: %q", ErrChildRunning, id)
	}
	if err := s.start(ctx, c); err != nil {
		return actor.Ref{}, fmt.Errorf("%w: %q: %w", ErrStartChild, id, err)
	}
	return c.ref, nil
}

func (s *sup) deleteChild(id string) error {
	i := s.index(id)
	if i < 0 {
		return fmt.Errorf("%w: %q", ErrChildNotFound, id)
	}
	if !s.children[i].ref.IsZero() {
		return fmt.Errorf("%w: %q", ErrChildRunning, id)
	}
	s.remove(i)
	return nil
}

// supervisorShutdown is the supervisor actor's own shutdown timeout: it
// waits for its children, however long their shutdowns take.
const supervisorShutdown = time.Duration(math.MaxInt64)

// Start starts a static supervisor and its children, in order, before it
// returns. If a child fails to start, the children already started are
// stopped in reverse order and Start returns an error wrapping
// ErrStartChild.
func Start(ctx context.Context, sys *actor.System, spec Spec) (*Ref, error) {
	if sys == nil {
		return nil, fmt.Errorf("%w: no actor system (make one with actor.NewSystem)", ErrInvalidSpec)
	}
	in, err := spec.Intensity.resolve()
	if err != nil {
		return nil, err
	}
	if spec.Strategy > RestForOne {
		return nil, fmt.Errorf("%w: unknown strategy %d", ErrInvalidSpec, spec.Strategy)
	}
	s := &sup{name: spec.Name, strategy: spec.Strategy, intensity: in, listener: spec.Listener, log: spec.Logger}
	seen := make(map[string]bool, len(spec.Children))
	for _, c := range spec.Children {
		if c.ID == "" {
			return nil, fmt.Errorf("%w: child id is empty", ErrInvalidSpec)
		}
		if seen[c.ID] {
			return nil, fmt.Errorf("%w: duplicate child id %q", ErrInvalidSpec, c.ID)
		}
		seen[c.ID] = true
		if err := c.validate(); err != nil {
			return nil, err
		}
		s.children = append(s.children, &child{spec: c})
	}
	ref, err := sys.Spawn(ctx, s, actor.Options{Name: spec.Name, ShutdownTimeout: supervisorShutdown})
	if err != nil {
		return nil, err
	}
	return &Ref{sys: sys, target: ref, ref: ref}, nil
}

// StartDynamic starts a dynamic supervisor with no children.
func StartDynamic(ctx context.Context, sys *actor.System, spec DynamicSpec) (*Ref, error) {
	if sys == nil {
		return nil, fmt.Errorf("%w: no actor system (make one with actor.NewSystem)", ErrInvalidSpec)
	}
	in, err := spec.Intensity.resolve()
	if err != nil {
		return nil, err
	}
	if spec.MaxChildren < 0 {
		return nil, fmt.Errorf("%w: MaxChildren %d is negative", ErrInvalidSpec, spec.MaxChildren)
	}
	s := &sup{name: spec.Name, strategy: OneForOne, intensity: in, dynamic: true, max: spec.MaxChildren,
		extra: spec.ExtraArguments, listener: spec.Listener, log: spec.Logger}
	ref, err := sys.Spawn(ctx, s, actor.Options{Name: spec.Name, ShutdownTimeout: supervisorShutdown})
	if err != nil {
		return nil, err
	}
	return &Ref{sys: sys, target: ref, ref: ref}, nil
}
