package actor

import (
	"errors"
	"fmt"
	"runtime"
	"strings"
)

// Sentinel errors of the actor package; test for them with errors.Is.
var (
	// ErrNotFound: no live actor exists for the Ref, or no actor is
	// registered under the name. Calls, casts and sends to an actor that has
	// exited fail with it.
	ErrNotFound = errors.New("actor: no such actor")
	// ErrNameNotFound: no actor is registered under the name, in the
	// system's local table nor with any resolver. It wraps ErrNotFound.
	ErrNameNotFound = fmt.Errorf("%w: no actor registered under the name", ErrNotFound)
	// ErrInvalidName: a name is empty, too long or holds control characters.
	ErrInvalidName = errors.New("actor: invalid name")
	// ErrAlreadyRegistered: the name is held by a live actor. The error is an
	// *AlreadyRegisteredError carrying the owner.
	ErrAlreadyRegistered = errors.New("actor: name already registered")
	// ErrInvalidRef: the zero Ref was given where an actor is required.
	ErrInvalidRef = errors.New("actor: invalid (zero) ref")
	// ErrNilActor: Spawn was given a nil behaviour.
	ErrNilActor = errors.New("actor: nil actor behaviour")
	// ErrSystemStopped: the system has been shut down and accepts no work.
	ErrSystemStopped = errors.New("actor: system stopped")
	// ErrMailboxFull: a bounded mailbox is full and its policy is FailFast.
	ErrMailboxFull = errors.New("actor: mailbox full")
	// ErrUnhandled: the actor does not implement the callback the message
	// needs (HandleCast for Cast, HandleInfo for Send), or its HandleCall
	// does not know the message.
	ErrUnhandled = errors.New("actor: message not handled")
	// ErrReplyType: Call[R] got a reply that is not an R.
	ErrReplyType = errors.New("actor: reply has unexpected type")
	// ErrRemoteNode: the Ref names another node and this system has no
	// transport to reach it.
	ErrRemoteNode = errors.New("actor: ref is on another node")
	// ErrInvalidOption: a spawn option is out of range.
	ErrInvalidOption = errors.New("actor: invalid option")
	// ErrUnregisteredType: a message (or reply) bound for another node has a
	// Go type that is not in the codec registry. Register it on every node
	// with RegisterType.
	ErrUnregisteredType = errors.New("actor: message type not registered")
	// ErrUnknownType: a message arrived from another node under a type name
	// this node has not registered. Register the type on every node.
	ErrUnknownType = errors.New("actor: unknown message type name")
	// ErrTypeConflict: RegisterType was given a name held by another type,
	// or a type already registered under another name.
	ErrTypeConflict = errors.New("actor: message type registered twice")
	// ErrCodec: a message could not be encoded or decoded by its codec.
	ErrCodec = errors.New("actor: message codec failed")
	// ErrNodeDown: the node of the target is not reachable: it left the
	// cluster, or the connection to it broke. Calls pending on it fail with
	// this error at once, not at their deadline; a message in flight when
	// the connection broke may or may not have been handled.
	ErrNodeDown = errors.New("actor: node down")
	// ErrNotDelivered: the message did not reach its target, because the
	// target's node is leaving the cluster (and set the message aside
	// unread, refused the stream, or no longer accepts connections), has
	// left it, or could not be connected to at all (no stream to it was
	// open, so nothing was sent). Nothing handled it:
	// sending it again, to where the actor runs next, cannot make it run
	// twice. It always comes wrapped together with ErrNodeDown.
	ErrNotDelivered = errors.New("actor: message not delivered")
	// ErrMessageTooLarge: the encoded message is larger than the transport's
	// message size limit. Nothing was sent.
	ErrMessageTooLarge = errors.New("actor: message too large")
	// ErrBackpressure: the send queue to another node is full and the send
	// may not wait (Send, or a transport configured to fail fast).
	ErrBackpressure = errors.New("actor: send queue to node full")
)

// Exit reasons. An actor exits with a reason; monitors and callers see it.
var (
	// Normal is the reason of an actor that stopped because its work was
	// done. Supervisors do not restart transient children that exit with
	// Normal or Shutdown.
	Normal = errors.New("normal")
	// Shutdown is the reason a supervisor or a system gives an actor it
	// stops.
	Shutdown = errors.New("shutdown")
	// ErrKilled is the reason of an actor that was abandoned: brutally killed,
	// or not finished within its shutdown timeout.
	ErrKilled = errors.New("killed")
	// Ignore, returned by Init (or by a supervisor child's start
	// function), declines to start without failing, as OTP's ignore:
	// Spawn fails with an error wrapping it, and a supervisor keeps the
	// child's spec without running it (not restarted until RestartChild).
	// Singletons and distributed children take it as a failed start.
	Ignore = errors.New("ignore")
)

// IsNormal reports whether reason is a normal exit: nil, Normal or Shutdown
// (possibly wrapped). Transient children are restarted only on other reasons.
func IsNormal(reason error) bool {
	return reason == nil || errors.Is(reason, Normal) || errors.Is(reason, Shutdown)
}

// AlreadyRegisteredError is returned when a name is taken; Owner is the actor
// holding it.
type AlreadyRegisteredError struct {
	Name  string
	Owner Ref
}

func (e *AlreadyRegisteredError) Error() string {
	return fmt.Sprintf("actor: name %q already registered by %v", e.Name, e.Owner)
}

// Is makes errors.Is(err, ErrAlreadyRegistered) hold.
func (e *AlreadyRegisteredError) Is(target error) bool { return target == ErrAlreadyRegistered }

// ExitError is returned by Call when the callee exited before replying. It
// unwraps to the exit reason.
type ExitError struct {
	Ref    Ref
	Reason error
}

func (e *ExitError) Error() string {
	return fmt.Sprintf("actor %v exited: %v", e.Ref, e.Reason)
}

// Unwrap returns the exit reason.
func (e *ExitError) Unwrap() error { return e.Reason }

// PanicError is the exit reason of an actor whose callback panicked. It
// carries the panic value and the stack of the panicking goroutine.
type PanicError struct {
	Value any
	n     int
	pcs   [maxPanicFrames]uintptr // raw program counters; formatted only by Stack
}

// maxPanicFrames bounds the frames kept of a panic's stack.
const maxPanicFrames = 32

// newPanicError captures the panicking goroutine's stack; it must be called
// from the function deferred by the frame that recovered. The frames go
// straight into the error, one allocation in all.
func newPanicError(v any) *PanicError {
	e := &PanicError{Value: v}
	e.n = runtime.Callers(3, e.pcs[:])
	return e
}

func (e *PanicError) Error() string { return fmt.Sprintf("panic: %v", e.Value) }

// Unwrap returns the panic value when it is an error.
func (e *PanicError) Unwrap() error {
	err, _ := e.Value.(error)
	return err
}

// Stack formats the stack at the panic, one frame per line.
func (e *PanicError) Stack() string {
	var b strings.Builder
	frames := runtime.CallersFrames(e.pcs[:e.n])
	for {
		f, more := frames.Next()
		fmt.Fprintf(&b, "%s\n\t%s:%d\n", f.Function, f.File, f.Line)
		if !more {
			break
		}
	}
	return b.String()
}
