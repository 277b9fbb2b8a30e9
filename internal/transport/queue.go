package transport

import (
	"context"
	"fmt"
	"sync"

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
type queue struct {
	mu     sync.Mutex
	frames []*[]byte // queued frames; the last one is open for appends
	bytes  int       // bytes in frames
	limit  int
	space  chan struct{} // closed when the writer takes frames, if senders wait
	err    error         // set when closed
	wake   chan struct{} // capacity 1: tells the writer there is work
	done   chan struct{} // closed by close
}

func newQueue(limit int) *queue {
	return &queue{limit: limit, wake: make(chan struct{}, 1), done: make(chan struct{})}
}

// push appends e. It fails with the queue's close error once closed; when
// full, mode says whether it waits (until ctx ends), fails with
// ErrBackpressure, or goes over the bound.
func (q *queue) push(ctx context.Context, e *envelope, mode pushMode) error {
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
	q.mu.Unlock()
	if wasEmpty {
		select {
		case q.wake <- struct{}{}:
		default:
		}
	}
	return nil
}

// take removes and returns every queued frame, appending to into, and lets
// waiting senders retry.
func (q *queue) take(into []*[]byte) []*[]byte {
	q.mu.Lock()
	into = append(into, q.frames...)
	clear(q.frames)
	q.frames = q.frames[:0]
	q.bytes = 0
	if q.space != nil {
		close(q.space)
		q.space = nil
	}
	q.mu.Unlock()
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

// writeLoop sends the queue's frames with send until ctx ends, the queue
// closes or send fails, and returns why it stopped.
func writeLoop(ctx context.Context, q *queue, send func(*outFrame) error) error {
	var frames []*[]byte
	for {
		select {
		case <-q.wake:
		case <-q.done:
			return q.err
		case <-ctx.Done():
			return ctx.Err()
		}
		frames = q.take(frames[:0])
		for i, f := range frames {
			if err := send(&outFrame{buf: mem.NewBuffer(f, bufPool)}); err != nil {
				for _, rest := range frames[i+1:] {
					bufPool.Put(rest)
				}
				clear(frames)
				return err
			}
		}
		clear(frames)
	}
}

func sizeVarint(n int) int {
	s := 1
	for v := uint64(n); v >= 0x80; v >>= 7 {
		s++
	}
	return s
}
