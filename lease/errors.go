package lease

import "errors"

// Sentinel errors of the lease package; test for them with errors.Is.
var (
	// ErrInvalidConfig: a Config field is out of range. The returned error
	// wraps it and names the field.
	ErrInvalidConfig = errors.New("lease: invalid config")
	// ErrDeadlinePassed: no keepalive was answered before the epoch's
	// alive-until instant, so the node can no longer prove to itself that
	// etcd still holds the lease. The epoch is fenced off before etcd can
	// expire the lease.
	ErrDeadlinePassed = errors.New("lease: keepalive deadline passed without renewal")
	// ErrLeaseNotFound: etcd answered that the lease does not exist (it was
	// revoked or has expired), so the epoch ended at once.
	ErrLeaseNotFound = errors.New("lease: lease not found on the server")
	// ErrClosed: the session was closed; its last epoch ends with this
	// reason and blocking calls on the session return it.
	ErrClosed = errors.New("lease: session closed")
	// ErrEpochLost: an operation needed a live epoch but the epoch is lost.
	// The returned error also wraps the epoch's reason.
	ErrEpochLost = errors.New("lease: epoch lost")
)
