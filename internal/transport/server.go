package transport

import (
	"context"
	"errors"
	"fmt"
	"io"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cohort-go/cohort/actor"
	"go.uber.org/zap"
	"google.golang.org/grpc"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/metadata"
	"google.golang.org/grpc/status"
)

// lane serializes the delivery of one sender node's envelopes. When a node
// opens a new stream (after its old one broke), the new stream takes the
// lane over and the old one stops delivering, so envelopes of the old
// stream still buffered here can never overtake those of the new one: FIFO
// per sender node holds across reconnects.
type lane struct {
	mu   sync.Mutex // held while delivering a frame
	gen  uint64     // guarded by mu: the generation allowed to deliver
	cur  *inbound   // guarded by Transport.laneMu
	refs int        // streams using the lane; guarded by Transport.laneMu
}

// inbound is the serving side of one stream from a peer node: it delivers
// the peer's envelopes to local actors and sends back replies and downs.
type inbound struct {
	t      *Transport
	from   string
	ctx    context.Context
	cancel context.CancelFunc
	q      *queue
	lane   *lane
	gen    uint64

	mu       sync.Mutex
	monitors map[uint64]actor.MonitorRef
	closed   bool

	// The leave of this node (Transport.Drain). lastCall, the highest call
	// id read, is guarded by lane.mu; draining is set under lane.mu, and
	// from then on frames are set aside unread.
	lastCall  uint64
	draining  atomic.Bool
	calls     atomic.Int64  // calls read and not answered yet
	quiet     chan struct{} // closed once draining with no call unanswered
	quietOnce sync.Once
	ended     chan struct{} // closed when the stream's handler returns

	// Reading (see read and runLent). One goroutine at a time reads the
	// stream; it may lend itself to an actor a call woke, and if that
	// actor runs long, another goroutine takes over the reading.
	ss      grpc.ServerStream
	lent    actor.Runner // an actor the frame being delivered woke; owned by the reader
	inline  atomic.Bool  // the reader is running a lent actor and has not been relieved
	relief  *time.Timer  // relieves the reader once a lent actor runs past reliefAfter
	readEnd chan error   // capacity 1: why the reading ended
}

// reliefAfter is how long the goroutine reading a stream runs an actor
// that a call woke before another goroutine takes over the reading, so
// that a slow or blocked handler holds up nothing else the peer sent.
const reliefAfter = 200 * time.Microsecond

func first(md metadata.MD, key string) string {
	if v := md.Get(key); len(v) == 1 {
		return v[0]
	}
	return ""
}

func (t *Transport) serveStream(_ any, ss grpc.ServerStream) error {
	md, _ := metadata.FromIncomingContext(ss.Context())
	cluster, from, to := first(md, mdCluster), first(md, mdFrom), first(md, mdTo)
	switch {
	case cluster != t.cfg.Cluster:
		t.log.Warn("refused a stream from another cluster", zap.String("from", from), zap.String("cluster", cluster))
		return status.Errorf(codes.PermissionDenied, "node %s serves cluster %q, not %q", t.cfg.Node, t.cfg.Cluster, cluster)
	case to != t.cfg.Node:
		return status.Errorf(codes.FailedPrecondition, "this is node %s, not %q (stale address?)", t.cfg.Node, to)
	case actor.ValidateName(from) != nil:
		return status.Errorf(codes.FailedPrecondition, "stream does not name a valid sender node")
	}
	ctx, cancel := context.WithCancel(ss.Context())
	defer cancel()
	in := &inbound{t: t, from: from, ctx: ctx, cancel: cancel, q: newQueue(t.cfg.QueueBytes),
		monitors: make(map[uint64]actor.MonitorRef), quiet: make(chan struct{}), ended: make(chan struct{}),
		ss: ss, readEnd: make(chan error, 1)}
	defer close(in.ended)
	if !t.takeLane(in) {
		// Nothing was read from the stream: its sender fails what it
		// queued with ErrNotDelivered.
		ss.SetTrailer(metadata.Pairs(mdLeaving, t.cfg.Node))
		return status.Errorf(codes.Unavailable, "node %s is leaving the cluster", t.cfg.Node)
	}
	defer t.releaseLane(in)
	if err := ss.SendHeader(metadata.Pairs(mdAccepted, t.cfg.Node)); err != nil {
		return err
	}
	in.q.start(func(f *outFrame) error { return ss.SendMsg(f) })
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		if err := writeLoop(ctx, in.q); err != nil && ctx.Err() == nil {
			t.log.Debug("inbound stream write ended", zap.String("from", from), zap.Error(err))
		}
		cancel()
	}()
	in.relief = time.AfterFunc(time.Hour, in.relieve)
	in.relief.Stop()
	defer in.relief.Stop()
	// The stream is read on goroutines of its own, never on this one: a
	// reader may end up running an actor, whose handler must not keep the
	// stream from ending.
	go in.readOn()
	err := <-in.readEnd
	cancel()
	in.close()
	in.q.wait() // an actor writing its reply must be done before the handler ends the stream
	wg.Wait()
	switch {
	case err == nil:
	case errors.Is(err, context.Canceled) || errors.Is(err, io.EOF) || status.Code(err) == codes.Canceled:
		// The peer ended its stream: it stopped, or left, or opened a
		// new one.
		t.log.Debug("inbound stream ended", zap.String("from", from), zap.Error(err))
	case errors.Is(err, ErrMalformed):
		t.log.Warn("inbound stream ended", zap.String("from", from), zap.Error(err))
		return status.Error(codes.InvalidArgument, err.Error())
	default:
		t.log.Warn("inbound stream ended", zap.String("from", from), zap.Error(err))
	}
	return nil
}

// takeLane makes in the deliverer of its sender's envelopes, stopping the
// stream that held the lane before. It returns false, and changes nothing,
// once the transport drains.
func (t *Transport) takeLane(in *inbound) bool {
	t.laneMu.Lock()
	if t.draining {
		t.laneMu.Unlock()
		return false
	}
	l := t.lanes[in.from]
	if l == nil {
		l = &lane{}
		t.lanes[in.from] = l
	}
	l.refs++
	old := l.cur
	l.cur = in
	t.laneMu.Unlock()
	in.lane = l
	if old != nil {
		old.cancel() // unblocks a delivery of the old stream waiting on a full mailbox
	}
	l.mu.Lock()
	l.gen++
	in.gen = l.gen
	l.mu.Unlock()
	return true
}

func (t *Transport) releaseLane(in *inbound) {
	l := in.lane
	t.laneMu.Lock()
	defer t.laneMu.Unlock()
	if l.cur == in {
		l.cur = nil
	}
	l.refs--
	if l.refs == 0 {
		delete(t.lanes, in.from)
	}
}

// readOn reads the stream on the calling goroutine until the reading ends
// or another goroutine takes it over; whoever reads last reports why it
// ended.
func (in *inbound) readOn() {
	if err, relieved := in.read(); !relieved {
		in.readEnd <- err
	}
}

// read delivers the stream's frames until it ends, and returns why; or,
// when another goroutine took over the reading while this one ran an
// actor it lent itself to, it returns relieved.
func (in *inbound) read() (err error, relieved bool) {
	var f inFrame
	var e envelope
	for {
		if err := in.ss.RecvMsg(&f); err != nil {
			return err, false
		}
		err := in.deliver(&f, &e)
		if r := in.lent; r.Woken() {
			in.lent = actor.Runner{}
			if err != nil {
				go r.Run()
			} else if in.runLent(r) {
				return nil, true
			}
		}
		if err != nil {
			return err, false
		}
	}
}

// deliver dispatches the envelopes of frame f, in order.
func (in *inbound) deliver(f *inFrame, e *envelope) error {
	in.lane.mu.Lock()
	defer in.lane.mu.Unlock()
	if in.lane.gen != in.gen {
		return fmt.Errorf("superseded by a newer stream from %s", in.from)
	}
	if in.draining.Load() {
		// Set aside unread: its sender fails the calls after lastCall
		// with ErrNotDelivered.
		return nil
	}
	rest := f.b
	for n := 0; ; n++ {
		var ok bool
		var err error
		if rest, ok, err = nextEnvelope(rest, e); err != nil {
			return err
		}
		if !ok {
			if n > 1 && in.lent.Woken() {
				// A frame of several envelopes comes from a busy
				// sender: the actor runs beside the reading.
				go in.lent.Run()
				in.lent = actor.Runner{}
			}
			return nil
		}
		in.dispatch(e)
	}
}

// lend keeps r, an actor a call woke, for the reader to run once the frame
// is delivered, which spares a hand-off to a new goroutine: a remote call
// to an idle actor then runs on the goroutine that read it, and its reply
// is written from there too. One actor per frame is run so; any other is
// started on a goroutine of its own.
func (in *inbound) lend(r actor.Runner) {
	switch {
	case !r.Woken():
	case in.lent.Woken():
		go r.Run()
	default:
		in.lent = r
	}
}

// runLent runs r on the reading goroutine. If r runs past reliefAfter, a
// new goroutine takes over the reading (relieve), and runLent reports
// that this one must stop reading once r is done.
func (in *inbound) runLent(r actor.Runner) (relieved bool) {
	in.inline.Store(true)
	in.relief.Reset(reliefAfter)
	r.Run()
	in.relief.Stop()
	return !in.inline.CompareAndSwap(true, false)
}

// relieve hands the reading to a new goroutine if the reader is still
// running a lent actor.
func (in *inbound) relieve() {
	if in.inline.CompareAndSwap(true, false) {
		go in.readOn()
	}
}

// deadlineCtx carries a call's deadline to System.CallAsync without a
// timer per call: the actor answers a call whose deadline passed while it
// was queued with DeadlineExceeded, and a delivery that waits for room in
// a full mailbox ends with the stream.
type deadlineCtx struct {
	context.Context
	d time.Time
}

func (c *deadlineCtx) Deadline() (time.Time, bool) { return c.d, true }

func (in *inbound) target(e *envelope) (actor.Ref, error) {
	if e.name != "" {
		ref, ok := in.t.sys.Whereis(e.name)
		if !ok {
			return actor.Ref{}, fmt.Errorf("%w: no actor registered as %q on node %s", actor.ErrNotFound, e.name, in.t.cfg.Node)
		}
		return ref, nil
	}
	if e.ref.ID == 0 {
		return actor.Ref{}, fmt.Errorf("%w: envelope has no target", actor.ErrInvalidRef)
	}
	return actor.Ref{Node: in.t.cfg.Node, ID: e.ref.ID, Incarnation: e.ref.Incarnation}, nil
}

func (in *inbound) dispatch(e *envelope) {
	sys := in.t.sys
	switch e.kind {
	case kindCall, kindCastTaken, kindSendTaken:
		id := e.id
		in.lastCall = max(in.lastCall, id)
		in.calls.Add(1) // reply counts the answer
		if sys.Stopped() {
			// The node is stopping: nothing here takes the call, which
			// its caller may send where the actor runs next.
			in.replyError(id, &actor.WireError{Code: codeLeaving,
				Message: fmt.Sprintf("node %s is stopping; the call was not delivered", in.t.cfg.Node)})
			return
		}
		ref, err := in.target(e)
		var msg any
		if err == nil {
			msg, err = actor.DecodeMessage(e.typ, e.payload)
		}
		if err != nil {
			in.reply(id, nil, err)
			return
		}
		var ctx context.Context = in.ctx
		if e.deadline > 0 {
			ctx = &deadlineCtx{Context: in.ctx, d: time.Now().Add(time.Duration(e.deadline))}
		}
		reply := func(v any, err error) { in.reply(id, v, err) }
		var r actor.Runner
		if e.kind == kindCall {
			r, err = sys.CallAsyncLend(ctx, ref, msg, reply)
		} else {
			r, err = sys.TakenAsyncLend(ctx, ref, msg, e.kind == kindSendTaken, reply)
		}
		if err != nil {
			in.reply(id, nil, err)
		}
		in.lend(r)
	case kindCast, kindSend:
		ref, err := in.target(e)
		var msg any
		if err == nil {
			msg, err = actor.DecodeMessage(e.typ, e.payload)
		}
		if err == nil {
			if e.kind == kindCast {
				err = sys.Cast(in.ctx, ref, msg)
			} else {
				err = sys.Send(ref, msg)
			}
		}
		if err != nil {
			lvl := zap.WarnLevel
			if errors.Is(err, actor.ErrNotFound) {
				lvl = zap.DebugLevel // as locally: a message to an actor that died is lost
			}
			in.t.log.Log(lvl, "message from peer not delivered", zap.String("from", in.from),
				zap.Stringer("kind", e.kind), zap.String("type", e.typ), zap.Error(err))
		}
	case kindStop, kindKill:
		in.stop(e)
	case kindMonitor:
		in.monitor(e)
	case kindDemonitor:
		in.mu.Lock()
		m, ok := in.monitors[e.id]
		delete(in.monitors, e.id)
		in.mu.Unlock()
		if ok {
			sys.Demonitor(m)
		}
	default:
		in.t.log.Warn("unexpected envelope on an inbound stream; ignored", zap.String("from", in.from), zap.Stringer("kind", e.kind))
	}
}

// stop stops or kills the target of e. A stop waits for the actor to exit,
// on a goroutine of its own (the stream reads on meanwhile), and is
// answered like a call; a kill is not answered.
func (in *inbound) stop(e *envelope) {
	sys := in.t.sys
	reason := actor.ErrorFromWire(e.err)
	ref, err := in.target(e)
	if e.kind == kindKill {
		if err == nil {
			err = sys.Kill(ref)
		}
		if err != nil {
			in.t.log.Debug("kill from peer not delivered", zap.String("from", in.from), zap.Error(err))
		}
		return
	}
	id := e.id
	in.lastCall = max(in.lastCall, id)
	in.calls.Add(1) // reply counts the answer
	if err != nil {
		in.reply(id, nil, err)
		return
	}
	// The stop outlives the stream if it must: an actor asked to stop is
	// not killed because its asker's stream broke. It is bounded by the
	// actor's shutdown timeout and the caller's deadline; Close waits
	// for it (the node stops its actors before it closes the transport).
	ctx, cancel := context.WithoutCancel(in.ctx), context.CancelFunc(func() {})
	if e.deadline > 0 {
		ctx, cancel = context.WithTimeout(ctx, time.Duration(e.deadline))
	}
	in.t.wg.Add(1)
	go func() {
		defer in.t.wg.Done()
		defer cancel()
		in.reply(id, nil, sys.Stop(ctx, ref, reason))
	}()
}

func (in *inbound) monitor(e *envelope) {
	id := e.id
	ref, err := in.target(e)
	if err != nil {
		in.down(id, err)
		return
	}
	var mu sync.Mutex
	fired := false
	m := in.t.sys.MonitorFunc(ref, func(d actor.Down) {
		mu.Lock()
		fired = true
		mu.Unlock()
		in.mu.Lock()
		delete(in.monitors, id)
		in.mu.Unlock()
		in.down(id, d.Reason)
	})
	mu.Lock()
	defer mu.Unlock()
	if fired {
		return
	}
	in.mu.Lock()
	if in.closed {
		in.mu.Unlock()
		in.t.sys.Demonitor(m)
		return
	}
	in.monitors[id] = m
	in.mu.Unlock()
}

func (in *inbound) down(id uint64, reason error) {
	if reason == nil {
		reason = actor.Normal
	}
	_ = in.q.push(in.ctx, &envelope{kind: kindDown, id: id, err: truncate(actor.ErrorToWire(reason))}, force)
}

// reply sends the answer of call id, once for every call read. It runs on
// whatever goroutine answers the call and never blocks.
func (in *inbound) reply(id uint64, v any, err error) {
	defer in.answered()
	e := envelope{kind: kindReply, id: id}
	sp := scratchPool.Get().(*[]byte)
	defer putScratch(sp)
	if err == nil {
		*sp, err = in.t.encode(&e, v, (*sp)[:0])
		if err != nil {
			err = fmt.Errorf("reply from node %s: %w", in.t.cfg.Node, err)
			in.t.log.Warn("reply not sent", zap.String("to", in.from), zap.Error(err))
			e.typ, e.payload = "", nil
		}
	}
	if err != nil {
		e.err = truncate(actor.ErrorToWire(err))
	}
	_ = in.q.pushFlush(in.ctx, &e, force)
}

// replyError answers call id with w, as reply does.
func (in *inbound) replyError(id uint64, w *actor.WireError) {
	defer in.answered()
	_ = in.q.pushFlush(in.ctx, &envelope{kind: kindReply, id: id, err: w}, force)
}

// codeLeaving is the code of the error a stopping node answers a call
// with when nothing there took it. Only the transport sends it; the
// caller's side turns it into ErrNotDelivered.
const codeLeaving = "cohort.transport.leaving"

// answered counts the answer of a call, after it was queued.
func (in *inbound) answered() {
	if in.calls.Add(-1) == 0 && in.draining.Load() {
		in.quietOnce.Do(func() { close(in.quiet) })
	}
}

// drain stops the stream taking envelopes and, once every call it read is
// answered (or ctx ends), queues after the answers the drained envelope
// naming the last call read; then it waits for the sender to end the
// stream, or for ctx to end.
func (in *inbound) drain(ctx context.Context) {
	in.lane.mu.Lock()
	in.draining.Store(true)
	last := in.lastCall
	in.lane.mu.Unlock()
	if in.calls.Load() == 0 {
		in.quietOnce.Do(func() { close(in.quiet) })
	}
	select {
	case <-in.quiet:
	case <-in.ctx.Done():
		return
	case <-ctx.Done():
	}
	if err := in.q.push(ctx, &envelope{kind: kindDrained, id: last}, force); err != nil {
		return
	}
	select {
	case <-in.ended:
	case <-ctx.Done():
	}
}

func truncate(w *actor.WireError) *actor.WireError {
	for r := w; r != nil; r = r.Reason {
		if len(r.Message) > maxErrorMessage {
			r.Message = r.Message[:maxErrorMessage] + "…"
		}
	}
	return w
}

// close removes the stream's monitors and fails its queue.
func (in *inbound) close() {
	in.mu.Lock()
	in.closed = true
	ms := in.monitors
	in.monitors = nil
	in.mu.Unlock()
	for _, m := range ms {
		in.t.sys.Demonitor(m)
	}
	in.q.close(fmt.Errorf("%w: stream from %s ended", actor.ErrNodeDown, in.from))
}
