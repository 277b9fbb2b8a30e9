package embedetcd

import "errors"

var (
	// ErrNoDir is returned by Start when Config.Dir is empty.
	ErrNoDir = errors.New("embedetcd: data dir is required")
	// ErrDirNotUsable is returned when the data dir cannot be created or
	// written to; the underlying OS error is wrapped alongside it.
	ErrDirNotUsable = errors.New("embedetcd: data dir is not usable")
	// ErrAddrInUse is returned when a client or peer URL that was given
	// explicitly is already bound by another process.
	ErrAddrInUse = errors.New("embedetcd: address already in use")
	// ErrNotReady is returned when the context ends before the member has
	// joined its cluster and is ready to serve; the context error is wrapped
	// alongside it.
	ErrNotReady = errors.New("embedetcd: member not ready")
	// ErrStopped is returned when the member stopped on its own while
	// starting, for example because its data dir belongs to another cluster.
	ErrStopped = errors.New("embedetcd: member stopped during start")
	// ErrInvalidConfig is returned for a configuration that cannot work,
	// such as a malformed URL or duplicate member names.
	ErrInvalidConfig = errors.New("embedetcd: invalid config")
)
