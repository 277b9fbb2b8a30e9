package actor

import (
	"sync"
	"sync/atomic"
)

type result struct {
	val any
	err error
}

// replySlot is the rendezvous of one call. Slots are pooled; the state word
// holds the slot's generation shifted left by one, with the low bit set once
// a reply has been claimed, so a ReplyTo kept past its call (a late deferred
// reply, a reply after the caller gave up) can never deliver into a later
// call that reuses the slot.
type replySlot struct {
	state atomic.Uint64
	ch    chan result
	fn    func(any, error) bool
	// deadline is the call's deadline in unix nanoseconds, 0 for none;
	// written before the call is queued. A slot goes back to the pool only
	// once its call has been answered or was never queued, so the actor
	// reading it for a queued call never sees a later call's.
	deadline int64
}

var slots = sync.Pool{New: func() any { return &replySlot{ch: make(chan result, 1)} }}

func getSlot() (*replySlot, uint64) {
	s := slots.Get().(*replySlot)
	return s, s.state.Load() >> 1
}

// release readies the slot for its next call and returns it to the pool.
// The caller must have drained any claimed reply.
func (s *replySlot) release(gen uint64) {
	s.state.Store((gen + 1) << 1)
	slots.Put(s)
}

// abandon is called by a caller that stops waiting. It reports whether a
// reply was claimed concurrently, in which case the caller must still take
// it from the channel before releasing the slot.
func (s *replySlot) abandon(gen uint64) (claimed bool) {
	return !s.state.CompareAndSwap(gen<<1, (gen+1)<<1)
}

// ReplyTo answers one call. It may be used from any goroutine, once; later
// uses, and uses after the caller stopped waiting, do nothing.
type ReplyTo struct {
	slot *replySlot
	gen  uint64
}

// Reply sends the reply of the call. It reports whether the reply reached a
// caller that is still waiting.
func (r ReplyTo) Reply(val any, err error) bool {
	if r.slot == nil {
		return false
	}
	if !r.slot.state.CompareAndSwap(r.gen<<1, r.gen<<1|1) {
		return false
	}
	if r.slot.fn != nil {
		return r.slot.fn(val, err)
	}
	r.slot.ch <- result{val, err}
	return true
}

// NewReplyTo builds a ReplyTo that hands the reply to fn, for transports
// that carry calls from elsewhere. fn is called at most once; it reports
// whether the reply was delivered.
func NewReplyTo(fn func(val any, err error) bool) ReplyTo {
	return ReplyTo{slot: &replySlot{fn: fn}}
}

// Valid reports whether r belongs to a call.
func (r ReplyTo) Valid() bool { return r.slot != nil }
