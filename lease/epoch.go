package lease

import (
	"context"
	"fmt"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
)

// Epoch is one lease of a Session: from the grant of the lease until the
// session declares it lost. Keys bound to an epoch's lease are valid only
// while the epoch is alive; when it is lost, whatever the node did under it
// (names, leadership, owned children) must stop, and a later epoch starts
// afresh with a new lease.
//
// An Epoch is safe for concurrent use.
type Epoch struct {
	seq    uint64
	id     clientv3.LeaseID
	ttl    time.Duration
	client *clientv3.Client

	ctx    context.Context
	cancel context.CancelCauseFunc
	lost   chan struct{}

	mu         sync.Mutex
	err        error
	aliveUntil time.Time
	csess      *concurrency.Session
	holds      int
	released   chan struct{} // closed when the epoch is lost and holds is 0
}

func newEpoch(client *clientv3.Client, seq uint64, id clientv3.LeaseID, ttl time.Duration, aliveUntil time.Time) *Epoch {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Epoch{
		seq:        seq,
		id:         id,
		ttl:        ttl,
		client:     client,
		ctx:        ctx,
		cancel:     cancel,
		lost:       make(chan struct{}),
		aliveUntil: aliveUntil,
		released:   make(chan struct{}),
	}
}

// Hold marks work done under the epoch that must be stopped before others
// may take it over: once the epoch is lost, the session revokes its lease
// (which lets other nodes take over at once instead of when etcd expires
// it) only after every hold is released, or once the lease has surely
// expired on its own. Release a hold when the work has stopped; the
// returned function may be called more than once. A hold on an epoch
// already lost does nothing.
func (e *Epoch) Hold() (release func()) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return func() {}
	}
	e.holds++
	var once sync.Once
	return func() {
		once.Do(func() {
			e.mu.Lock()
			defer e.mu.Unlock()
			e.holds--
			if e.holds == 0 && e.err != nil {
				close(e.released)
			}
		})
	}
}

// Released returns a channel that is closed once the epoch is lost and
// every hold on it is released.
func (e *Epoch) Released() <-chan struct{} { return e.released }

// Seq numbers the epochs of a session: 1 for the first, then one more for
// each new lease.
func (e *Epoch) Seq() uint64 { return e.seq }

// ID is the etcd lease of the epoch; bind keys to it with
// clientv3.WithLease(e.ID()).
func (e *Epoch) ID() clientv3.LeaseID { return e.id }

// TTL is the lease TTL granted by etcd.
func (e *Epoch) TTL() time.Duration { return e.ttl }

// Lost returns a channel that is closed when the epoch is lost. After it
// is closed, Err reports why. It is never closed while the lease is proven
// alive, and it is closed before etcd can expire the lease unless the
// lease was revoked or expired behind the node's back (then as soon as the
// node learns of it).
func (e *Epoch) Lost() <-chan struct{} { return e.lost }

// Err is nil while the epoch is alive; once Lost is closed it reports the
// reason: an error wrapping ErrDeadlinePassed, ErrLeaseNotFound or
// ErrClosed.
func (e *Epoch) Err() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err
}

// Alive reports whether the epoch has not been declared lost and its
// alive-until instant has not passed. It may report false slightly before
// Lost is closed, never the other way round.
func (e *Epoch) Alive() bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.err == nil && time.Now().Before(e.aliveUntil)
}

// Check is Alive with the reason: nil while the epoch is alive, else Err
// once it is lost, or, in the moment before it is declared lost, an error
// wrapping ErrDeadlinePassed.
func (e *Epoch) Check() error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return e.err
	}
	if !time.Now().Before(e.aliveUntil) {
		return fmt.Errorf("%w: lease %x alive until %s", ErrDeadlinePassed, int64(e.id), e.aliveUntil.Format(time.RFC3339Nano))
	}
	return nil
}

// AliveUntil is the instant, on this process's monotonic clock, until
// which the lease is certainly alive on etcd: the send time of the last
// answered keepalive plus the granted TTL minus the margin. It only moves
// forward.
func (e *Epoch) AliveUntil() time.Time {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.aliveUntil
}

// Context returns a context that is canceled when the epoch is lost; its
// cause (context.Cause) is the reason reported by Err. Derive from it the
// context of any work that must not outlive the epoch.
func (e *Epoch) Context() context.Context { return e.ctx }

// Concurrency returns a concurrency.Session on the epoch's lease, for
// elections, mutexes and the other etcd concurrency recipes. It is built
// on first use and shared afterwards. Its Ctx() and the Ctx() of its
// Client() are canceled when the epoch is lost, so clean-up calls made by
// the recipes with those contexts never outlive the epoch, and its own
// keepalive stops then too. The caller must not Close it: the lease
// belongs to the Session. It fails with an error wrapping ErrEpochLost
// once the epoch is lost.
func (e *Epoch) Concurrency() (*concurrency.Session, error) {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return nil, fmt.Errorf("%w: %w", ErrEpochLost, e.err)
	}
	if e.csess != nil {
		return e.csess, nil
	}
	view := clientv3.NewCtxClient(e.ctx, clientv3.WithZapLogger(e.client.GetLogger()))
	view.KV = e.client.KV
	view.Lease = e.client.Lease
	view.Watcher = e.client.Watcher
	cs, err := concurrency.NewSession(view,
		concurrency.WithLease(e.id),
		concurrency.WithContext(e.ctx),
		concurrency.WithTTL(int(e.ttl/time.Second)))
	if err != nil {
		return nil, fmt.Errorf("lease: concurrency session on lease %x: %w", int64(e.id), err)
	}
	e.csess = cs
	return cs, nil
}

// String renders the epoch for logs.
func (e *Epoch) String() string {
	return fmt.Sprintf("epoch %d (lease %x)", e.seq, int64(e.id))
}

// extend moves the alive-until instant forward to until, unless the epoch
// is already lost or until is not later. It reports whether the epoch is
// still alive.
func (e *Epoch) extend(until time.Time) bool {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.err != nil {
		return false
	}
	if until.After(e.aliveUntil) {
		e.aliveUntil = until
	}
	return true
}

// markLost ends the epoch with reason; only the first call has an effect.
// It returns the concurrency session built on the epoch, if any, so the
// caller can wait for its keepalive to stop.
func (e *Epoch) markLost(reason error) (*concurrency.Session, bool) {
	e.mu.Lock()
	if e.err != nil {
		e.mu.Unlock()
		return nil, false
	}
	e.err = reason
	cs := e.csess
	if e.holds == 0 {
		close(e.released)
	}
	e.mu.Unlock()
	e.cancel(reason)
	close(e.lost)
	return cs, true
}
