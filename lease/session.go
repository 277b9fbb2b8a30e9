// Package lease keeps a node's one session lease in etcd and fences the
// node off before etcd can expire it.
//
// A Session grants a lease and renews it with its own keepalive loop. For
// every answered keepalive it knows the send time on the monotonic clock,
// and etcd measures the lease's expiry from the moment it received that
// keepalive, which is later. So send time + granted TTL is a lower bound
// of the server's expiry; minus a safety margin it is the epoch's
// alive-until instant. When that instant passes without a renewal, the
// epoch is declared lost (its Lost channel closes) while etcd still holds
// the lease, so the node can stop lease-bound work before any other node
// can take it over. The session then grants a fresh lease and starts a new
// epoch.
package lease

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Session owns a node's lease in etcd across epochs. Create one with Start
// and end it with Close. A Session is safe for concurrent use.
type Session struct {
	client *clientv3.Client
	cfg    Config
	log    *zap.Logger

	runCtx   context.Context
	stopRun  context.CancelFunc
	done     chan struct{}
	revoking sync.WaitGroup // revocations of lost epochs waiting for holds

	mu      sync.Mutex
	cur     *Epoch
	changed chan struct{} // closed and replaced whenever cur changes
}

// Start grants the first lease and starts the session's keepalive loop. It
// returns when the lease is granted, or with an error when ctx ends first,
// etcd refuses the grant, or cfg is invalid (ErrInvalidConfig). The client
// must stay open until Close returns.
func Start(ctx context.Context, client *clientv3.Client, cfg Config) (*Session, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	s := &Session{
		client:  client,
		cfg:     cfg,
		log:     cfg.Logger,
		done:    make(chan struct{}),
		changed: make(chan struct{}),
	}
	e, err := s.grant(ctx, 1)
	if err != nil {
		return nil, err
	}
	s.cur = e
	s.runCtx, s.stopRun = context.WithCancel(context.Background())
	s.log.Info("lease epoch started", zap.Uint64("epoch", e.seq), zap.String("lease", fmt.Sprintf("%x", int64(e.id))), zap.Duration("ttl", e.ttl))
	go s.run(e)
	return s, nil
}

// Client is the etcd client the session was started with.
func (s *Session) Client() *clientv3.Client { return s.client }

// Config is the session's configuration with defaults filled in.
func (s *Session) Config() Config { return s.cfg }

// Current returns the latest epoch. It may already be lost while the
// session is re-joining; use Wait for a live one. It is never nil.
func (s *Session) Current() *Epoch {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.cur
}

// Wait returns the current epoch if it is alive, or else blocks until a
// new epoch starts. It returns ctx's error when ctx ends first and
// ErrClosed once the session is closed.
func (s *Session) Wait(ctx context.Context) (*Epoch, error) {
	for {
		s.mu.Lock()
		e, ch := s.cur, s.changed
		s.mu.Unlock()
		if e.Err() == nil {
			return e, nil
		}
		select {
		case <-ch:
		case <-s.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Next blocks until an epoch later than after exists and returns it; with
// after == nil it returns the current epoch at once. The epoch returned
// may already be lost by the time the caller looks at it. Next returns
// ctx's error when ctx ends first and ErrClosed once the session is closed
// and no later epoch exists. A loop of Next calls sees every epoch of the
// session, which is how a node re-puts its member key and how other
// packages re-establish what they held under the previous epoch.
func (s *Session) Next(ctx context.Context, after *Epoch) (*Epoch, error) {
	for {
		s.mu.Lock()
		e, ch := s.cur, s.changed
		s.mu.Unlock()
		if after == nil || e.seq > after.seq {
			return e, nil
		}
		select {
		case <-ch:
		case <-s.done:
			return nil, ErrClosed
		case <-ctx.Done():
			return nil, ctx.Err()
		}
	}
}

// Done returns a channel that is closed once Close has stopped the
// session's loop.
func (s *Session) Done() <-chan struct{} { return s.done }

// Close ends the session: it stops the keepalive loop and any re-join in
// progress, ends the current epoch with ErrClosed, and revokes its lease so
// keys bound to it disappear at once. The loop is stopped and waited for
// even when ctx ends; ctx, and at most one TTL (after which the lease has
// expired anyway), bound the revoke, whose failure is returned. Calling
// Close again stops nothing more and tries the revoke again.
func (s *Session) Close(ctx context.Context) error {
	s.stopRun()
	<-s.done
	s.revoking.Wait()
	e := s.Current()
	if cs, ok := e.markLost(ErrClosed); ok && cs != nil {
		<-cs.Done()
	}
	ctx, cancel := context.WithTimeout(ctx, s.cfg.TTL)
	defer cancel()
	// What still holds the epoch stops first; past one TTL the lease
	// expires on its own, revoked or not.
	select {
	case <-e.Released():
	case <-ctx.Done():
	}
	_, err := s.client.Revoke(ctx, e.id)
	if err != nil && !isLeaseNotFound(err) {
		return fmt.Errorf("lease: revoke %x on close: %w", int64(e.id), err)
	}
	return nil
}

// run keeps epochs alive and replaces each lost one until the session is
// closed.
func (s *Session) run(e *Epoch) {
	defer close(s.done)
	for {
		reason := s.keep(e)
		if errors.Is(reason, ErrClosed) {
			return
		}
		s.lose(e, reason)
		next := s.rejoin(e)
		if next == nil {
			return
		}
		s.mu.Lock()
		s.cur = next
		close(s.changed)
		s.changed = make(chan struct{})
		s.mu.Unlock()
		s.log.Info("lease epoch started", zap.Uint64("epoch", next.seq), zap.String("lease", fmt.Sprintf("%x", int64(next.id))), zap.Duration("ttl", next.ttl))
		s.revokeWhenReleased(e)
		e = next
	}
}

// lose declares e lost with reason and waits for the keepalive of its
// concurrency session, if any, to stop, so nothing renews a lost lease.
func (s *Session) lose(e *Epoch, reason error) {
	cs, ok := e.markLost(reason)
	if !ok {
		return
	}
	s.log.Warn("lease epoch lost", zap.Uint64("epoch", e.seq), zap.String("lease", fmt.Sprintf("%x", int64(e.id))), zap.Error(reason))
	s.mu.Lock()
	close(s.changed)
	s.changed = make(chan struct{})
	s.mu.Unlock()
	if cs != nil {
		<-cs.Done()
	}
}

// revokeWhenReleased revokes the lease of the lost epoch e once every hold
// on it is released (see Epoch.Hold), in the background. Past one TTL after
// the loss the lease has expired on etcd anyway, and it is not waited for
// any longer.
func (s *Session) revokeWhenReleased(e *Epoch) {
	s.revoking.Add(1)
	go func() {
		defer s.revoking.Done()
		t := time.NewTimer(e.ttl)
		defer t.Stop()
		select {
		case <-e.Released():
			s.revokeLost(e)
		case <-t.C:
		case <-s.runCtx.Done():
		}
	}()
}

// revokeLost revokes the lease of a lost epoch, best effort: keys bound to
// it are no longer trusted by this node, and revoking them lets other
// nodes take over now instead of at the lease's expiry.
func (s *Session) revokeLost(e *Epoch) {
	ctx, cancel := context.WithTimeout(s.runCtx, s.cfg.KeepAliveInterval)
	defer cancel()
	if _, err := s.client.Revoke(ctx, e.id); err != nil && !isLeaseNotFound(err) {
		s.log.Debug("revoking lost lease failed; it will expire", zap.String("lease", fmt.Sprintf("%x", int64(e.id))), zap.Error(err))
	}
}

type keepAliveResult struct {
	sent time.Time
	ttl  time.Duration
	err  error
}

// keep renews e until it is lost or the session is closed, and returns
// the reason.
func (s *Session) keep(e *Epoch) error {
	deadline := time.NewTimer(time.Until(e.AliveUntil()))
	defer deadline.Stop()
	next := time.NewTimer(s.cfg.KeepAliveInterval)
	defer next.Stop()

	ctx, cancel := context.WithCancel(s.runCtx)
	var wg sync.WaitGroup
	defer wg.Wait()
	defer cancel()

	results := make(chan keepAliveResult, 1)
	inFlight := false
	for {
		select {
		case <-s.runCtx.Done():
			return ErrClosed
		case <-deadline.C:
			return fmt.Errorf("%w: lease %x not renewed by %s", ErrDeadlinePassed, int64(e.id), e.AliveUntil().Format(time.RFC3339Nano))
		case <-next.C:
			if inFlight {
				continue
			}
			inFlight = true
			wg.Add(1)
			go func() {
				defer wg.Done()
				results <- s.keepAliveOnce(ctx, e.id)
			}()
		case r := <-results:
			inFlight = false
			if r.err != nil {
				if isLeaseNotFound(r.err) {
					return fmt.Errorf("%w: lease %x: %w", ErrLeaseNotFound, int64(e.id), r.err)
				}
				s.log.Debug("keepalive failed", zap.String("lease", fmt.Sprintf("%x", int64(e.id))), zap.Error(r.err))
				next.Reset(retryDelay(s.cfg.KeepAliveInterval))
				continue
			}
			// A renewal counts only if it arrives before the current
			// alive-until instant: past it, holders have been told to stop.
			if !time.Now().Before(e.AliveUntil()) {
				return fmt.Errorf("%w: lease %x renewed too late", ErrDeadlinePassed, int64(e.id))
			}
			until := r.sent.Add(r.ttl - s.cfg.Margin)
			e.extend(until)
			deadline.Reset(time.Until(e.AliveUntil()))
			next.Reset(time.Until(r.sent.Add(s.cfg.KeepAliveInterval)))
		}
	}
}

// keepAliveOnce sends one keepalive with a deadline of one interval and
// notes its send time before the request leaves.
func (s *Session) keepAliveOnce(ctx context.Context, id clientv3.LeaseID) keepAliveResult {
	sent := time.Now()
	rctx, cancel := context.WithTimeout(ctx, s.cfg.KeepAliveInterval)
	defer cancel()
	resp, err := s.client.KeepAliveOnce(rctx, id)
	if err != nil {
		return keepAliveResult{sent: sent, err: err}
	}
	if resp.TTL <= 0 {
		return keepAliveResult{sent: sent, err: rpctypes.ErrLeaseNotFound}
	}
	return keepAliveResult{sent: sent, ttl: time.Duration(resp.TTL) * time.Second}
}

// grant asks etcd for a lease and builds the epoch numbered seq on it.
func (s *Session) grant(ctx context.Context, seq uint64) (*Epoch, error) {
	sent := time.Now()
	resp, err := s.client.Grant(ctx, int64(s.cfg.TTL/time.Second))
	if err != nil {
		return nil, fmt.Errorf("lease: grant: %w", err)
	}
	ttl := time.Duration(resp.TTL) * time.Second
	return newEpoch(s.client, seq, resp.ID, ttl, sent.Add(ttl-s.cfg.Margin)), nil
}

// rejoin grants the lease of the epoch after old, retrying with backoff
// while etcd is unreachable. It returns nil when the session is closed
// first.
func (s *Session) rejoin(old *Epoch) *Epoch {
	backoff := 50 * time.Millisecond
	const maxBackoff = 2 * time.Second
	for attempt := 1; ; attempt++ {
		ctx, cancel := context.WithTimeout(s.runCtx, s.cfg.TTL)
		e, err := s.grant(ctx, old.seq+1)
		cancel()
		if err == nil && time.Now().Before(e.aliveUntil) {
			return e
		}
		if err == nil {
			// The grant took so long that the lease cannot be proven alive
			// any more: give it back and try again after a pause.
			err = fmt.Errorf("lease: grant answered after the new lease's alive-until instant")
			s.revokeLost(e)
		}
		if s.runCtx.Err() != nil {
			return nil
		}
		s.log.Warn("lease rejoin failed", zap.Int("attempt", attempt), zap.Error(err))
		t := time.NewTimer(jitter(backoff))
		select {
		case <-s.runCtx.Done():
			t.Stop()
			return nil
		case <-t.C:
		}
		backoff = min(2*backoff, maxBackoff)
	}
}

// retryDelay is the pause before resending a keepalive that failed
// without an answer: short, so a transient error does not eat the margin.
func retryDelay(interval time.Duration) time.Duration {
	return min(interval/4, 100*time.Millisecond)
}

// jitter spreads d over [d/2, d) so nodes that lost etcd together do not
// come back in lock step.
func jitter(d time.Duration) time.Duration {
	return d/2 + rand.N(d/2+1)
}

func isLeaseNotFound(err error) bool {
	return errors.Is(err, rpctypes.ErrLeaseNotFound) || errors.Is(err, rpctypes.ErrGRPCLeaseNotFound) ||
		rpctypes.Error(err) == rpctypes.ErrLeaseNotFound
}
