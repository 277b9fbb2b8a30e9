package ring

import (
	"cmp"
	"slices"
	"sync"
)

// Change describes how the member set moved from the state a subscriber saw
// last to the state as of Revision.
type Change struct {
	// Revision is the etcd revision of the new member set.
	Revision int64
	// Members is the whole member set as of Revision, sorted by ID.
	Members []Member
	// Joined lists the members present now that were not before, sorted by
	// ID. A node that left and came back under the same ID (its member key
	// was deleted and created again) is in Left and in Joined.
	Joined []Member
	// Left lists the members present before that are gone, or replaced by a
	// new incarnation, with the values they had. Sorted by ID.
	Left []Member
	// Updated lists the members whose record changed in place, with their
	// new values. Sorted by ID.
	Updated []Member
	// Snapshot is the ring as of Revision.
	Snapshot *Snapshot
}

type subscriber struct {
	mu     sync.Mutex
	ch     chan Change
	from   *view // the base of the Change waiting in ch, if any
	sent   *view // the state the last Change put in ch leads to
	closed bool
}

// Subscribe returns a channel of member-set changes and a function that ends
// the subscription and closes the channel. The first Change, ready at once,
// has every current member in Joined. A subscriber that falls behind never
// slows the ring: changes it has not received yet are merged into one, whose
// Joined, Left and Updated lead from the last state it received to the
// latest, so the latest state is never lost. The channel is closed when the
// ring stops or cancel is called; cancel is safe to call more than once.
func (r *Ring) Subscribe() (<-chan Change, func()) {
	s := &subscriber{ch: make(chan Change, 1), sent: &view{}}
	r.subMu.Lock()
	if r.closed {
		r.subMu.Unlock()
		close(s.ch)
		return s.ch, func() {}
	}
	r.subs[s] = struct{}{}
	s.offer(r.Snapshot())
	r.subMu.Unlock()
	cancel := func() {
		r.subMu.Lock()
		delete(r.subs, s)
		r.subMu.Unlock()
		s.close()
	}
	return s.ch, cancel
}

// notifyLocked offers snap to every subscriber without blocking. The caller
// holds r.subMu.
func (r *Ring) notifyLocked(snap *Snapshot) {
	for s := range r.subs {
		s.offer(snap)
	}
}

func (r *Ring) closeSubscribers() {
	r.subMu.Lock()
	subs := r.subs
	r.subs = nil
	r.closed = true
	r.subMu.Unlock()
	for s := range subs {
		s.close()
	}
}

// offer replaces whatever the subscriber has not taken yet with a Change
// from the last state it took to snap. ch has room for one Change and only
// offer sends on it, under s.mu, so the send never blocks.
func (s *subscriber) offer(snap *Snapshot) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed || snap.v == s.sent {
		return
	}
	from := s.sent
	select {
	case <-s.ch:
		from = s.from
	default:
	}
	s.ch <- diff(from, snap)
	s.from, s.sent = from, snap.v
}

func (s *subscriber) close() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		s.closed = true
		close(s.ch)
	}
}

func diff(from *view, to *Snapshot) Change {
	c := Change{Revision: to.rev, Members: to.Nodes(), Snapshot: to}
	for i, m := range to.v.members {
		j, ok := from.byID[m.ID]
		switch {
		case !ok:
			c.Joined = append(c.Joined, m.clone())
		case from.creates[j] != to.v.creates[i]:
			c.Left = append(c.Left, from.members[j].clone())
			c.Joined = append(c.Joined, m.clone())
		case !from.members[j].equal(m):
			c.Updated = append(c.Updated, m.clone())
		}
	}
	for _, m := range from.members {
		if _, ok := to.v.byID[m.ID]; !ok {
			c.Left = append(c.Left, m.clone())
		}
	}
	slices.SortFunc(c.Left, func(a, b Member) int { return cmp.Compare(a.ID, b.ID) })
	return c
}
