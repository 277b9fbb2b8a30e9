package transport

import (
	"errors"
	"fmt"

	"github.com/cohort-go/cohort/actor"
)

// Sentinel errors of the transport; test for them with errors.Is. Errors a
// caller of the actor API sees (node down, message too large, unregistered
// type, back-pressure) are the actor package's sentinels, wrapped.
var (
	// ErrMalformed: bytes from a peer are not a valid frame or envelope. The
	// stream that carried them is closed; the node goes on serving others.
	ErrMalformed = errors.New("transport: malformed frame")
	// ErrRefused: a peer refused the stream: it belongs to another cluster
	// prefix, it is not the node that was dialed, or the stream did not
	// say who it came from.
	ErrRefused = errors.New("transport: stream refused by peer")
	// ErrClosed: the transport has been closed.
	ErrClosed = errors.New("transport: closed")
	// ErrInvalidConfig: a Config field is out of range; the error names it.
	ErrInvalidConfig = errors.New("transport: invalid config")

	// errLeaving: the peer refused the stream because it is leaving the
	// cluster (Drain).
	errLeaving = errors.New("transport: peer is leaving the cluster")
)

// undelivered marks err, the reason a message did not reach a node that is
// leaving or has left, as certain non-delivery: a node-down error then
// also wraps actor.ErrNotDelivered. Other errors are returned as they are.
func undelivered(err error) error {
	if err == nil || !errors.Is(err, actor.ErrNodeDown) || errors.Is(err, actor.ErrNotDelivered) {
		return err
	}
	return fmt.Errorf("%w: %w", actor.ErrNotDelivered, err)
}
