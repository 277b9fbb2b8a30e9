package transport

import (
	"context"
	"errors"
	"fmt"
	"math"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cohort-go/cohort/actor"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/backoff"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/connectivity"
	"google.golang.org/grpc/credentials"
	"google.golang.org/grpc/credentials/insecure"
	"google.golang.org/grpc/keepalive"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// Metadata keys of a stream: who opens it, whom it is for, and in which
// cluster.
const (
	mdCluster = "cohort-cluster"
	mdFrom    = "cohort-from"
	mdTo      = "cohort-to"
	// mdAccepted is in the header of a stream the peer accepted.
	mdAccepted = "cohort-accepted"
	// mdLeaving is in the trailer of a stream the peer refused because it
	// is leaving the cluster.
	mdLeaving = "cohort-leaving"
)

// Reconnect backoff: a stream that broke after it was accepted is re-opened
// at once by the next send; after a failed attempt, sends fail with
// ErrNodeDown until the backoff has passed, and the backoff doubles. An
// attempt that failed because the connection is down ends its backoff as
// soon as gRPC, which re-dials the connection on a backoff of its own (at
// most maxConnBackoff), has it up again.
const (
	minBackoff     = 50 * time.Millisecond
	maxBackoff     = 2 * time.Second
	maxConnBackoff = time.Second
)

// peer is the outbound side towards one node: its gRPC connection and the
// current session (stream). A session that fails is never reused; the next
// send starts a new one.
type peer struct {
	t    *Transport
	node string
	cur  atomic.Pointer[session]

	mu      sync.Mutex
	addr    string
	cc      *grpc.ClientConn
	retryAt time.Time
	backoff time.Duration
	lastErr error
	closed  error
	// awaiting: a goroutine waits for cc to be up again (awaitReady).
	awaiting bool
}

// session returns the current session to the peer, starting one if there
// is none. Its errors are all ErrNotDelivered: without a session nothing
// was sent.
func (p *peer) session() (*session, error) {
	if s := p.cur.Load(); s != nil {
		return s, nil
	}
	s, err := p.newSession()
	return s, undelivered(err)
}

func (p *peer) newSession() (*session, error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if s := p.cur.Load(); s != nil {
		return s, nil
	}
	if p.closed != nil {
		return nil, p.closed
	}
	if wait := time.Until(p.retryAt); wait > 0 {
		if !errors.Is(p.lastErr, actor.ErrNodeDown) {
			return nil, fmt.Errorf("%w: %s unreachable (%v); next attempt in %v", actor.ErrNodeDown, p.node, p.lastErr, wait.Round(time.Millisecond))
		}
		return nil, fmt.Errorf("%w; next attempt in %v", p.lastErr, wait.Round(time.Millisecond))
	}
	addr, ok := p.t.cfg.Lookup(p.node)
	if !ok {
		return nil, fmt.Errorf("%w: %s is not a member of the cluster", actor.ErrNodeDown, p.node)
	}
	if p.cc == nil || addr != p.addr {
		if p.cc != nil {
			_ = p.cc.Close()
		}
		cc, err := p.dial(addr)
		if err != nil {
			return nil, fmt.Errorf("%w: %s at %q: %w", actor.ErrNodeDown, p.node, addr, err)
		}
		p.cc, p.addr = cc, addr
	}
	s := &session{p: p, q: newQueue(p.t.cfg.QueueBytes), pending: make(map[uint64]chan result),
		monitors: make(map[uint64]func(error))}
	s.ctx, s.cancel = context.WithCancel(p.t.ctx)
	p.cur.Store(s)
	p.t.wg.Add(1)
	go s.run(p.cc)
	return s, nil
}

func (p *peer) dial(addr string) (*grpc.ClientConn, error) {
	cfg := p.t.cfg
	creds := insecure.NewCredentials()
	if cfg.ClientTLS != nil {
		creds = loggedCreds{credentials.NewTLS(cfg.ClientTLS), p.t.log}
	}
	return grpc.NewClient("passthrough:///"+addr,
		grpc.WithTransportCredentials(creds),
		grpc.WithDefaultCallOptions(grpc.ForceCodecV2(frameCodec{}),
			grpc.MaxCallRecvMsgSize(p.t.frame), grpc.MaxCallSendMsgSize(p.t.frame)),
		grpc.WithInitialWindowSize(1<<20),
		grpc.WithInitialConnWindowSize(4<<20),
		grpc.WithConnectParams(grpc.ConnectParams{
			Backoff:           backoff.Config{BaseDelay: minBackoff, Multiplier: 2, Jitter: 0.2, MaxDelay: maxConnBackoff},
			MinConnectTimeout: cfg.DialTimeout,
		}),
		grpc.WithKeepaliveParams(keepalive.ClientParameters{Time: 10 * time.Second, Timeout: 5 * time.Second, PermitWithoutStream: true}),
	)
}

// ended records the end of session s and when the next may start.
func (p *peer) ended(s *session, accepted bool, err error) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.cur.CompareAndSwap(s, nil)
	p.lastErr = err
	if accepted {
		p.backoff, p.retryAt = 0, time.Time{}
		return
	}
	p.backoff = min(max(2*p.backoff, minBackoff), maxBackoff)
	p.retryAt = time.Now().Add(p.backoff)
	if cc := p.cc; cc != nil && !p.awaiting {
		if st := cc.GetState(); st != connectivity.Ready && st != connectivity.Shutdown {
			p.awaiting = true
			p.t.wg.Add(1)
			go p.awaitReady(cc, st)
		}
	}
}

// awaitReady waits until cc, last seen in state st, is up and then lets
// the next send open a session at once, whatever the backoff: the wait
// for a connection that was down is gRPC's re-dial alone, not that plus
// the rest of the session backoff. It ends early when cc is closed or the
// transport stops.
func (p *peer) awaitReady(cc *grpc.ClientConn, st connectivity.State) {
	defer p.t.wg.Done()
	for st != connectivity.Ready && st != connectivity.Shutdown {
		if st == connectivity.Idle {
			cc.Connect()
		}
		if !cc.WaitForStateChange(p.t.ctx, st) {
			break
		}
		st = cc.GetState()
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.awaiting = false
	if st == connectivity.Ready && p.cc == cc {
		p.retryAt = time.Time{}
	}
}

// close ends the peer for good: its session fails with err, later sends get
// err, and its connection is closed.
func (p *peer) close(err error) {
	p.mu.Lock()
	p.closed = err
	cc := p.cc
	p.cc = nil
	s := p.cur.Swap(nil)
	p.mu.Unlock()
	if s != nil {
		s.fail(err)
	}
	if cc != nil {
		_ = cc.Close()
	}
}

type result struct {
	val any
	err error
}

// session is one outbound stream to a peer, from the dial to its end. It
// owns the stream's send queue, the calls waiting for replies and the
// monitors set through it; when it ends, every one of them is failed with
// ErrNodeDown.
type session struct {
	p      *peer
	q      *queue
	ctx    context.Context
	cancel context.CancelFunc
	ids    atomic.Uint64

	mu       sync.Mutex
	pending  map[uint64]chan result
	monitors map[uint64]func(error)
	err      error // set when the session failed
}

// run dials the stream, then writes frames until the session fails, and
// waits for its reader.
func (s *session) run(cc *grpc.ClientConn) {
	defer s.p.t.wg.Done()
	t := s.p.t
	ctx := metadata.NewOutgoingContext(s.ctx, metadata.Pairs(mdCluster, t.cfg.Cluster, mdFrom, t.cfg.Node, mdTo, s.p.node))
	timer := time.AfterFunc(t.cfg.DialTimeout, s.cancel)
	stream, err := cc.NewStream(ctx, &streamDesc, methodName)
	if err == nil {
		err = awaitAccept(stream)
	}
	accepted := timer.Stop() && err == nil
	if !accepted {
		if err == nil {
			err = fmt.Errorf("no answer within %v", t.cfg.DialTimeout)
		}
		// Nothing is written to a stream before it is accepted: what
		// waited for it was not delivered, and may be sent again.
		if errors.Is(err, errLeaving) {
			err = undelivered(leavingError(s.p.node))
		} else {
			err = undelivered(s.p.t.dialError(s.p.node, err))
		}
		s.fail(err)
		s.p.ended(s, false, err)
		return
	}
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		s.fail(s.read(stream))
	}()
	s.q.start(func(f *outFrame) error { return stream.SendMsg(f) })
	err = writeLoop(s.ctx, s.q)
	s.fail(fmt.Errorf("%w: %s: stream broke: %w", actor.ErrNodeDown, s.p.node, err))
	s.q.wait()
	wg.Wait()
	s.mu.Lock()
	failed := s.err // why the session ended, as its pending calls saw it
	s.mu.Unlock()
	s.p.ended(s, true, failed)
}

// awaitAccept waits for the peer's header; a peer that refuses the stream
// answers with its status alone, which the first RecvMsg returns.
func awaitAccept(stream grpc.ClientStream) error {
	md, err := stream.Header()
	if err != nil {
		return err
	}
	if len(md.Get(mdAccepted)) == 1 {
		return nil
	}
	var f inFrame
	if err := stream.RecvMsg(&f); err != nil {
		if len(stream.Trailer().Get(mdLeaving)) == 1 {
			return fmt.Errorf("%w: %w", errLeaving, err)
		}
		return err
	}
	return fmt.Errorf("%w: peer did not accept the stream", ErrRefused)
}

func (t *Transport) dialError(node string, err error) error {
	if t.cfg.Explain != nil {
		if why := t.cfg.Explain(node); why != "" {
			err = fmt.Errorf("%w (%s)", err, why)
		}
	}
	if st, ok := status.FromError(err); ok {
		if st.Code() == codes.PermissionDenied || st.Code() == codes.FailedPrecondition {
			return fmt.Errorf("%w: %w: %s: %s", actor.ErrNodeDown, ErrRefused, node, st.Message())
		}
		return fmt.Errorf("%w: %s unreachable: %s", actor.ErrNodeDown, node, st.Message())
	}
	return fmt.Errorf("%w: %s unreachable: %w", actor.ErrNodeDown, node, err)
}

// read dispatches replies and downs until the stream ends.
func (s *session) read(stream grpc.ClientStream) error {
	var f inFrame
	var e envelope
	for {
		if err := stream.RecvMsg(&f); err != nil {
			if status.Code(err) == codes.ResourceExhausted {
				err = fmt.Errorf("%s refused a message larger than its limit (its TransportConfig.MaxMessageSize is smaller than this node's: use the same value on every node): %w", s.p.node, err)
				s.p.t.log.Warn("stream to peer broken by an oversized message", zap.String("peer", s.p.node), zap.Error(err))
			}
			return fmt.Errorf("%w: %s: stream broke: %w", actor.ErrNodeDown, s.p.node, err)
		}
		rest := f.b
		for {
			var ok bool
			var err error
			rest, ok, err = nextEnvelope(rest, &e)
			if err != nil {
				return fmt.Errorf("%w: %s: %w", actor.ErrNodeDown, s.p.node, err)
			}
			if !ok {
				break
			}
			switch e.kind {
			case kindReply:
				s.reply(&e)
			case kindDown:
				s.down(e.id, actor.ErrorFromWire(e.err))
			case kindDrained:
				return &drainedError{node: s.p.node, last: e.id}
			default:
				s.p.t.log.Warn("unexpected envelope on an outbound stream; ignored",
					zap.String("peer", s.p.node), zap.Stringer("kind", e.kind))
			}
		}
	}
}

func (s *session) reply(e *envelope) {
	s.mu.Lock()
	ch := s.pending[e.id]
	delete(s.pending, e.id)
	s.mu.Unlock()
	if ch == nil {
		return // the caller gave up
	}
	if e.err != nil {
		if e.err.Code == codeLeaving {
			ch <- result{err: undelivered(leavingError(s.p.node))}
			return
		}
		ch <- result{err: actor.ErrorFromWire(e.err)}
		return
	}
	v, err := actor.DecodeMessage(e.typ, e.payload)
	if err != nil {
		err = fmt.Errorf("reply from %s: %w", s.p.node, err)
		s.p.t.log.Warn("reply not decodable", zap.String("peer", s.p.node), zap.Error(err))
	}
	ch <- result{val: v, err: err}
}

func (s *session) down(id uint64, reason error) {
	s.mu.Lock()
	fn := s.monitors[id]
	delete(s.monitors, id)
	s.mu.Unlock()
	if fn != nil {
		fn(reason)
	}
}

// drainedError ends a session whose peer is leaving: it read no call after
// last.
type drainedError struct {
	node string
	last uint64
}

func (e *drainedError) Error() string { return leavingError(e.node).Error() }

func leavingError(node string) error {
	return fmt.Errorf("%w: %s is leaving (or has left) the cluster", actor.ErrNodeDown, node)
}

func (e *drainedError) Unwrap() error { return actor.ErrNodeDown }

// fail ends the session with err: later pushes fail, and every pending call
// and monitor gets err. When err is a *drainedError, the pushes and the
// calls the peer did not read get it as undelivered. Only the first call
// counts.
func (s *session) fail(err error) {
	if !errors.Is(err, actor.ErrNodeDown) {
		err = fmt.Errorf("%w: %s: %w", actor.ErrNodeDown, s.p.node, err)
	}
	unread, later := uint64(math.MaxUint64), err
	if de := (*drainedError)(nil); errors.As(err, &de) {
		unread, later = de.last, undelivered(err)
	}
	s.mu.Lock()
	if s.err != nil {
		s.mu.Unlock()
		return
	}
	s.err = later
	pending, monitors := s.pending, s.monitors
	s.pending, s.monitors = nil, nil
	s.mu.Unlock()
	s.p.cur.CompareAndSwap(s, nil)
	s.q.close(later)
	s.cancel()
	for id, ch := range pending {
		if id > unread {
			ch <- result{err: later}
		} else {
			ch <- result{err: err}
		}
	}
	for _, fn := range monitors {
		fn(err)
	}
	s.p.t.log.Debug("stream to peer ended", zap.String("peer", s.p.node), zap.Error(err))
}

var resultChans = sync.Pool{New: func() any { return make(chan result, 1) }}

// call queues e as a call and waits for its reply.
func (s *session) call(ctx context.Context, e *envelope, mode pushMode) (any, error) {
	e.id = s.ids.Add(1)
	ch := resultChans.Get().(chan result)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		resultChans.Put(ch)
		return nil, err
	}
	s.pending[e.id] = ch
	s.mu.Unlock()
	if err := s.q.pushFlush(ctx, e, mode); err != nil {
		if s.forget(e.id) {
			resultChans.Put(ch)
		}
		return nil, err
	}
	select {
	case r := <-ch:
		resultChans.Put(ch)
		return r.val, r.err
	case <-ctx.Done():
		if !s.forget(e.id) {
			r := <-ch // a reply or a failure was handed over concurrently
			resultChans.Put(ch)
			return r.val, r.err
		}
		resultChans.Put(ch)
		return nil, fmt.Errorf("actor: call %s: %w", s.target(e), ctx.Err())
	}
}

// target names the target of e, sent on this session, as the actor
// package prints it: a Ref, or name@node.
func (s *session) target(e *envelope) string {
	if e.name != "" {
		return e.name + "@" + s.p.node
	}
	return actor.Ref{Node: s.p.node, ID: e.ref.ID, Incarnation: e.ref.Incarnation}.String()
}

// forget removes a pending call; false means its result is being handed
// over and must be received.
func (s *session) forget(id uint64) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	if _, ok := s.pending[id]; ok {
		delete(s.pending, id)
		return true
	}
	return false
}

func (s *session) monitor(target actor.Ref, down func(error)) (cancel func()) {
	id := s.ids.Add(1)
	s.mu.Lock()
	if s.err != nil {
		err := s.err
		s.mu.Unlock()
		down(err)
		return func() {}
	}
	s.monitors[id] = down
	s.mu.Unlock()
	if err := s.q.push(context.Background(), &envelope{kind: kindMonitor, id: id, ref: target}, force); err != nil {
		s.down(id, err)
		return func() {}
	}
	return func() {
		s.mu.Lock()
		_, ok := s.monitors[id]
		delete(s.monitors, id)
		s.mu.Unlock()
		if ok {
			_ = s.q.push(context.Background(), &envelope{kind: kindDemonitor, id: id}, force)
		}
	}
}
