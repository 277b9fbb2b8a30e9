package actor

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.uber.org/zap"
)

type kind uint8

const (
	kindCall kind = iota + 1
	kindCast
	kindInfo
	kindExec
	// kindCastTaken and kindInfoTaken are a cast and a raw message whose
	// sender waits, through the envelope's reply slot, until the actor
	// takes them (System.CastTaken, SendTaken).
	kindCastTaken
	kindInfoTaken
)

// Scheduling states of a process. An idle process holds no goroutine; the
// first message that arrives starts one, which drains the mailbox and exits
// when it finds it empty.
const (
	stateIdle int32 = iota
	stateRunning
)

// Flags checked by the run loop before every message.
const (
	flagStop int32 = 1 << iota // a stop was requested; terminate after the current message
	flagKill                   // abandoned: handle nothing more, do not terminate
)

// process is one actor. Its fields are grouped by who writes them, so
// that the senders' lock and queue, written for every message, share no
// cache line with the fields the actor's goroutine reads for every message
// (flags, limit, the behaviour) or writes (ctx): the groups are more than
// a cache line apart.
type process struct {
	// Set at spawn and read for every message, or rarely written.
	state    atomic.Int32
	flags    atomic.Int32
	limit    int64
	cast     CastHandler
	info     InfoHandler
	actor    Actor
	term     Terminator
	sys      *System
	ref      Ref
	failFast bool

	// Written by senders for every message.
	mu      sync.Mutex
	dead    bool  // guarded by mu
	q       queue // guarded by mu
	waiters chan struct{}

	monitors []monitorEntry // guarded by mu; in the order they were set
	names    []string       // guarded by sys.names.mu
	handoff  *process       // owned by the running goroutine
	count    atomic.Int64   // messages queued and not yet handled; bounded mailboxes only
	shutdown time.Duration

	stopReason error // set before flagStop; read by the run loop
	reason     error // exit reason; written before done is closed
	exited     atomic.Bool
	// phase goes from phasePrepared to phaseStarted (Start) or
	// phaseAbandoned (Abandon, or a stop before Start), whichever comes
	// first. It sits here to fill exited's padding.
	phase atomic.Int32
	done  chan struct{}

	// Written by the actor's goroutine for every message.
	ctx Context
}

// push appends env to the mailbox and schedules the process. It fails with
// ErrNotFound when the process has exited, and for a full bounded mailbox
// either fails with ErrMailboxFull or waits for room until ctx ends.
// Internal notifications pass force to bypass the bound.
func (p *process) push(ctx context.Context, env envelope, force bool) error {
	claimed, err := p.enqueue(ctx, env, force)
	if claimed {
		go p.run()
	}
	return err
}

// enqueue is push without starting the goroutine: it reports whether the
// caller claimed the idle process and must run it (or have it run).
func (p *process) enqueue(ctx context.Context, env envelope, force bool) (claimed bool, err error) {
	for {
		p.mu.Lock()
		if p.dead {
			p.mu.Unlock()
			return false, fmt.Errorf("%w: %v has exited", ErrNotFound, p.ref)
		}
		if p.limit > 0 && !force && p.count.Load() >= p.limit {
			if err := p.waitRoom(ctx); err != nil {
				return false, err
			}
			continue
		}
		if p.limit > 0 {
			p.count.Add(1)
		}
		p.q.push(env)
		p.mu.Unlock()
		return p.claim(), nil
	}
}

// waitRoom is called with p.mu held and a full mailbox; it releases the
// lock and returns once there may be room, or an error.
func (p *process) waitRoom(ctx context.Context) error {
	if p.failFast {
		p.mu.Unlock()
		return fmt.Errorf("%w: %v holds %d messages", ErrMailboxFull, p.ref, p.limit)
	}
	if p.waiters == nil {
		p.waiters = make(chan struct{})
	}
	w := p.waiters
	p.mu.Unlock()
	select {
	case <-w:
		return nil
	case <-p.done:
		return fmt.Errorf("%w: %v has exited", ErrNotFound, p.ref)
	case <-ctx.Done():
		return fmt.Errorf("actor %v: mailbox full: %w", p.ref, ctx.Err())
	}
}

func (p *process) schedule() {
	if p.claim() {
		go p.run()
	}
}

// claim moves an idle process to running; the caller must then run it.
func (p *process) claim() bool {
	return p.state.Load() == stateIdle && p.state.CompareAndSwap(stateIdle, stateRunning)
}

// run drains p and then, on the same goroutine, each watcher that an exit
// hands it (see exitOwn).
//
// A goroutine starts with a small stack, and a watcher's callbacks (a
// supervisor starting a replacement child, say) often need more. Growing a
// stack copies it and walks every frame on it, so run grows it here, between
// two drains, where the frames are few and small, rather than wherever the
// watcher's code happens to overflow it. The exit path itself (finish,
// terminate, exitInline, notify, enqueue) keeps its frames small so that,
// with a Terminate of modest depth, it fits in a new goroutine's stack.
func (p *process) run() {
	for p = p.drain(); p != nil; p = p.drain() {
		growStack()
	}
}

// growStack needs its 1800-byte frame plus the runtime's guard free on the
// stack, so on a goroutine that still has the small stack it started with,
// calling it makes the runtime grow the stack, once.
//
//go:noinline
func growStack() {
	var b [1800]byte
	touch(b[:])
}

//go:noinline
func touch(b []byte) { b[0] = 1 }

// drain handles the mailbox until it is empty, or until p exits; then it
// returns a watcher the exit woke, for the caller to run next. It takes the
// whole queue under the lock once per batch, so producers and the consumer
// meet on the lock once per batch rather than once per message.
func (p *process) drain() (next *process) {
	for {
		if p.flags.Load() != 0 {
			return p.finish()
		}
		p.mu.Lock()
		batch := p.q.take()
		p.mu.Unlock()
		if batch == nil {
			p.state.Store(stateIdle)
			p.mu.Lock()
			more := p.q.head != nil
			if !more {
				p.q.release()
			}
			p.mu.Unlock()
			if (more || p.flags.Load() != 0) && p.state.CompareAndSwap(stateIdle, stateRunning) {
				continue
			}
			return nil
		}
		for seg := batch; seg != nil; {
			for i := 0; i < seg.n; i++ {
				if p.flags.Load() != 0 {
					p.requeue(seg, i)
					seg = nil
					break
				}
				p.handle(&seg.buf[i])
				if p.limit > 0 {
					p.released()
				}
			}
			if seg == nil {
				break
			}
			next := seg.next
			p.mu.Lock()
			p.q.reuse(seg)
			p.mu.Unlock()
			seg = next
		}
	}
}

// requeue puts back messages not handled because a stop arrived, so that
// exit can account for the calls among them.
func (p *process) requeue(seg *segment, from int) {
	p.mu.Lock()
	if !p.dead {
		p.q.prepend(seg, from)
	}
	p.mu.Unlock()
}

func (p *process) released() {
	if p.count.Add(-1) == p.limit-1 {
		p.mu.Lock()
		if p.waiters != nil {
			close(p.waiters)
			p.waiters = nil
		}
		p.mu.Unlock()
	}
}

// finish runs when a stop or kill flag is seen by the run loop. It returns
// a watcher woken by the exit for the caller to run on its goroutine.
func (p *process) finish() *process {
	if p.flags.Load()&flagKill != 0 {
		return p.takeHandoff()
	}
	p.terminate(p.stopReason)
	return p.takeHandoff()
}

func (p *process) takeHandoff() *process {
	h := p.handoff
	p.handoff = nil
	return h
}

func (p *process) handle(env *envelope) {
	c := &p.ctx
	c.stop = nil
	defer func() {
		if r := recover(); r != nil {
			p.crashed(newPanicError(r))
		}
	}()
	k := env.kind()
	switch k {
	case kindCastTaken, kindInfoTaken:
		// Told to its sender as taken, then handled as a cast or a
		// raw message.
		if !p.take(env) {
			return
		}
		if k == kindCastTaken {
			k = kindCast
		} else {
			k = kindInfo
		}
	}
	switch k {
	case kindCall:
		reply := env.replyTo()
		c.reply, c.deadline, c.deferred = reply, env.slot.deadline, false
		if c.deadline != 0 && time.Now().UnixNano() > c.deadline {
			reply.Reply(nil, fmt.Errorf("actor %v: call expired before it was handled: %w", p.ref, context.DeadlineExceeded))
			c.reply, c.deadline = ReplyTo{}, 0
			return
		}
		val, err := p.actor.HandleCall(c, env.msg)
		if !c.deferred {
			reply.Reply(val, err)
		}
		c.reply, c.deadline = ReplyTo{}, 0
	case kindExec:
		reply := env.replyTo()
		val, err := env.msg.(ExecFunc)(p.actor, c)
		reply.Reply(val, err)
	case kindCast:
		if err := p.cast.HandleCast(c, env.msg); err != nil && c.stop == nil {
			c.stop = err
		}
	case kindInfo:
		if p.info == nil {
			p.sys.log.Warn("actor has no HandleInfo; message discarded",
				zap.Stringer("actor", p.ref), zap.String("type", fmt.Sprintf("%T", env.msg)))
			return
		}
		if err := p.info.HandleInfo(c, env.msg); err != nil && c.stop == nil {
			c.stop = err
		}
	}
	if c.stop != nil {
		p.requestStop(c.stop)
	}
}

// take tells the sender of a taken cast or message that the actor has
// it, and reports whether to handle it: not when its deadline passed in
// the mailbox, nor when the actor has no handler for its kind (the sender
// gets the error instead).
func (p *process) take(env *envelope) bool {
	reply := env.replyTo()
	var err error
	switch {
	case env.slot.deadline != 0 && time.Now().UnixNano() > env.slot.deadline:
		err = fmt.Errorf("actor %v: message expired before it was taken: %w", p.ref, context.DeadlineExceeded)
	default:
		err = p.unhandled(env.kind())
	}
	reply.Reply(nil, err)
	return err == nil
}

// unhandled says why the actor cannot take a taken cast or message of
// kind k: it has no handler for it. Nil if it can.
func (p *process) unhandled(k kind) error {
	switch {
	case k == kindCastTaken && p.cast == nil:
		return fmt.Errorf("%w: %v does not implement HandleCast", ErrUnhandled, p.ref)
	case k == kindInfoTaken && p.info == nil:
		return fmt.Errorf("%w: %v does not implement HandleInfo", ErrUnhandled, p.ref)
	}
	return nil
}

// crashed makes a panic in a callback the exit reason, whatever stop was
// requested before. The run loop terminates the actor once handle has
// returned, so that Terminate and the exit run without the panicking frames
// beneath them: on the short stack a goroutine starts with, they then fit.
func (p *process) crashed(reason *PanicError) {
	c := &p.ctx
	c.reply, c.deadline = ReplyTo{}, 0
	p.mu.Lock()
	p.stopReason = reason
	p.flags.Or(flagStop)
	p.mu.Unlock()
}

// requestStop asks the run loop to terminate with reason after the current
// message. The first request wins.
func (p *process) requestStop(reason error) {
	p.mu.Lock()
	var cancel context.CancelFunc
	if p.flags.Load()&flagStop == 0 {
		p.stopReason = reason
		p.flags.Or(flagStop)
		if x := p.ctx.ctxs; x != nil {
			cancel = x.cancelStopping // a handler watching Stopping returns
		}
	}
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// interrupt cancels the actor's Stopping context, now and if it is made
// later, without stopping it.
func (p *process) interrupt() {
	p.mu.Lock()
	if p.ctx.ctxs == nil {
		p.ctx.ctxs = &lifeContexts{}
	}
	x := p.ctx.ctxs
	x.interrupted = true
	cancel := x.cancelStopping
	p.mu.Unlock()
	if cancel != nil {
		cancel()
	}
}

// terminate runs the Terminate callback in the actor's goroutine, then
// exits. A panic in Terminate does not change the reason.
func (p *process) terminate(reason error) {
	p.flags.Or(flagKill)
	if p.term != nil && !p.exited.Load() {
		func() {
			defer func() {
				if r := recover(); r != nil {
					p.sys.log.Error("actor Terminate panicked", zap.Stringer("actor", p.ref), zap.Any("panic", r))
				}
			}()
			p.term.Terminate(&p.ctx, reason)
		}()
	}
	p.exitOwn(reason)
}

// exit makes the process dead: it is removed from the system, its names are
// freed, waiting callers are released with the reason, and monitors fire.
// Only the first call has an effect.
func (p *process) exit(reason error) {
	if next := p.exitInline(reason, false); next != nil {
		go next.run()
	}
}

// exitOwn is exit called from p's own run goroutine: one watcher woken by
// the exit is left in p.handoff for that goroutine to run.
func (p *process) exitOwn(reason error) {
	p.handoff = p.exitInline(reason, true)
}

func (p *process) exitInline(reason error, own bool) (handoff *process) {
	if !p.exited.CompareAndSwap(false, true) {
		return nil
	}
	p.flags.Or(flagKill)
	p.sys.remove(p)
	p.mu.Lock()
	p.dead = true
	p.reason = reason
	dropped := p.q.len
	recycleChain(p.q.take())
	p.q.release()
	mons := p.monitors
	p.monitors = nil
	if p.waiters != nil {
		close(p.waiters)
		p.waiters = nil
	}
	var cancel context.CancelFunc
	if x := p.ctx.ctxs; x != nil {
		cancel = x.cancelLife
	}
	p.mu.Unlock()
	close(p.done)
	if cancel != nil {
		cancel()
	}
	if dropped > 0 {
		p.logDropped(dropped, reason)
	}
	return p.notify(mons, reason, own)
}

func (p *process) logDropped(n int, reason error) {
	p.sys.log.Debug("actor exited with messages in its mailbox",
		zap.Stringer("actor", p.ref), zap.Int("messages", n), zap.Error(reason))
}

// notify sends Down to the monitors, in the order they were set, so a
// watcher that set its monitor earlier is told earlier. With own, the first
// watcher it wakes is returned for the caller's goroutine to run.
func (p *process) notify(mons []monitorEntry, reason error, own bool) (handoff *process) {
	for _, e := range mons {
		d := Down{Monitor: MonitorRef{id: e.id, target: p.ref}, Ref: p.ref, Reason: reason}
		w := e.w
		if w.proc == nil {
			w.fn(d)
			continue
		}
		claimed, _ := w.proc.enqueue(context.Background(), envelope{msg: d, tag: uint64(kindInfo)}, true)
		if !claimed {
			continue
		}
		if own && handoff == nil {
			handoff = w.proc
		} else {
			go w.proc.run()
		}
	}
	return handoff
}

// exitErr describes the process's exit to a caller; done must be closed.
func (p *process) exitErr() error {
	return &ExitError{Ref: p.ref, Reason: p.reason}
}
