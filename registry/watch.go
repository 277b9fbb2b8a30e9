package registry

import (
	"context"
	"fmt"
	"strings"
	"sync"
)

// EventType says what happened to a name.
type EventType int

const (
	// Put: the name was registered or its entry updated.
	Put EventType = iota + 1
	// Delete: the name was released, its lease ended, or this node lost
	// the epoch it was registered under.
	Delete
)

// String returns "put" or "delete".
func (t EventType) String() string {
	switch t {
	case Put:
		return "put"
	case Delete:
		return "delete"
	}
	return fmt.Sprintf("EventType(%d)", int(t))
}

// Event is one change to a name as seen by this registry's cache.
type Event struct {
	// Type is Put or Delete.
	Type EventType
	// Name is the name that changed.
	Name string
	// Entry is the new entry on Put and the last known one on Delete.
	Entry Entry
	// Revision is the etcd revision of the change. For names this node
	// drops on losing an epoch, it is the cache revision at the drop.
	Revision int64
}

// subscriber is one Watch: an unbounded queue drained into its channel by
// a goroutine the registry owns.
type subscriber struct {
	match  func(name string) bool
	ch     chan Event
	mu     sync.Mutex
	queue  []Event
	notify chan struct{}
}

// Watch returns a channel of the changes to name: first a Put with the
// current entry if the name is registered, then every change in the order
// the cache applies them. WatchPrefix does the same for every name
// starting with a prefix. The channel is closed when ctx ends or the
// registry is closed. Events are queued without bound for a slow reader;
// stop reading only by ending ctx. Watch fails with ErrInvalidName and
// ErrClosed.
func (r *Registry) Watch(ctx context.Context, name string) (<-chan Event, error) {
	if err := validateName(name); err != nil {
		return nil, fmt.Errorf("registry: watch: %w", err)
	}
	return r.subscribe(ctx, func(n string) bool { return n == name })
}

// WatchPrefix is Watch for every name that starts with prefix ("" for all
// names).
func (r *Registry) WatchPrefix(ctx context.Context, prefix string) (<-chan Event, error) {
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("registry: watch: %w", err)
	}
	return r.subscribe(ctx, func(n string) bool { return strings.HasPrefix(n, prefix) })
}

func (r *Registry) subscribe(ctx context.Context, match func(string) bool) (<-chan Event, error) {
	s := &subscriber{match: match, ch: make(chan Event), notify: make(chan struct{}, 1)}
	r.mu.Lock()
	if r.closed.Load() {
		r.mu.Unlock()
		return nil, ErrClosed
	}
	for name, ent := range r.entries {
		if match(name) {
			s.queue = append(s.queue, Event{Type: Put, Name: name, Entry: ent, Revision: ent.Revision})
		}
	}
	if len(s.queue) > 0 {
		s.notify <- struct{}{}
	}
	r.subs[s] = struct{}{}
	r.wg.Add(1)
	r.mu.Unlock()
	go r.serve(ctx, s)
	return s.ch, nil
}

// publish queues ev for every matching subscriber; r.mu must be held so
// every subscriber sees events in cache order.
func (r *Registry) publish(ev Event) {
	for s := range r.subs {
		if !s.match(ev.Name) {
			continue
		}
		s.mu.Lock()
		s.queue = append(s.queue, ev)
		s.mu.Unlock()
		select {
		case s.notify <- struct{}{}:
		default:
		}
	}
}

// serve delivers s's queue to its channel until ctx ends or the registry
// closes.
func (r *Registry) serve(ctx context.Context, s *subscriber) {
	defer r.wg.Done()
	defer close(s.ch)
	defer func() {
		r.mu.Lock()
		delete(r.subs, s)
		r.mu.Unlock()
	}()
	for {
		select {
		case <-s.notify:
		case <-ctx.Done():
			return
		case <-r.ctx.Done():
			return
		}
		for {
			s.mu.Lock()
			if len(s.queue) == 0 {
				s.queue = nil
				s.mu.Unlock()
				break
			}
			ev := s.queue[0]
			s.queue = s.queue[1:]
			s.mu.Unlock()
			select {
			case s.ch <- ev:
			case <-ctx.Done():
				return
			case <-r.ctx.Done():
				return
			}
		}
	}
}
