package actor

import (
	"context"
	"crypto/rand"
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

// Config configures a System. Its zero value works.
type Config struct {
	// Node names the system in Refs. Default: "<hostname>-<pid>".
	Node string
	// Logger receives lifecycle and error logs. Default: no logging.
	Logger *zap.Logger
}

// System runs actors: it spawns them, routes calls, casts and sends to them,
// holds the node-local name table, and stops them. All methods are safe for
// concurrent use.
type System struct {
	node        string
	incarnation uint64
	log         *zap.Logger

	ids     atomic.Uint64
	procs   procTable
	live    atomic.Int64
	stopped atomic.Bool

	names struct {
		sync.RWMutex
		m map[string]*process
	}
	resolvers atomic.Pointer[[]Resolver]
	remote    atomic.Pointer[Remote]
	// remoteMons holds the cancel functions of monitors on other nodes.
	remoteMons sync.Map // monitor id -> func()
}

// NewSystem returns a running System.
func NewSystem(cfg Config) *System {
	s := &System{node: cfg.Node, log: cfg.Logger}
	if s.node == "" {
		host, _ := os.Hostname()
		s.node = host + "-" + strconv.Itoa(os.Getpid())
	}
	if s.log == nil {
		s.log = zap.NewNop()
	}
	var b [8]byte
	_, _ = rand.Read(b[:])
	s.incarnation = binary.LittleEndian.Uint64(b[:]) | 1
	s.names.m = make(map[string]*process)
	return s
}

// Node returns the node name this system puts in its Refs.
func (s *System) Node() string { return s.node }

// Logger returns the system's logger.
func (s *System) Logger() *zap.Logger { return s.log }

// FullPolicy says what sending to a full bounded mailbox does.
type FullPolicy uint8

const (
	// Block waits for room until the sender's context ends.
	Block FullPolicy = iota
	// FailFast returns ErrMailboxFull at once.
	FailFast
)

// DefaultShutdownTimeout is how long Stop waits for Terminate when the
// actor sets no ShutdownTimeout, as OTP's default for workers.
const DefaultShutdownTimeout = 5 * time.Second

// Options configure one spawn. The zero value works.
type Options struct {
	// Name, if set, registers the actor in the local name table before Init
	// runs; the spawn fails with ErrAlreadyRegistered if it is taken.
	Name string
	// Args is passed to Init.
	Args any
	// MailboxSize bounds the number of messages waiting in the mailbox.
	// Zero means unbounded.
	MailboxSize int
	// WhenFull is the policy when a bounded mailbox is full. Default Block.
	WhenFull FullPolicy
	// ShutdownTimeout bounds how long Stop waits for Terminate before it
	// abandons the actor. Zero means DefaultShutdownTimeout.
	ShutdownTimeout time.Duration
	// Ref, if set, is the Ref the actor gets: one returned by ReserveRef on
	// this system and not used before. It lets a caller publish where an
	// actor will run (in etcd, say) before the actor starts.
	Ref Ref
}

// ReserveRef returns a Ref no actor of this system has or will get, for
// Options.Ref.
func (s *System) ReserveRef() Ref {
	return Ref{Node: s.node, ID: s.ids.Add(1), Incarnation: s.incarnation}
}

// Spawn starts an actor. If the actor is an Initializer, Init runs in the
// calling goroutine before Spawn returns, like OTP's start_link; if Init
// fails or panics, Spawn returns the error and nothing is left running.
// Messages sent to the actor during Init wait in its mailbox.
func (s *System) Spawn(ctx context.Context, a Actor, opts Options) (Ref, error) {
	if err := ctx.Err(); err != nil {
		return Ref{}, fmt.Errorf("actor: spawn: %w", err)
	}
	pr, err := s.Prepare(a, opts)
	if err != nil {
		return Ref{}, err
	}
	if err := pr.Start(opts.Args); err != nil {
		return Ref{}, err
	}
	return pr.Ref(), nil
}

// Prepared is an actor registered under its Ref, and under opts.Name if
// set, that has not started: messages sent to it wait in its mailbox
// until Start runs its Init and lets it handle them. It lets a caller
// publish the Ref (in etcd, say) before the actor starts, and have
// messages sent on seeing it wait rather than fail. Start or Abandon must
// follow, once; until then the actor holds its mailbox (System.Shutdown
// and Stop end a prepared actor at once, as Abandon does, with their
// reason).
type Prepared struct{ p *process }

const (
	phaseStarted int32 = iota
	phasePrepared
	phaseAbandoned
)

// Prepare registers a, not started, as Spawn would before running Init
// (opts.Args is not used: Start takes the arguments).
func (s *System) Prepare(a Actor, opts Options) (*Prepared, error) {
	if a == nil {
		return nil, ErrNilActor
	}
	if s.stopped.Load() {
		return nil, ErrSystemStopped
	}
	if opts.MailboxSize < 0 {
		return nil, fmt.Errorf("%w: MailboxSize %d is negative", ErrInvalidOption, opts.MailboxSize)
	}
	if opts.ShutdownTimeout < 0 {
		return nil, fmt.Errorf("%w: ShutdownTimeout %v is negative", ErrInvalidOption, opts.ShutdownTimeout)
	}
	if opts.WhenFull != Block && opts.WhenFull != FailFast {
		return nil, fmt.Errorf("%w: WhenFull %d is neither Block nor FailFast", ErrInvalidOption, opts.WhenFull)
	}
	ref := opts.Ref
	if ref.IsZero() {
		ref = s.ReserveRef()
	} else if ref.Node != s.node || ref.Incarnation != s.incarnation || ref.ID == 0 || ref.ID > s.ids.Load() {
		return nil, fmt.Errorf("%w: Ref %v was not reserved on this system", ErrInvalidOption, ref)
	}
	p := &process{
		sys:      s,
		ref:      ref,
		actor:    a,
		limit:    int64(opts.MailboxSize),
		failFast: opts.WhenFull == FailFast,
		shutdown: opts.ShutdownTimeout,
		done:     make(chan struct{}),
	}
	if p.shutdown == 0 {
		p.shutdown = DefaultShutdownTimeout
	}
	p.cast, _ = a.(CastHandler)
	p.info, _ = a.(InfoHandler)
	p.term, _ = a.(Terminator)
	p.ctx.p = p
	p.phase.Store(phasePrepared)
	p.state.Store(stateRunning) // messages queue without scheduling until Init is done
	if !s.procs.insert(p) {
		return nil, fmt.Errorf("%w: Ref %v is in use", ErrInvalidOption, ref)
	}
	s.live.Add(1)
	if opts.Name != "" {
		if err := s.register(opts.Name, p); err != nil {
			p.exited.Store(true)
			s.remove(p)
			return nil, err
		}
	}
	return &Prepared{p: p}, nil
}

// Ref returns the prepared actor's Ref.
func (pr *Prepared) Ref() Ref { return pr.p.ref }

// Start runs the prepared actor: its Init, if it is an Initializer, with
// args in the calling goroutine, then the messages that waited. If Init
// fails or panics the actor exits with that reason (callers that waited
// get *ExitError) and Start returns the error. It fails with an error
// wrapping ErrNotFound when the actor was abandoned or stopped first.
func (pr *Prepared) Start(args any) error {
	p := pr.p
	if !p.phase.CompareAndSwap(phasePrepared, phaseStarted) || p.exited.Load() {
		return fmt.Errorf("%w: %v was stopped before it started", ErrNotFound, p.ref)
	}
	if in, ok := p.actor.(Initializer); ok {
		if err := p.sys.init(in, p, args); err != nil {
			p.exit(err)
			return fmt.Errorf("actor: init: %w", err)
		}
	}
	p.state.Store(stateIdle)
	p.mu.Lock()
	pending := p.q.head != nil || p.flags.Load() != 0
	p.mu.Unlock()
	if pending {
		p.schedule()
	}
	return nil
}

// Abandon ends the prepared actor without starting it, as if it had never
// existed: the messages that waited are dropped, callers that waited fail
// with an error wrapping ErrNotFound, and monitors get Down with it. It
// does nothing once Start has begun.
func (pr *Prepared) Abandon() {
	pr.p.abandon(fmt.Errorf("%w: %v was never started", ErrNotFound, pr.p.ref))
}

// abandon ends p with reason if it is prepared and not started, and
// reports whether it did.
func (p *process) abandon(reason error) bool {
	if !p.phase.CompareAndSwap(phasePrepared, phaseAbandoned) {
		return false
	}
	p.exit(reason)
	return true
}

func (s *System) init(in Initializer, p *process, args any) (err error) {
	defer func() {
		if r := recover(); r != nil {
			err = newPanicError(r)
		}
	}()
	p.ctx.stop = nil
	if err := in.Init(&p.ctx, args); err != nil {
		return err
	}
	if p.ctx.stop != nil {
		return p.ctx.stop
	}
	return nil
}

func (s *System) remove(p *process) {
	if s.procs.remove(p) {
		s.live.Add(-1)
	}
	s.names.Lock()
	for _, n := range p.names {
		if s.names.m[n] == p {
			delete(s.names.m, n)
		}
	}
	p.names = nil
	s.names.Unlock()
}

// local finds the live local process for r.
func (s *System) local(r Ref) (*process, error) {
	if r.IsZero() {
		return nil, ErrInvalidRef
	}
	if r.Node != s.node || r.Incarnation != s.incarnation {
		if r.Node == s.node {
			return nil, fmt.Errorf("%w: %v belongs to another run of this node", ErrNotFound, r)
		}
		return nil, fmt.Errorf("%w: %v (this node is %s)", ErrRemoteNode, r, s.node)
	}
	p := s.procs.load(r.ID)
	if p == nil {
		return nil, fmt.Errorf("%w: %v", ErrNotFound, r)
	}
	return p, nil
}

// resolve finds the process for a target, resolving names through the
// local table and then the resolvers. For an actor on another node with a
// Remote set, it returns a nil process and the actor's Ref.
func (s *System) resolve(ctx context.Context, t Target) (*process, Ref, error) {
	if p := s.fastLocal(t); p != nil {
		return p, p.ref, nil
	}
	if s.stopped.Load() {
		return nil, Ref{}, ErrSystemStopped
	}
	switch t := t.(type) {
	case Ref:
		return s.route(t)
	case Name:
		s.names.RLock()
		p := s.names.m[string(t)]
		s.names.RUnlock()
		if p != nil {
			return p, p.ref, nil
		}
		if err := ValidateName(string(t)); err != nil {
			return nil, Ref{}, err
		}
		if rs := s.resolvers.Load(); rs != nil {
			for _, r := range *rs {
				ref, err := r.Resolve(ctx, string(t))
				if err == nil {
					return s.route(ref)
				}
				if !isNotFound(err) {
					return nil, Ref{}, fmt.Errorf("actor: resolve %q: %w", string(t), err)
				}
			}
		}
		return nil, Ref{}, fmt.Errorf("%w %q", ErrNameNotFound, string(t))
	case nil:
		return nil, Ref{}, ErrInvalidRef
	default:
		return nil, Ref{}, fmt.Errorf("%w: a target is an actor.Ref or an actor.Name", ErrInvalidRef)
	}
}

// fastLocal returns the process when t is the Ref of a live local actor,
// and nil when resolve must look further: this is every message sent by
// Ref to an actor of this system, so it checks only what that needs.
func (s *System) fastLocal(t Target) *process {
	r, ok := t.(Ref)
	if !ok || r.Node != s.node || r.Incarnation != s.incarnation || s.stopped.Load() {
		return nil
	}
	return s.procs.load(r.ID)
}

// route finds the local process for r, or reports r as remote when a
// Remote is set and r names another node.
func (s *System) route(r Ref) (*process, Ref, error) {
	// Checked first: building local's error for every remote message
	// would cost more than sending it.
	if r.Node != s.node && !r.IsZero() && s.remoteFor(r) != nil {
		return nil, r, nil
	}
	p, err := s.local(r)
	if err != nil {
		return nil, r, err
	}
	return p, r, nil
}

func isNotFound(err error) bool { return err != nil && errors.Is(err, ErrNotFound) }

// AddResolver appends a resolver consulted, in order, for names missing from
// the local name table.
func (s *System) AddResolver(r Resolver) {
	for {
		old := s.resolvers.Load()
		var next []Resolver
		if old != nil {
			next = append(next, *old...)
		}
		next = append(next, r)
		if s.resolvers.CompareAndSwap(old, &next) {
			return
		}
	}
}

// Call sends msg to the target's HandleCall and waits for the reply. It
// fails at once with ErrNotFound if the target does not exist, with an
// *ExitError carrying the exit reason if the callee exits before replying,
// and with the context's error when ctx ends first. The caller's deadline is
// visible to the callee through Context.Deadline.
func (s *System) Call(ctx context.Context, to Target, msg any) (any, error) {
	if p := s.fastLocal(to); p != nil {
		return s.callLocal(ctx, p, envelope{msg: msg, tag: uint64(kindCall)})
	}
	p, ref, err := s.resolve(ctx, to)
	if err != nil {
		return nil, err
	}
	if p == nil {
		return s.remoteFor(ref).Call(ctx, ref, msg)
	}
	return s.callLocal(ctx, p, envelope{msg: msg, tag: uint64(kindCall)})
}

// callLocal queues a call-like envelope (its kind set in tag) and waits for
// the reply, the callee's exit or the end of ctx.
func (s *System) callLocal(ctx context.Context, p *process, env envelope) (any, error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	slot, gen := getSlot()
	env.slot = slot
	env.tag |= gen << kindBits
	slot.deadline = 0
	if d, ok := ctx.Deadline(); ok {
		slot.deadline = d.UnixNano()
	}
	if err := p.push(ctx, env, false); err != nil {
		slot.abandon(gen)
		slot.release(gen)
		return nil, err
	}
	// A caller that gives up leaves the slot to the garbage collector rather
	// than to the pool: its envelope may still be queued, and the actor
	// reads the call's deadline from the slot.
	select {
	case r := <-slot.ch:
		slot.release(gen)
		return r.val, r.err
	case <-p.done:
		if slot.abandon(gen) {
			r := <-slot.ch
			slot.release(gen)
			return r.val, r.err
		}
		return nil, p.exitErr()
	case <-ctx.Done():
		if slot.abandon(gen) {
			r := <-slot.ch
			slot.release(gen)
			return r.val, r.err
		}
		return nil, fmt.Errorf("actor: call %v: %w", p.ref, ctx.Err())
	}
}

// ExecFunc runs inside an actor's goroutine with the actor's behaviour, as
// System.Exec arranges.
type ExecFunc func(a Actor, ctx *Context) (any, error)

// Exec runs fn in the goroutine of the local actor at to, between two of its
// messages, and returns fn's result: a way for a supervisor or a tool to
// read or hand off an actor's state without racing its callbacks (as OTP's
// sys:get_state). It fails like Call: at once if the actor does not exist,
// with an *ExitError if it exits first, or when ctx ends. A panic in fn
// crashes the actor.
func (s *System) Exec(ctx context.Context, to Target, fn ExecFunc) (any, error) {
	p, err := s.resolveLocal(ctx, to)
	if err != nil {
		return nil, err
	}
	return s.callLocal(ctx, p, envelope{msg: fn, tag: uint64(kindExec)})
}

// Cast queues msg for the target's HandleCast and returns without waiting
// for it to be handled. It fails if the target does not exist or does not
// implement CastHandler; for a full bounded mailbox it blocks until ctx ends
// or fails with ErrMailboxFull, as the mailbox's policy says.
func (s *System) Cast(ctx context.Context, to Target, msg any) error {
	if p := s.fastLocal(to); p != nil && p.cast != nil {
		return p.push(ctx, envelope{msg: msg, tag: uint64(kindCast)}, false)
	}
	p, ref, err := s.resolve(ctx, to)
	if err != nil {
		return err
	}
	if p == nil {
		return s.remoteFor(ref).Cast(ctx, ref, msg)
	}
	if p.cast == nil {
		return fmt.Errorf("%w: %v does not implement HandleCast", ErrUnhandled, p.ref)
	}
	return p.push(ctx, envelope{msg: msg, tag: uint64(kindCast)}, false)
}

// Send queues a raw message for the target's HandleInfo, like Erlang's
// send. It never blocks: a full bounded mailbox fails with ErrMailboxFull
// whatever its policy.
func (s *System) Send(to Target, msg any) error {
	p, ref, err := s.resolve(context.Background(), to)
	if err != nil {
		return err
	}
	if p == nil {
		return s.remoteFor(ref).Send(ref, msg)
	}
	if p.info == nil {
		return fmt.Errorf("%w: %v does not implement HandleInfo", ErrUnhandled, p.ref)
	}
	if p.limit > 0 && !p.failFast {
		ctx, cancel := context.WithCancel(context.Background())
		cancel()
		if err := p.push(ctx, envelope{msg: msg, tag: uint64(kindInfo)}, false); err != nil {
			return fmt.Errorf("%w: %v", ErrMailboxFull, err)
		}
		return nil
	}
	return p.push(context.Background(), envelope{msg: msg, tag: uint64(kindInfo)}, false)
}

// CastTaken is Cast that returns once the target has taken msg from its
// mailbox to handle it next (HandleCast then runs, unless the actor crashes
// first), rather than once msg is queued. It fails as Call does: at once
// if the target does not exist (ErrNotFound) or has no HandleCast
// (ErrUnhandled), with an *ExitError if the actor exits before taking msg,
// with ctx's error when ctx ends first (msg may then still be taken and
// handled later, unless its deadline has passed), and with an error
// wrapping context.DeadlineExceeded if ctx's deadline passed while msg was
// queued (msg is then not handled). For a target on another node it costs a round
// trip; an error that wraps ErrNotDelivered, ErrNotFound or an
// *ExitError says the message was certainly not handled, so it may be sent
// again elsewhere without being handled twice.
func (s *System) CastTaken(ctx context.Context, to Target, msg any) error {
	return s.deliverTaken(ctx, to, msg, kindCastTaken)
}

// SendTaken is CastTaken for HandleInfo.
func (s *System) SendTaken(ctx context.Context, to Target, msg any) error {
	return s.deliverTaken(ctx, to, msg, kindInfoTaken)
}

func (s *System) deliverTaken(ctx context.Context, to Target, msg any, k kind) error {
	p, ref, err := s.resolve(ctx, to)
	if err != nil {
		return err
	}
	if p == nil {
		return s.remoteFor(ref).Taken(ctx, ref, msg, k == kindInfoTaken)
	}
	if err := p.unhandled(k); err != nil {
		return err
	}
	_, err = s.callLocal(ctx, p, envelope{msg: msg, tag: uint64(k)})
	return err
}

// Stop asks the target to exit with reason (nil means Normal): it handles
// the message in progress, runs Terminate and exits. Messages still queued
// are not handled; their callers get an *ExitError. Stop waits for the
// actor to exit, but no longer than the actor's shutdown timeout or ctx: then
// the actor is abandoned (see Kill) and Stop returns an error wrapping
// ErrKilled. Stop must not be called by an actor on itself; use
// Context.Stop. An actor on another node is stopped there, as OTP's
// exit/2 reaches a remote process: the reason travels in its wire form
// (see RegisterError), and Stop fails as a Call does when the node cannot
// be reached.
func (s *System) Stop(ctx context.Context, to Target, reason error) error {
	p, ref, err := s.resolve(ctx, to)
	if err != nil {
		return err
	}
	if p == nil {
		return s.remoteFor(ref).Stop(ctx, ref, reason, false)
	}
	return p.stop(ctx, reason, p.shutdown)
}

// StopTimeout is Stop with an explicit shutdown timeout in place of the
// actor's own, as supervisors use. A timeout of zero or less kills at once.
func (s *System) StopTimeout(ctx context.Context, to Target, reason error, timeout time.Duration) error {
	p, err := s.resolveLocal(ctx, to)
	if err != nil {
		return err
	}
	if timeout <= 0 {
		p.kill(fmt.Errorf("%w: brutal kill", ErrKilled))
		return nil
	}
	return p.stop(ctx, reason, timeout)
}

func (p *process) stop(ctx context.Context, reason error, timeout time.Duration) error {
	if reason == nil {
		reason = Normal
	}
	if p.abandon(reason) {
		return nil // prepared, never started: there is nothing to terminate
	}
	p.requestStop(reason)
	p.schedule()
	t := time.NewTimer(timeout)
	defer t.Stop()
	var why string
	select {
	case <-p.done:
		return nil
	case <-t.C:
		why = fmt.Sprintf("did not terminate within its shutdown timeout %v", timeout)
	case <-ctx.Done():
		why = fmt.Sprintf("stop abandoned: %v", ctx.Err())
	}
	err := fmt.Errorf("%w: %v %s", ErrKilled, p.ref, why)
	p.kill(err)
	return err
}

// Interrupt cancels the target's Context.Stopping, as a stop request does,
// without stopping it: a handler blocked on Stopping returns, and the actor
// goes on with its mailbox. Call it before a stop that must first run
// something in the actor (an Exec), as the distributed supervisor does
// before it takes a child's handoff state. ctx bounds the resolution of a
// name. It fails as Stop does when the target does not resolve to a live
// local actor (ErrNotFound, ErrRemoteNode, ErrInvalidRef).
func (s *System) Interrupt(ctx context.Context, to Target) error {
	p, err := s.resolveLocal(ctx, to)
	if err != nil {
		return err
	}
	p.interrupt()
	return nil
}

// Kill abandons the target at once, like OTP's brutal_kill: it handles no
// further message, Terminate does not run, it is reported dead to monitors
// and callers with a reason wrapping ErrKilled, and its names are freed. A
// goroutine cannot be killed in Go: a callback already running goes on until
// it returns, but its effects on messaging end (its reply, if any, is
// discarded only if the caller has already gone). An actor on another
// node is killed there; Kill returns once the kill is on its way, and
// fails as a Send does when the node cannot be reached.
func (s *System) Kill(to Target) error {
	p, ref, err := s.resolve(context.Background(), to)
	if err != nil {
		return err
	}
	if p == nil {
		return s.remoteFor(ref).Stop(context.Background(), ref, fmt.Errorf("%w: %v killed", ErrKilled, ref), true)
	}
	p.kill(fmt.Errorf("%w: %v killed", ErrKilled, p.ref))
	return nil
}

func (p *process) kill(reason error) {
	if p.abandon(reason) {
		return
	}
	p.flags.Or(flagKill)
	p.exit(reason)
}

// Alive reports whether r is a live actor of this system. It answers for
// this node's actors only: for a Ref of another node it is false whether
// or not that actor runs (monitor it, or call it, to know).
func (s *System) Alive(r Ref) bool {
	p, err := s.local(r)
	return err == nil && !p.exited.Load()
}

// Stopped reports whether Shutdown has begun: the system refuses all work
// from then on.
func (s *System) Stopped() bool { return s.stopped.Load() }

// Count returns the number of live actors.
func (s *System) Count() int { return int(s.live.Load()) }

// Shutdown stops every actor with reason Shutdown, all at once, waiting for
// each up to its shutdown timeout or ctx, and refuses all later work with
// ErrSystemStopped. Supervisors stop their children in order, so stopping
// the root supervisors first (as cohort's Node does) gives an orderly
// shutdown; Shutdown is the backstop for the rest.
func (s *System) Shutdown(ctx context.Context) error {
	s.stopped.Store(true)
	var wg sync.WaitGroup
	for _, p := range s.procs.all() {
		wg.Add(1)
		go func() {
			defer wg.Done()
			_ = p.stop(ctx, Shutdown, p.shutdown)
		}()
	}
	wg.Wait()
	return nil
}

// Register binds name to the live local actor ref. A name held by another
// live actor fails with *AlreadyRegisteredError; the name is freed when the
// actor exits.
func (s *System) Register(name string, ref Ref) error {
	p, err := s.local(ref)
	if err != nil {
		return err
	}
	return s.register(name, p)
}

func (s *System) register(name string, p *process) error {
	if err := ValidateName(name); err != nil {
		return err
	}
	s.names.Lock()
	defer s.names.Unlock()
	if q := s.names.m[name]; q != nil && q != p {
		return &AlreadyRegisteredError{Name: name, Owner: q.ref}
	}
	if p.exited.Load() {
		return fmt.Errorf("%w: %v has exited", ErrNotFound, p.ref)
	}
	if s.names.m[name] == nil {
		s.names.m[name] = p
		p.names = append(p.names, name)
	}
	return nil
}

// Unregister frees name. It reports whether the name was registered.
func (s *System) Unregister(name string) bool {
	s.names.Lock()
	defer s.names.Unlock()
	p := s.names.m[name]
	if p == nil {
		return false
	}
	delete(s.names.m, name)
	for i, n := range p.names {
		if n == name {
			p.names = append(p.names[:i], p.names[i+1:]...)
			break
		}
	}
	return true
}

// Whereis returns the actor registered locally under name.
func (s *System) Whereis(name string) (Ref, bool) {
	s.names.RLock()
	p := s.names.m[name]
	s.names.RUnlock()
	if p == nil {
		return Ref{}, false
	}
	return p.ref, true
}

// Caller is anything that can make a call: a *System, or a cohort Node.
type Caller interface {
	Call(ctx context.Context, to Target, msg any) (any, error)
}

// Call makes a call through c and asserts the reply's type: a reply that is
// not an R fails with ErrReplyType. A nil reply with no error gives R's zero
// value.
func Call[R any](ctx context.Context, c Caller, to Target, msg any) (R, error) {
	var zero R
	v, err := c.Call(ctx, to, msg)
	if err != nil {
		return zero, err
	}
	if v == nil {
		return zero, nil
	}
	r, ok := v.(R)
	if !ok {
		return zero, fmt.Errorf("%w: got %T, want %T", ErrReplyType, v, zero)
	}
	return r, nil
}
