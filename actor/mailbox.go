package actor

import "sync"

// envelope is one queued message, kept small: the message, and for calls
// the reply slot with its generation and the caller's deadline; the kind
// rides in the low bits of tag.
type envelope struct {
	msg      any
	slot     *replySlot
	tag      uint64 // gen<<2 | kind
	deadline int64  // unix nanoseconds; 0 for none
}

func (e *envelope) kind() kind { return kind(e.tag & 3) }

func (e *envelope) replyTo() ReplyTo { return ReplyTo{slot: e.slot, gen: e.tag >> 2} }

const segmentSize = 128

// segment is a fixed block of the mailbox queue. A mailbox is a chain of
// segments: producers fill the tail under the lock, and the consumer takes
// the whole chain at once and walks it without the lock, so the queue never
// copies messages as it grows and an empty mailbox holds no memory.
type segment struct {
	buf  [segmentSize]envelope
	n    int
	next *segment
}

var segments = sync.Pool{New: func() any { return new(segment) }}

// queue is the segment chain; guarded by the process's mutex.
type queue struct {
	head, tail *segment
	len        int
}

func (q *queue) push(e envelope) {
	t := q.tail
	if t == nil || t.n == segmentSize {
		s := segments.Get().(*segment)
		if t == nil {
			q.head = s
		} else {
			t.next = s
		}
		q.tail, t = s, s
	}
	t.buf[t.n] = e
	t.n++
	q.len++
}

// take removes and returns the whole chain.
func (q *queue) take() *segment {
	h := q.head
	*q = queue{}
	return h
}

// prepend puts back a chain of unhandled messages in front of the queue.
func (q *queue) prepend(h *segment, from int) {
	var rest queue
	for s := h; s != nil; s = s.next {
		start := 0
		if s == h {
			start = from
		}
		for i := start; i < s.n; i++ {
			rest.push(s.buf[i])
		}
	}
	if rest.head == nil {
		return
	}
	rest.tail.next = q.head
	if q.head == nil {
		q.tail = rest.tail
	}
	q.head = rest.head
	q.len += rest.len
}

func recycle(s *segment) {
	clear(s.buf[:s.n])
	s.n = 0
	s.next = nil
	segments.Put(s)
}
