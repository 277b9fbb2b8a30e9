package supervisor

import (
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/registry"
)

// SingletonOptions configures a Singleton. Session is required; every
// other field has a working zero value.
type SingletonOptions struct {
	// Session is the node's lease session. The candidacy, the leadership
	// and the global name are bound to its epochs, and the child is stopped
	// when an epoch is lost, before etcd can expire its lease. Required.
	Session *lease.Session
	// Registry, if set, registers the running child under its id as a
	// global name while the term lasts, so actor.Name(id) reaches it from
	// any node; the name follows the child across restarts. Nil means the
	// child is not registered.
	Registry *registry.Registry
	// Prefix is the cluster's etcd key prefix; candidates live under
	// Prefix + "/election/" + id + "/". Zero means "/cohort". Every node
	// of the cluster must use the same prefix.
	Prefix string
	// Intensity bounds restarts of the child on this node: more than
	// MaxRestarts restarts (or failed starts) within Period make the
	// wrapper exit with an *IntensityError, resigning, so another node may
	// take over, and the wrapper's parent applies its own strategy.
	// Default 1 in 5 s, as OTP.
	Intensity Intensity
	// Listener, if set, receives every singleton event, synchronously in
	// the wrapper's goroutine: it must not block.
	Listener func(SingletonEvent)
	// Logger receives singleton events. Default: the system's logger.
	Logger *zap.Logger
}

// Singleton wraps child so that, with the returned Child added to a
// supervisor on every node of a cluster, exactly one node runs child at a
// time; child.ID is the uniqueness key. It works for a worker and for a
// whole subtree (a child of Kind Supervisor).
//
// The returned Child is a permanent supervisor-kind child with the same
// id: an actor that campaigns in the election named after the id with
// the node's session, and observes the leader. On winning it starts child
// with a context carrying the Term (see TermFrom, Fenced, NestedFenced),
// registers it under its id in opts.Registry, and restarts it by its
// restart type within opts.Intensity. A temporary child that exits, or a
// transient one that exits normally, is not restarted: the node keeps
// the leadership, so no other node runs it either, until the wrapper
// stops.
//
// When the term ends under it, the wrapper stops the child first, with a
// reason wrapping ErrLeadershipLost and the cause; on lease loss the child
// gets at most half the lease margin to terminate and is abandoned after
// that, so it has stopped before etcd can expire the lease and elect
// another node (a process paused past that point gets 10 ms). Then the
// wrapper campaigns again. When the wrapper is
// stopped, it stops the child (reason actor.Shutdown), releases the name
// and resigns, so another node takes over within milliseconds.
//
// Bad input is reported when the wrapper starts, as an error wrapping
// ErrInvalidSpec (nil Session, invalid child spec, an id that is not a
// valid name or holds '/'), or ErrSingletonRunning when a wrapper with
// this id already runs on the same session.
func Singleton(child Child, opts SingletonOptions) Child {
	return Child{ID: child.ID, Kind: Supervisor, Restart: Permanent, Shutdown: Infinity,
		Start: func(ctx context.Context, sys *actor.System, extra []any) (actor.Ref, error) {
			return startSingleton(ctx, sys, child, opts, extra)
		}}
}

func startSingleton(ctx context.Context, sys *actor.System, child Child, opts SingletonOptions, extra []any) (actor.Ref, error) {
	if opts.Session == nil {
		return actor.Ref{}, fmt.Errorf("%w: singleton %q has no lease Session", ErrInvalidSpec, child.ID)
	}
	if child.ID == "" {
		return actor.Ref{}, fmt.Errorf("%w: singleton child id is empty", ErrInvalidSpec)
	}
	if err := child.validate(); err != nil {
		return actor.Ref{}, err
	}
	in, err := opts.Intensity.resolve()
	if err != nil {
		return actor.Ref{}, err
	}
	el, err := election.New(opts.Session, child.ID, election.Config{Prefix: opts.Prefix, Logger: opts.Logger})
	if err != nil {
		return actor.Ref{}, fmt.Errorf("%w: singleton id: %w", ErrInvalidSpec, err)
	}
	key := activeKey{session: opts.Session, id: child.ID}
	claim, err := claimActive(ctx, key)
	if err != nil {
		return actor.Ref{}, err
	}
	s := &singleton{spec: child, opts: opts, in: in, extra: extra, el: el, claim: claim, log: opts.Logger}
	ref, err := sys.Spawn(ctx, s, actor.Options{ShutdownTimeout: supervisorShutdown})
	if err != nil {
		claim.release()
		return actor.Ref{}, err
	}
	return ref, nil
}

// singleton is the wrapper actor. Its fields are touched only from its
// callbacks, except live and clean, which the campaigner reads.
type singleton struct {
	spec  Child
	opts  SingletonOptions
	in    Intensity
	extra []any
	el    *election.Election
	claim *activeEntry
	log   *zap.Logger

	sys  *actor.System
	self actor.Ref

	term        *Term
	child       actor.Ref
	mon         actor.MonitorRef
	finished    bool // the child ended for good in this term
	restarts    []time.Time
	named       actor.Ref // the Ref registered under the id in this term
	nameRetry   *time.Timer
	nameBackoff time.Duration

	live  atomic.Pointer[actor.Ref] // the running child
	clean atomic.Bool               // Terminate has stopped the child

	cancel context.CancelFunc
	wg     sync.WaitGroup
}

// Messages to the wrapper from its own goroutines.
type (
	termStarted struct{ t *Term }
	termEnded   struct{ t *Term }
	leaderSeen  struct{ l election.Leader }
	retryStart  struct{ t *Term }
	retryName   struct{ t *Term }
)

const (
	singletonMinBackoff = 50 * time.Millisecond
	singletonMaxBackoff = 2 * time.Second
)

func (s *singleton) Init(ctx *actor.Context, _ any) error {
	s.sys, s.self = ctx.System(), ctx.Self()
	if s.log == nil {
		s.log = s.sys.Logger()
	}
	s.log = s.log.With(zap.String("singleton", s.spec.ID), zap.String("node", s.sys.Node()))
	run, cancel := context.WithCancel(ctx.Context())
	s.cancel = cancel
	s.wg.Add(2)
	go s.campaign(run)
	go s.observe(run)
	return nil
}

func (s *singleton) HandleCall(_ *actor.Context, msg any) (any, error) {
	return nil, fmt.Errorf("%w: singleton wrapper got %T", actor.ErrUnhandled, msg)
}

func (s *singleton) HandleInfo(ctx *actor.Context, msg any) error {
	switch m := msg.(type) {
	case termStarted:
		s.elected(ctx, m.t)
	case termEnded:
		s.ended(m.t)
	case leaderSeen:
		s.emit(SingletonEvent{Type: SingletonLeaderChanged, Token: m.l.Rev, Leader: m.l.Value})
	case actor.Down:
		s.childExited(ctx, m)
	case retryStart:
		if s.term == m.t && s.child.IsZero() && !s.finished {
			s.startChild(ctx)
		}
	case retryName:
		if s.term == m.t {
			s.syncName()
		}
	}
	return nil
}

// Terminate stops the child, releases its name and then has the
// campaigner resign, so the next node takes over at once.
func (s *singleton) Terminate(_ *actor.Context, _ error) {
	s.claim.exit()
	reason := error(actor.Shutdown)
	lost := false
	if s.term != nil {
		if err := s.term.Err(); err != nil {
			reason, lost = err, isEpochLoss(err)
		}
	}
	s.stopChild(reason, lost)
	s.clean.Store(true)
	s.dropName(lost)
	if s.term != nil {
		s.term.release()
	}
	s.cancel()
	s.wg.Wait()
	if s.term != nil {
		s.emit(SingletonEvent{Type: SingletonLost, Token: s.term.Token(), Reason: s.term.Err()})
		s.term = nil
	}
}

// campaign runs the election: it campaigns, hands each term to the actor,
// and waits for the term to end, until the wrapper exits; then it resigns
// a term it still holds. It is the last of the wrapper's goroutines to
// let go of the singleton's id on this node.
func (s *singleton) campaign(run context.Context) {
	defer s.wg.Done()
	defer s.claim.release()
	backoff := singletonMinBackoff
	for run.Err() == nil {
		l, err := s.el.Campaign(run, s.sys.Node())
		if err != nil {
			switch {
			case run.Err() != nil:
				return
			case errors.Is(err, lease.ErrClosed):
				s.log.Info("singleton: lease session closed; not campaigning any more")
				<-run.Done()
				return
			case errors.Is(err, election.ErrEpochLost):
				continue // Campaign waits for the next epoch
			}
			s.log.Warn("singleton: campaign failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			if !sleepCtx(run, backoff) {
				return
			}
			backoff = min(2*backoff, singletonMaxBackoff)
			continue
		}
		backoff = singletonMinBackoff
		t := newTerm(s.spec.ID, s.sys.Node(), l)
		_ = s.sys.Send(s.self, termStarted{t})
		select {
		case <-l.Done():
		case <-run.Done():
			s.handOver(l)
		}
		t.end()
		if err := s.sys.Send(s.self, termEnded{t}); err != nil {
			// The wrapper is gone: handOver stopped the child.
			t.release()
		}
	}
}

// handOver resigns l once the wrapper is gone. If the wrapper exited
// without its Terminate (it was killed), the child may still run: it is
// killed first, so resigning never lets another node start a second one.
func (s *singleton) handOver(l *election.Leadership) {
	s.claim.exit()
	if !s.clean.Load() {
		if ref := s.live.Load(); ref != nil {
			_ = s.sys.Kill(*ref)
		}
	}
	ctx, cancel := context.WithTimeout(l.Epoch().Context(), l.Epoch().TTL())
	defer cancel()
	if err := l.Resign(ctx); err != nil && l.Epoch().Err() == nil {
		s.log.Warn("singleton: resign failed; the leader key goes with the lease", zap.Error(err))
	}
}

// observe forwards every change of leader to the actor.
func (s *singleton) observe(run context.Context) {
	defer s.wg.Done()
	for l := range s.el.Observe(run) {
		_ = s.sys.Send(s.self, leaderSeen{l})
	}
}

func (s *singleton) elected(ctx *actor.Context, t *Term) {
	if t.Err() != nil {
		return // already over; its termEnded follows
	}
	if s.term != nil {
		s.ended(s.term)
	}
	s.term, s.finished = t, false
	s.emit(SingletonEvent{Type: SingletonElected, Token: t.Token()})
	s.startChild(ctx)
}

func (s *singleton) ended(t *Term) {
	if s.term != t {
		t.release() // a term that ended before it began: no child ran
		return
	}
	reason := t.Err()
	s.stopChild(reason, isEpochLoss(reason))
	s.dropName(isEpochLoss(reason))
	t.release()
	s.term = nil
	s.emit(SingletonEvent{Type: SingletonLost, Token: t.Token(), Reason: reason})
}

func (s *singleton) startChild(ctx *actor.Context) {
	t := s.term
	ref, err := s.callStart(t)
	if err != nil {
		s.emit(SingletonEvent{Type: SingletonChildStartFailed, Token: t.Token(), Reason: err})
		if !s.allowRestart() {
			s.giveUp(ctx, err)
			return
		}
		// Retry through the mailbox, so the end of the term is not
		// starved and every retry counts against the intensity.
		_ = s.sys.Send(s.self, retryStart{t})
		return
	}
	s.child = ref
	s.live.Store(&ref)
	s.mon = ctx.Monitor(ref)
	s.emit(SingletonEvent{Type: SingletonChildStarted, Token: t.Token(), Ref: ref})
	s.syncName()
}

func (s *singleton) callStart(t *Term) (ref actor.Ref, err error) {
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("start function panicked: %v", r)
		}
	}()
	ref, err = s.spec.Start(withTerm(t), s.sys, s.extra)
	if err == nil && ref.IsZero() {
		err = errors.New("start function returned the zero Ref and no error")
	}
	return ref, err
}

func (s *singleton) childExited(ctx *actor.Context, d actor.Down) {
	if d.Ref != s.child || s.child.IsZero() {
		return
	}
	s.child = actor.Ref{}
	s.live.Store(nil)
	token := int64(0)
	if s.term != nil {
		token = s.term.Token()
	}
	s.emit(SingletonEvent{Type: SingletonChildExited, Token: token, Ref: d.Ref, Reason: d.Reason})
	restart := s.spec.Restart == Permanent || (s.spec.Restart == Transient && !actor.IsNormal(d.Reason))
	if !restart {
		s.finished = true
		s.syncName()
		return
	}
	if !s.allowRestart() {
		s.giveUp(ctx, d.Reason)
		return
	}
	s.startChild(ctx)
}

// giveUp makes the wrapper exit with an *IntensityError; its Terminate
// resigns, and its parent applies its own strategy.
func (s *singleton) giveUp(ctx *actor.Context, reason error) {
	err := &IntensityError{Supervisor: "singleton " + strconv.Quote(s.spec.ID), MaxRestarts: s.in.MaxRestarts,
		Period: s.in.Period, LastChild: s.spec.ID, LastReason: reason}
	s.log.Error("singleton: restart intensity exceeded; giving up the leadership", zap.Error(err))
	ctx.Stop(err)
}

// allowRestart records a restart and reports whether the restarts within
// the period are still within MaxRestarts.
func (s *singleton) allowRestart() bool {
	now := time.Now()
	cut := now.Add(-s.in.Period)
	kept := s.restarts[:0]
	for _, r := range s.restarts {
		if r.After(cut) {
			kept = append(kept, r)
		}
	}
	if len(kept) > s.in.MaxRestarts {
		kept = kept[len(kept)-s.in.MaxRestarts:]
	}
	s.restarts = append(kept, now)
	return len(s.restarts) <= s.in.MaxRestarts
}

// lostGrace is the least time a child gets to terminate after its lease
// epoch was lost. It matters only when the process was paused (or starved)
// past the point where the child should have stopped: another node may
// already run the singleton then, and only fencing protects; the grace
// lets the child's Terminate start and see why.
const lostGrace = 10 * time.Millisecond

// stopChild stops the running child with reason. When the lease epoch was
// lost, the child gets only until half the margin past the epoch's
// alive-until instant (well before etcd can expire the lease), or
// lostGrace if that has passed, and is abandoned after that.
func (s *singleton) stopChild(reason error, lost bool) {
	if s.child.IsZero() {
		return
	}
	ref := s.child
	s.sys.Demonitor(s.mon)
	s.child = actor.Ref{}
	timeout := s.spec.shutdown()
	if lost && s.term != nil && timeout != BrutalKill {
		budget := time.Until(s.term.Epoch().AliveUntil().Add(s.opts.Session.Config().Margin / 2))
		timeout = min(timeout, max(budget, lostGrace))
	}
	err := s.sys.StopTimeout(context.Background(), ref, reason, timeout)
	s.live.Store(nil)
	abandoned := timeout <= 0 || errors.Is(err, actor.ErrKilled)
	token := int64(0)
	if s.term != nil {
		token = s.term.Token()
	}
	s.emit(SingletonEvent{Type: SingletonChildStopped, Token: token, Ref: ref, Reason: reason, Abandoned: abandoned})
}

// nameMeta is the metadata registered with a singleton's name.
func (s *singleton) nameMeta() []byte {
	return fmt.Appendf(nil, `{"node":%q,"token":%d}`, s.sys.Node(), s.term.Token())
}

// syncName makes the global name point at the running child (or releases
// it when no child runs), retrying on failure while the term lasts.
func (s *singleton) syncName() {
	reg := s.opts.Registry
	if reg == nil || s.term == nil || s.child == s.named {
		return
	}
	t := s.term
	ctx, cancel := context.WithTimeout(t.Epoch().Context(), t.Epoch().TTL())
	defer cancel()
	stop := context.AfterFunc(t.Context(), cancel)
	defer stop()
	want := s.child
	var err error
	switch {
	case want.IsZero():
		if err = reg.Unregister(ctx, s.spec.ID); errors.Is(err, registry.ErrNotFound) {
			err = nil
		}
	case s.named.IsZero():
		err = reg.Register(ctx, s.spec.ID, want, s.nameMeta())
		if errors.Is(err, registry.ErrAlreadyRegistered) {
			// Held by this node under the current epoch from an earlier
			// term (its release failed): take it over.
			if uerr := reg.Update(ctx, s.spec.ID, want, s.nameMeta()); uerr == nil {
				err = nil
			}
		}
	default:
		err = reg.Update(ctx, s.spec.ID, want, s.nameMeta())
		if errors.Is(err, registry.ErrNotFound) {
			err = reg.Register(ctx, s.spec.ID, want, s.nameMeta())
		}
	}
	if err == nil {
		s.named, s.nameBackoff = want, 0
		return
	}
	if t.Err() != nil {
		return
	}
	s.nameBackoff = min(max(2*s.nameBackoff, singletonMinBackoff), singletonMaxBackoff)
	s.emit(SingletonEvent{Type: SingletonNameFailed, Token: t.Token(), Ref: want, Reason: err})
	if s.nameRetry != nil {
		s.nameRetry.Stop()
	}
	sys, self := s.sys, s.self
	s.nameRetry = time.AfterFunc(s.nameBackoff, func() { _ = sys.Send(self, retryName{t}) })
}

// dropName releases the global name at the end of a term. After a lost
// epoch there is nothing to do: the name goes with the lease, and the
// registry has dropped it from its view already.
func (s *singleton) dropName(lost bool) {
	if s.nameRetry != nil {
		s.nameRetry.Stop()
		s.nameRetry = nil
	}
	reg := s.opts.Registry
	if reg == nil || s.named.IsZero() {
		return
	}
	s.named = actor.Ref{}
	if lost || s.term == nil {
		return
	}
	e := s.term.Epoch()
	ctx, cancel := context.WithTimeout(e.Context(), e.TTL())
	defer cancel()
	if err := reg.Unregister(ctx, s.spec.ID); err != nil && !errors.Is(err, registry.ErrNotFound) &&
		!errors.Is(err, registry.ErrNotOwner) && e.Err() == nil {
		s.log.Warn("singleton: releasing the global name failed; it goes with the lease", zap.Error(err))
	}
}

func (s *singleton) emit(e SingletonEvent) {
	e.ID, e.Node, e.Time = s.spec.ID, s.sys.Node(), time.Now()
	level := zap.InfoLevel
	switch e.Type {
	case SingletonLost:
		if !errors.Is(e.Reason, election.ErrResigned) {
			level = zap.WarnLevel
		}
	case SingletonChildExited:
		if !actor.IsNormal(e.Reason) {
			level = zap.WarnLevel
		}
	case SingletonChildStopped:
		if e.Abandoned {
			level = zap.ErrorLevel
		}
	case SingletonChildStartFailed, SingletonNameFailed:
		level = zap.ErrorLevel
	case SingletonLeaderChanged:
		level = zap.DebugLevel
	}
	if ce := s.log.Check(level, e.Type.String()); ce != nil {
		ce.Write(zap.Int64("token", e.Token), zap.String("leader", e.Leader), zap.Stringer("ref", e.Ref),
			zap.Bool("abandoned", e.Abandoned), zap.Error(e.Reason))
	}
	if s.opts.Listener != nil {
		s.opts.Listener(e)
	}
}

func sleepCtx(ctx context.Context, d time.Duration) bool {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}

// activeKey names one singleton on one node's session: a node takes part
// in a singleton's election once (its candidate key is named after its
// lease).
type activeKey struct {
	session *lease.Session
	id      string
}

// activeEntry is a wrapper's hold on its activeKey.
type activeEntry struct {
	key         activeKey
	exiting     chan struct{} // closed when the wrapper starts to exit
	released    chan struct{} // closed when it has let go of the election
	exitOnce    sync.Once
	releaseOnce sync.Once
}

var actives struct {
	sync.Mutex
	m map[activeKey]*activeEntry
}

// claimActive takes key for a new wrapper. A wrapper still exiting (as when
// a parent restarts it) is waited for; a live one is ErrSingletonRunning.
func claimActive(ctx context.Context, key activeKey) (*activeEntry, error) {
	for {
		actives.Lock()
		if actives.m == nil {
			actives.m = make(map[activeKey]*activeEntry)
		}
		old := actives.m[key]
		if old == nil {
			e := &activeEntry{key: key, exiting: make(chan struct{}), released: make(chan struct{})}
			actives.m[key] = e
			actives.Unlock()
			return e, nil
		}
		actives.Unlock()
		select {
		case <-old.exiting:
		default:
			return nil, fmt.Errorf("%w: %q", ErrSingletonRunning, key.id)
		}
		select {
		case <-old.released:
		case <-ctx.Done():
			return nil, fmt.Errorf("singleton %q: waiting for the previous wrapper to exit: %w", key.id, ctx.Err())
		}
	}
}

func (e *activeEntry) exit() { e.exitOnce.Do(func() { close(e.exiting) }) }

func (e *activeEntry) release() {
	e.releaseOnce.Do(func() {
		e.exit()
		actives.Lock()
		if actives.m[e.key] == e {
			delete(actives.m, e.key)
		}
		actives.Unlock()
		close(e.released)
	})
}
