package actor

import (
	"context"
	"fmt"
	"slices"
	"sync"
	"sync/atomic"
)

// MonitorRef identifies one monitor, for Demonitor.
type MonitorRef struct {
	id     uint64
	target Ref
}

// Target returns the monitored actor.
func (m MonitorRef) Target() Ref { return m.target }

// Down tells a monitor that the actor it watched has exited, and why. A
// monitor set on an actor that does not exist gets Down with a reason
// wrapping ErrNotFound.
type Down struct {
	Monitor MonitorRef
	Ref     Ref
	Reason  error
}

var monitorIDs atomic.Uint64

// monitorEntry is one monitor set on a process. An actor has few monitors,
// so a slice in the order they were set beats a map.
type monitorEntry struct {
	id uint64
	w  watcher
}

// watcher is one monitor's destination: an actor's mailbox, or a function
// that must not block.
type watcher struct {
	proc *process
	fn   func(Down)
}

func (w watcher) deliver(d Down) {
	if w.proc != nil {
		_ = w.proc.push(context.Background(), envelope{msg: d, tag: uint64(kindInfo)}, true)
		return
	}
	w.fn(d)
}

// monitor registers w to be told once when target exits (at once if it is
// not alive).
func (s *System) monitor(target Ref, w watcher) MonitorRef {
	m := MonitorRef{id: monitorIDs.Add(1), target: target}
	p, err := s.local(target)
	if err != nil {
		if r := s.remoteFor(target); r != nil && !target.IsZero() {
			var once sync.Once
			var fired atomic.Bool
			cancel := r.Monitor(target, func(reason error) {
				once.Do(func() {
					fired.Store(true)
					s.remoteMons.Delete(m.id)
					w.deliver(Down{Monitor: m, Ref: target, Reason: reason})
				})
			})
			s.remoteMons.Store(m.id, cancel)
			if fired.Load() {
				s.remoteMons.Delete(m.id)
			}
			return m
		}
	}
	if err == nil {
		p.mu.Lock()
		if !p.dead {
			p.monitors = append(p.monitors, monitorEntry{id: m.id, w: w})
			p.mu.Unlock()
			return m
		}
		p.mu.Unlock()
		w.deliver(Down{Monitor: m, Ref: target, Reason: p.reason})
		return m
	}
	w.deliver(Down{Monitor: m, Ref: target, Reason: fmt.Errorf("%w: %v", ErrNotFound, target)})
	return m
}

// Monitor watches target from outside any actor: the returned channel
// receives exactly one Down when target exits, at once if it is not alive,
// unless Demonitor is called first.
func (s *System) Monitor(target Ref) (MonitorRef, <-chan Down) {
	ch := make(chan Down, 1)
	m := s.monitor(target, watcher{fn: func(d Down) { ch <- d }})
	return m, ch
}

// Demonitor removes a monitor. After it returns, no Down for it is
// delivered, except one already delivered or queued.
func (s *System) Demonitor(m MonitorRef) {
	if c, ok := s.remoteMons.LoadAndDelete(m.id); ok {
		c.(func())()
		return
	}
	p, err := s.local(m.target)
	if err != nil {
		return
	}
	p.mu.Lock()
	p.monitors = slices.DeleteFunc(p.monitors, func(e monitorEntry) bool { return e.id == m.id })
	p.mu.Unlock()
}
