package actor

// Actor is the behaviour of an actor: the one callback every actor has. It
// answers a Call. The reply and error it returns go back to the caller,
// unless the handler called ctx.DeferReply, in which case the reply is sent
// later through the returned ReplyTo and the return values are ignored. A
// handler that does not know a message returns ErrUnhandled.
//
// An actor's callbacks run one at a time, never concurrently, so an actor's
// fields need no locking.
type Actor interface {
	HandleCall(ctx *Context, msg any) (reply any, err error)
}

// Initializer is implemented by actors that initialise from the arguments
// given at spawn. Init runs before any message is handled; an error (or a
// panic) aborts the spawn, which returns the error.
type Initializer interface {
	Init(ctx *Context, args any) error
}

// CastHandler is implemented by actors that accept Cast. A non-nil error
// stops the actor with that error as its exit reason (return Normal to stop
// normally).
type CastHandler interface {
	HandleCast(ctx *Context, msg any) error
}

// InfoHandler is implemented by actors that accept raw messages from Send,
// and monitor notifications (Down). A non-nil error stops the actor with
// that error as its exit reason.
type InfoHandler interface {
	HandleInfo(ctx *Context, msg any) error
}

// Terminator is implemented by actors that clean up on exit. Terminate runs
// in the actor's goroutine after its last message, with the exit reason,
// unless the actor is brutally killed or abandoned. A panic in Terminate
// is recovered and logged; the exit reason stays the one Terminate was
// given.
type Terminator interface {
	Terminate(ctx *Context, reason error)
}

// Func adapts a call handler function to an Actor.
type Func func(ctx *Context, msg any) (any, error)

// HandleCall calls f.
func (f Func) HandleCall(ctx *Context, msg any) (any, error) { return f(ctx, msg) }
