package transport

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"

	"github.com/cohort-go/cohort/actor"
	"google.golang.org/grpc/mem"
)

// frameSize is the size a frame grows to before the queue opens the next:
// large enough to carry a thousand small envelopes in one gRPC message,
// small enough for the buffer pool to recycle.
const frameSize = 32 << 10

var bufPool = mem.DefaultBufferPool()

// pushMode says what push does when the queue is full.
type pushMode uint8

const (
	// block waits for room until ctx ends.
	block pushMode = iota
	// failFast returns ErrBackpressure at once.
	failFast
	// force queues beyond the bound: replies, downs and monitor requests,
	// whose number is bounded by the requests that caused them, and which
	// are pushed from places that must not block.
	force
)

// queue is the bounded send queue of one stream. Envelopes are encoded
// straight into frames; the writer takes every frame queued so far at once,
// so under load many envelopes share one gRPC message, and when the stream
// is slow the queue fills and senders wait (or fail fast). Memory per
// stream is bounded by the limit plus the frames being written.
//
// One goroutine at a time writes to the stream: it holds the write token
// (writing). Usually that is the stream's writer goroutine, but a sender
// that finds the stream idle may take the token and write the frames
// itself (pushFlush), saving two goroutine hand-offs on a round trip. It
// starts only when gRPC has written out every frame it was given
// (inflight is zero) and stops before inflight reaches half of gRPC's
// per-stream write quota, so that gRPC's SendMsg cannot block on flow
// control: a sender writing for itself never waits on a peer that has
// stopped reading.
type queue struct {
	mu      sync.Mutex
	frames  []*[]byte // queued frames; the last one is open for appends
	bytes   int       // bytes in frames
	limit   int
	space   chan struct{}  // closed when the writer takes frames, if senders wait
	err     error          // set when closed
	wake    chan struct{}  // capacity 1: tells the writer there is work
	done    chan struct{}  // closed by close
	writing bool           // the write token is held
	holders sync.WaitGroup // holders of the write token
	send    func(*outFrame) error

	// inflight counts the bytes of frames handed to gRPC whose buffers
	// gRPC has not yet given back, which it does once it has written them
	// to the connection.
	inflight atomic.Int64
	pool     countingPool
}

// directBudget bounds inflight for a sender writing for itself: half of
// gRPC's per-stream write quota (64 KiB), which it checks before queuing a
// message and replenishes as it writes, before it frees the buffer.
const directBudget = 32 << 10

// grpcHeader is the gRPC message header in front of every frame, which
// gRPC counts against the write quota too.
const grpcHeader = 5

// countingPool is the buffer pool of frames handed to gRPC: it keeps
// inflight as gRPC frees them.
type countingPool struct{ q *queue }

func (p countingPool) Get(n int) *[]byte { return bufPool.Get(n) }

func (p countingPool) Put(b *[]byte) {
	p.q.inflight.Add(-int64(len(*b) + grpcHeader))
	bufPool.Put(b)
}

func newQueue(limit int) *queue {
	q := &queue{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
	q.pool.q = q
	return q
}

// start sets how frames are written to the stream: until it is called,
// only the writer goroutine can write, and it does not before.
func (q *queue) start(send func(*outFrame) error) {
	q.mu.Lock()
	q.send = send
	q.mu.Unlock()
}

// push appends e. It fails with the queue's close error once closed; when
// full, mode says whether it waits (until ctx ends), fails with
// ErrBackpressure, or goes over the bound.
func (q *queue) push(ctx context.Context, e *envelope, mode pushMode) error {
	return q.pushWrite(ctx, e, mode, false)
}

// pushFlush is push for a sender that waits for an answer (a call) or
// answers one (a reply): if the stream is idle (no one is writing to it
// and gRPC has written out every frame it was given), it writes the queued
// frames itself rather than wake the writer goroutine. When the stream is
// busy it leaves them to the writer, which batches them with others; casts
// always go through the writer.
func (q *queue) pushFlush(ctx context.Context, e *envelope, mode pushMode) error {
	return q.pushWrite(ctx, e, mode, true)
}

func (q *queue) pushWrite(ctx context.Context, e *envelope, mode pushMode, flush bool) error {
	size := envelopeSize(e)
	size += 1 + sizeVarint(size)
	q.mu.Lock()
	for q.err == nil && q.bytes > 0 && q.bytes+size > q.limit && mode != force {
		if mode == failFast {
			q.mu.Unlock()
			return fmt.Errorf("%w: %d bytes queued, limit %d", actor.ErrBackpressure, q.bytes, q.limit)
		}
		if q.space == nil {
			q.space = make(chan struct{})
		}
		space := q.space
		q.mu.Unlock()
		select {
		case <-space:
		case <-q.done:
		case <-ctx.Done():
			return fmt.Errorf("transport: send queue full (%d bytes): %w", q.limit, ctx.Err())
		}
		q.mu.Lock()
	}
	if q.err != nil {
		err := q.err
		q.mu.Unlock()
		return err
	}
	var f *[]byte
	if n := len(q.frames); n > 0 {
		f = q.frames[n-1]
		if len(*f) > 0 && len(*f)+size > cap(*f) {
			f = nil
		}
	}
	if f == nil {
		f = bufPool.Get(max(frameSize, size))
		*f = (*f)[:0]
		q.frames = append(q.frames, f)
	}
	*f = appendEnvelope(*f, e)
	wasEmpty := q.bytes == 0
	q.bytes += size
	if flush && !q.writing && q.send != nil && q.inflight.Load() == 0 {
		q.acquireLocked()
		var held [4]*[]byte
		frames := q.takeLocked(held[:0])
		q.mu.Unlock()
		q.writeHeld(frames)
		return nil
	}
	q.mu.Unlock()
	if wasEmpty {
		q.signal()
	}
	return nil
}

func (q *queue) signal() {
	select {
	case q.wake <- struct{}{}:
	default:
	}
}

// writeHeld sends frames, which the caller took while taking the write
// token, for as long as inflight stays within directBudget; it puts the
// rest back at the head of the queue, releases the token and leaves what
// is queued to the writer goroutine. A failed send closes the queue, which
// ends the stream.
func (q *queue) writeHeld(frames []*[]byte) {
	for i, f := range frames {
		if q.inflight.Load() >= directBudget {
			rest := frames[i:]
			q.mu.Lock()
			if q.err == nil {
				for _, r := range rest {
					q.bytes += len(*r)
				}
				q.frames = append(append(make([]*[]byte, 0, len(rest)+len(q.frames)), rest...), q.frames...)
				rest = nil
			}
			q.releaseLocked()
			q.mu.Unlock()
			for _, r := range rest {
				bufPool.Put(r)
			}
			q.signal()
			return
		}
		if err := q.sendFrame(f); err != nil {
			for _, r := range frames[i+1:] {
				bufPool.Put(r)
			}
			q.close(fmt.Errorf("transport: write: %w", err))
			q.mu.Lock()
			q.releaseLocked()
			q.mu.Unlock()
			return
		}
	}
	q.mu.Lock()
	q.releaseLocked()
	more := len(q.frames) > 0
	q.mu.Unlock()
	if more {
		q.signal()
	}
}

// acquireLocked takes the write token; q.mu is held, and the queue is
// open, so that once it is closed no new holder appears.
func (q *queue) acquireLocked() {
	q.writing = true
	q.holders.Add(1)
}

func (q *queue) releaseLocked() {
	q.writing = false
	q.holders.Done()
}

// wait returns once no one writes to the stream any more. The queue must
// be closed.
func (q *queue) wait() { q.holders.Wait() }

// sendFrame hands f to gRPC, which gives the buffer back once written.
func (q *queue) sendFrame(f *[]byte) error {
	q.inflight.Add(int64(len(*f) + grpcHeader))
	return q.send(&outFrame{buf: mem.NewBuffer(f, q.pool)})
}

// takeLocked removes and returns every queued frame, appending to into,
// and lets waiting senders retry. q.mu is held.
func (q *queue) takeLocked(into []*[]byte) []*[]byte {
	into = append(into, q.frames...)
	clear(q.frames)
	q.frames = q.frames[:0]
	q.bytes = 0
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	return into
}

// close fails later pushes with err, wakes waiting senders and returns the
// queued frames to the pool. Only the first close counts.
func (q *queue) close(err error) {
	q.mu.Lock()
	if q.err != nil {
		q.mu.Unlock()
		return
	}
	q.err = err
	frames := q.frames
	q.frames, q.bytes = nil, 0
	close(q.done)
	q.mu.Unlock()
	for _, f := range frames {
		bufPool.Put(f)
	}
}

// writeLoop sends the queue's frames, whenever no sender is writing them
// itself, until ctx ends, the queue closes or a send fails, and returns
// why it stopped. start must have been called.
func writeLoop(ctx context.Context, q *queue) error {
	var frames []*[]byte
	for {
		select {
		case <-q.wake:
		case <-q.done:
			return q.err
		case <-ctx.Done():
			return ctx.Err()
		}
		for {
			q.mu.Lock()
			if q.writing || len(q.frames) == 0 {
				// A sender writing for itself signals when it leaves
				// frames behind.
				q.mu.Unlock()
				break
			}
			q.acquireLocked()
			frames = q.takeLocked(frames[:0])
			q.mu.Unlock()
			for i, f := range frames {
				if err := q.sendFrame(f); err != nil {
					for _, rest := range frames[i+1:] {
						bufPool.Put(rest)
					}
					clear(frames)
					q.mu.Lock()
					q.releaseLocked()
					q.mu.Unlock()
					return err
				}
			}
			clear(frames)
			q.mu.Lock()
			q.releaseLocked()
			q.mu.Unlock()
		}
	}
}

func sizeVarint(n int) int {
	s := 1
	for v := uint64(n); v >= 0x80; v >>= 7 {
		s++
	}
	return s
}
