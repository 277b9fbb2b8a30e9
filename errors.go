package cohort

import "errors"

// Sentinel errors of the cohort package; test for them with errors.Is.
var (
	// ErrInvalidConfig: a Config field is out of range; the error names it.
	ErrInvalidConfig = errors.New("cohort: invalid config")
	// ErrDuplicateNode: another live node holds this node id. Pick another
	// NodeID, or wait until the other node's lease expires.
	ErrDuplicateNode = errors.New("cohort: node id already in use by a live node")
	// ErrEtcdUnreachable: the etcd endpoints did not answer before the start
	// deadline. Check Endpoints, TLS and credentials, and that etcd runs.
	ErrEtcdUnreachable = errors.New("cohort: etcd unreachable")
	// ErrStopped: the node has been stopped.
	ErrStopped = errors.New("cohort: node stopped")
)
