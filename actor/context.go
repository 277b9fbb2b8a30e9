package actor

import (
	"context"
	"time"

	"go.uber.org/zap"
)

// Context is what an actor's callbacks receive: the actor's identity, the
// message's call deadline, and the actions only the actor itself may take.
// It is valid only inside the callback that received it and must not be
// kept or used from another goroutine (ReplyTo may).
type Context struct {
	p        *process
	reply    ReplyTo
	deadline int64 // unix nanoseconds; 0 for none
	deferred bool
	stop     error
	ctxs     *lifeContexts // made by the first Context or Stopping
}

// lifeContexts are the contexts an actor hands its callbacks: life ends at
// the exit, stopping at the first stop request or the exit.
type lifeContexts struct {
	life, stopping             context.Context
	cancelLife, cancelStopping context.CancelFunc
	interrupted                bool // System.Interrupt: stopping is made canceled
}

// Self returns the actor's own Ref.
func (c *Context) Self() Ref { return c.p.ref }

// System returns the system the actor runs in.
func (c *Context) System() *System { return c.p.sys }

// Logger returns the system's logger, annotated with the actor's Ref.
func (c *Context) Logger() *zap.Logger { return c.p.sys.log.With(zap.Stringer("actor", c.p.ref)) }

// Deadline returns the deadline of the call being handled, if its caller's
// context had one. It is false for casts, sends and calls without deadline.
func (c *Context) Deadline() (time.Time, bool) {
	if c.deadline == 0 {
		return time.Time{}, false
	}
	return time.Unix(0, c.deadline), true
}

// Context returns a context.Context canceled when the actor exits, for
// work the actor does in the background or in Terminate (etcd requests,
// say) on its behalf. A handler that blocks should watch Stopping instead.
func (c *Context) Context() context.Context {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	return c.lifeLocked()
}

// Stopping returns a context.Context canceled as soon as the actor is
// asked to stop (Stop, a supervisor stopping or moving it, System.Shutdown,
// System.Interrupt, Context.Stop) and when it exits. A handler that blocks (on I/O, a
// channel, a lock) should watch it: it then returns when a stop is
// requested, and the actor terminates with the stop's reason within its
// shutdown timeout rather than being abandoned at the timeout.
func (c *Context) Stopping() context.Context {
	c.p.mu.Lock()
	defer c.p.mu.Unlock()
	life := c.lifeLocked()
	x := c.ctxs
	if x.stopping == nil {
		x.stopping, x.cancelStopping = context.WithCancel(life)
		if x.interrupted || c.p.flags.Load()&flagStop != 0 {
			x.cancelStopping()
		}
	}
	return x.stopping
}

// lifeLocked returns the life context, making it; c.p.mu is held.
func (c *Context) lifeLocked() context.Context {
	if c.ctxs == nil {
		c.ctxs = &lifeContexts{}
	}
	x := c.ctxs
	if x.life == nil {
		x.life, x.cancelLife = context.WithCancel(context.Background())
		if c.p.dead {
			x.cancelLife()
		}
	}
	return x.life
}

// DeferReply, called in HandleCall, detaches the reply from the handler's
// return: the caller keeps waiting until ReplyTo.Reply is called (from any
// goroutine), the callee exits, or the caller's deadline passes. The
// handler's return values are then ignored. Outside HandleCall it returns a
// ReplyTo whose Reply does nothing and reports false.
func (c *Context) DeferReply() ReplyTo {
	c.deferred = true
	return c.reply
}

// Stop makes the actor exit with reason once the current callback returns
// (in Init: Init fails with reason). A nil reason means Normal. The first
// stop asked for wins, whether by the actor or from outside; Stopping is
// canceled at once.
func (c *Context) Stop(reason error) {
	if reason == nil {
		reason = Normal
	}
	if c.stop == nil {
		c.stop = reason
		c.p.requestStop(reason)
	}
}

// Monitor starts monitoring target: when it exits, the actor receives a Down
// message through HandleInfo. If target does not exist, Down (with reason
// ErrNotFound) arrives at once. An actor without HandleInfo cannot receive
// it: the Down is dropped (and logged at warn level), so such an actor
// should use System.Monitor or System.MonitorFunc instead.
func (c *Context) Monitor(target Ref) MonitorRef {
	return c.p.sys.monitor(target, watcher{proc: c.p})
}

// Demonitor stops a monitor; no Down for it is delivered after it returns,
// except one already queued in the mailbox.
func (c *Context) Demonitor(m MonitorRef) { c.p.sys.Demonitor(m) }
