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
	done       chan struct{}

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
			if p.failFast {
				p.mu.Unlock()
				return false, fmt.Errorf("%w: %v holds %d messages", ErrMailboxFull, p.ref, p.limit)
			}
			if p.waiters == nil {
				p.waiters = make(chan struct{})
			}
			w := p.waiters
			p.mu.Unlock()
			select {
			case <-w:
				continue
			case <-p.done:
				return false, fmt.Errorf("%w: %v has exited", ErrNotFound, p.ref)
			case <-ctx.Done():
				return false, fmt.Errorf("actor %v: mailbox full: %w", p.ref, ctx.Err())
			}
		}
		if p.limit > 0 {
			p.count.Add(1)
		}
		p.q.push(env)
		p.mu.Unlock()
		return p.claim(), nil
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

// run drains the mailbox: it takes the whole queue under the lock once per
// batch, so producers and the consumer meet on the lock once per batch
// rather than once per message.
func (p *process) run() {
	for {
		if p.flags.Load() != 0 {
			if next := p.finish(); next != nil {
				// This goroutine is done with p; rather than start a new one
				// for the watcher p's exit woke, run it here.
				p = next
				continue
			}
			return
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
			return
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
	switch env.kind() {
	case kindCall:
		reply := env.replyTo()
		c.reply, c.deadline, c.deferred = reply, env.deadline, false
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

// crashed makes a panic in a callback the exit reason, whatever stop was
// requested before. The run loop terminates the actor once handle has
// returned: Terminate, the exit and the watcher the exit hands this
// goroutine (often a supervisor restarting the actor) then run without the
// panicking frames beneath them, so that when the goroutine's stack must
// grow, as it usually must on that path, there are fewer frames to copy.
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
	if p.flags.Load()&flagStop == 0 {
		p.stopReason = reason
		p.flags.Or(flagStop)
	}
	p.mu.Unlock()
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
	cancel := p.ctx.cancel
	p.mu.Unlock()
	close(p.done)
	if cancel != nil {
		cancel()
	}
	if dropped > 0 {
		p.sys.log.Debug("actor exited with messages in its mailbox",
			zap.Stringer("actor", p.ref), zap.Int("messages", dropped), zap.Error(reason))
	}
	// Monitors fire in the order they were set, so a watcher that set its
	// monitor earlier is told earlier.
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
