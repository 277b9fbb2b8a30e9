package actor

import "sync"

// envelope is one queued message, kept to 32 bytes, two to a cache line:
// the message, and for calls the reply slot (which holds the caller's
// deadline) with its generation; the kind rides in the low bits of tag.
type envelope struct {
	msg  any
	slot *replySlot
	tag  uint64 // gen<<kindBits | kind
}

func (e *envelope) kind() kind { return kind(e.tag & kindMask) }

// kindBits is how many low bits of an envelope tag hold its kind.
const (
	kindBits = 3
	kindMask = 1<<kindBits - 1
)

func (e *envelope) replyTo() ReplyTo { return ReplyTo{slot: e.slot, gen: e.tag >> kindBits} }

// Segment sizes: a chain starts with a small segment, so an actor that gets
// a message now and then touches little memory, and grows in large ones
// under load.
const (
	smallSegment = 8
	largeSegment = 128
)

// segment is a block of the mailbox queue. A mailbox is a chain of
// segments: producers fill the tail under the lock, and the consumer takes
// the whole chain at once and walks it without the lock, so the queue never
// copies messages as it grows and an empty mailbox holds no memory.
type segment struct {
	buf  []envelope
	n    int
	next *segment
}

var (
	smallSegments = sync.Pool{New: func() any { return &segment{buf: make([]envelope, smallSegment)} }}
	largeSegments = sync.Pool{New: func() any { return &segment{buf: make([]envelope, largeSegment)} }}
)

// queue is the segment chain; guarded by the process's mutex. free holds
// segments the consumer has finished with, for producers to reuse while the
// process is busy; they go back to the shared pool when it goes idle.
type queue struct {
	head, tail *segment
	len        int
	free       *segment
	nfree      int
}

func (q *queue) push(e envelope) {
	t := q.tail
	if t == nil || t.n == len(t.buf) {
		s := q.free
		switch {
		case s != nil:
			q.free = s.next
			q.nfree--
			s.next = nil
		case t == nil:
			s = smallSegments.Get().(*segment)
		default:
			s = largeSegments.Get().(*segment)
		}
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
	q.head, q.tail, q.len = nil, nil, 0
	return h
}

// reuse keeps a consumed segment for the producers, up to maxFree of them.
func (q *queue) reuse(s *segment) {
	if q.nfree >= maxFree {
		recycle(s)
		return
	}
	clear(s.buf[:s.n])
	s.n = 0
	s.next = q.free
	q.free = s
	q.nfree++
}

const maxFree = 4

// release returns the free segments to the shared pool.
func (q *queue) release() {
	for s := q.free; s != nil; {
		next := s.next
		recycle(s)
		s = next
	}
	q.free, q.nfree = nil, 0
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
	if len(s.buf) == smallSegment {
		smallSegments.Put(s)
	} else {
		largeSegments.Put(s)
	}
}

// recycleChain returns a whole chain to the pools.
func recycleChain(s *segment) {
	for s != nil {
		next := s.next
		recycle(s)
		s = next
	}
}
