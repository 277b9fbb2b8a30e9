package cohort

import (
	"errors"
	"strings"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
)

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
	// ErrEtcdDenied: etcd answered, but refused this node: wrong
	// Username or Password, credentials where etcd's auth is off, or a
	// user without read and write access under the node's Prefix.
	ErrEtcdDenied = errors.New("cohort: etcd refused this node")
	// ErrStopped: the node has been stopped.
	ErrStopped = errors.New("cohort: node stopped")
)

// joinErrors joins the non-nil errors of errs into one that errors.Is and
// errors.As see through, as errors.Join does, but printed on one line
// ("a; b"), as log lines want: nil if there are none.
func joinErrors(errs []error) error {
	var flat multiError
	for _, err := range errs {
		if m, ok := err.(multiError); ok {
			flat = append(flat, m...)
		} else if err != nil {
			flat = append(flat, err)
		}
	}
	switch len(flat) {
	case 0:
		return nil
	case 1:
		return flat[0]
	}
	return flat
}

// multiError is the error of joinErrors.
type multiError []error

func (m multiError) Error() string {
	var b strings.Builder
	for i, err := range m {
		if i > 0 {
			b.WriteString("; ")
		}
		b.WriteString(err.Error())
	}
	return b.String()
}

func (m multiError) Unwrap() []error { return m }

// etcdDenied reports whether err is etcd refusing the node's credentials
// or access, as opposed to not answering.
func etcdDenied(err error) bool {
	var ee rpctypes.EtcdError
	if errors.As(err, &ee) {
		err = ee
	}
	switch rpctypes.ErrorDesc(err) {
	case rpctypes.ErrorDesc(rpctypes.ErrGRPCAuthFailed), rpctypes.ErrorDesc(rpctypes.ErrGRPCPermissionDenied),
		rpctypes.ErrorDesc(rpctypes.ErrGRPCUserEmpty), rpctypes.ErrorDesc(rpctypes.ErrGRPCAuthNotEnabled),
		rpctypes.ErrorDesc(rpctypes.ErrGRPCInvalidAuthToken):
		return true
	}
	return false
}
