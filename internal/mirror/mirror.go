// Package mirror keeps an in-memory copy of an etcd prefix, fed by a watch:
// it reads the prefix, watches from the read's revision + 1 with
// WithRequireLeader, resumes from the last revision + 1 when the watch
// breaks, and when that revision has been compacted reads the prefix again
// and resumes after the read. No change is missed.
package mirror

import (
	"context"
	"errors"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// ErrClosed is returned once the mirror has stopped.
var ErrClosed = errors.New("mirror: closed")

// Update tells the owner what changed: the keys put or deleted since the
// last update, at Revision. Reset is true when the whole prefix was read
// again (at start and after a compaction); then Keys lists every key that
// exists or existed. Deleted[i], when Deleted is not nil, tells whether
// Keys[i] was deleted (its last change, if it changed more than once in
// the update); after a Reset it is nil.
type Update struct {
	Revision int64
	Keys     []string
	Deleted  []bool
	Reset    bool
}

// Mirror is the copy of one prefix. Its methods are safe for concurrent
// use.
type Mirror struct {
	client *clientv3.Client
	prefix string
	log    *zap.Logger
	notify func(Update)

	mu      sync.RWMutex
	kvs     map[string]Entry
	decode  func(key string, value []byte) any
	rev     int64
	changed chan struct{}

	cancel context.CancelFunc
	done   chan struct{}
}

// Entry is what the mirror holds of a key.
type Entry struct {
	// Decoded is the value as the decoder returned it (see StartDecoded).
	Decoded any
	// Value is the raw value: without a decoder, of every key; with one,
	// of the keys it returns nil for (the others keep only Decoded).
	Value []byte
	// Lease is the lease the key is bound to (0: none).
	Lease int64
	// ModRevision is the revision of the key's last change.
	ModRevision int64
}

// Start reads prefix and keeps the mirror current until ctx ends or Close
// is called. notify, if not nil, is called from the mirror's goroutine after
// each change is applied; it must not block for long. Start fails if the
// first read fails.
func Start(ctx context.Context, client *clientv3.Client, prefix string, log *zap.Logger, notify func(Update)) (*Mirror, error) {
	return StartDecoded(ctx, client, prefix, log, notify, nil)
}

// StartDecoded is Start with a decoder: every value is decoded once, when
// it arrives, and held in that form alone (unless decode returns nil), so
// readers that look at the same keys often do not decode them again and
// the mirror holds one copy of each value.
func StartDecoded(ctx context.Context, client *clientv3.Client, prefix string, log *zap.Logger, notify func(Update),
	decode func(key string, value []byte) any) (*Mirror, error) {
	if log == nil {
		log = zap.NewNop()
	}
	ctx, cancel := context.WithCancel(ctx)
	m := &Mirror{client: client, prefix: prefix, log: log, notify: notify, decode: decode, changed: make(chan struct{}),
		cancel: cancel, done: make(chan struct{})}
	if err := m.read(ctx); err != nil {
		cancel()
		close(m.done)
		return nil, err
	}
	go m.run(ctx)
	return m, nil
}

func (m *Mirror) read(ctx context.Context) error {
	resp, err := m.client.Get(ctx, m.prefix, clientv3.WithPrefix())
	if err != nil {
		return err
	}
	kvs := make(map[string]Entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		kvs[key] = m.entry(key, kv)
	}
	m.mu.Lock()
	keys := make([]string, 0, len(kvs)+len(m.kvs))
	for k := range m.kvs {
		if _, ok := kvs[k]; !ok {
			keys = append(keys, k)
		}
	}
	for k := range kvs {
		keys = append(keys, k)
	}
	m.kvs, m.rev = kvs, resp.Header.Revision
	m.broadcast()
	m.mu.Unlock()
	if m.notify != nil {
		m.notify(Update{Revision: resp.Header.Revision, Keys: keys, Reset: true})
	}
	return nil
}

// broadcast wakes waiters; m.mu must be held.
func (m *Mirror) broadcast() {
	close(m.changed)
	m.changed = make(chan struct{})
}

func (m *Mirror) run(ctx context.Context) {
	defer close(m.done)
	backoff := 50 * time.Millisecond
	for ctx.Err() == nil {
		m.mu.RLock()
		from := m.rev + 1
		m.mu.RUnlock()
		wctx, wcancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
		wch := m.client.Watch(wctx, m.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
		compacted := false
		for resp := range wch {
			if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
				compacted = true
				break
			}
			if err := resp.Err(); err != nil {
				m.log.Warn("watch broke; resuming", zap.String("prefix", m.prefix), zap.Error(err))
				break
			}
			m.apply(resp)
			backoff = 50 * time.Millisecond
		}
		wcancel()
		if ctx.Err() != nil {
			return
		}
		if compacted {
			if err := m.read(ctx); err != nil {
				m.log.Warn("re-read after compaction failed", zap.Error(err))
			}
			continue
		}
		select {
		case <-time.After(backoff):
		case <-ctx.Done():
			return
		}
		backoff = min(2*backoff, 2*time.Second)
	}
}

func (m *Mirror) apply(resp clientv3.WatchResponse) {
	if len(resp.Events) == 0 {
		if resp.Header.Revision > 0 {
			m.mu.Lock()
			if resp.Header.Revision > m.rev && resp.IsProgressNotify() {
				m.rev = resp.Header.Revision
				m.broadcast()
			}
			m.mu.Unlock()
		}
		return
	}
	// Decode before taking the lock, so readers are not held up by it.
	keys := make([]string, len(resp.Events))
	deleted := make([]bool, len(resp.Events))
	entries := make([]Entry, len(resp.Events))
	for i, ev := range resp.Events {
		keys[i] = string(ev.Kv.Key)
		deleted[i] = ev.Type == clientv3.EventTypeDelete
		if !deleted[i] {
			entries[i] = m.entry(keys[i], ev.Kv)
		}
	}
	m.mu.Lock()
	for i := range resp.Events {
		if deleted[i] {
			delete(m.kvs, keys[i])
		} else {
			m.kvs[keys[i]] = entries[i]
		}
	}
	// A watch catching up a backlog gets it in batches whose header holds
	// the store's current revision, not that of the batch's last event:
	// the mirror is current only up to the last event applied, and a watch
	// that breaks now must resume right after it.
	rev := resp.Events[len(resp.Events)-1].Kv.ModRevision
	m.rev = max(m.rev, rev)
	m.broadcast()
	m.mu.Unlock()
	if m.notify != nil {
		m.notify(Update{Revision: rev, Keys: keys, Deleted: deleted})
	}
}

// entry decodes kv's value if the mirror decodes.
func (m *Mirror) entry(key string, kv *mvccpb.KeyValue) Entry {
	e := Entry{Lease: kv.Lease, ModRevision: kv.ModRevision}
	if m.decode != nil {
		e.Decoded = m.decode(key, kv.Value)
	}
	if e.Decoded == nil {
		e.Value = kv.Value
	}
	return e
}

// Get returns what the mirror holds of key.
func (m *Mirror) Get(key string) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.kvs[key]
	return e, ok
}

// Lookup is Get for a key held in a byte slice, which it does not retain:
// a caller can build keys in a reused buffer.
func (m *Mirror) Lookup(key []byte) (Entry, bool) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	e, ok := m.kvs[string(key)]
	return e, ok
}

// Revision returns the etcd revision the mirror reflects.
func (m *Mirror) Revision() int64 {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.rev
}

// Changed returns a channel closed at the next change of the mirror.
func (m *Mirror) Changed() <-chan struct{} {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return m.changed
}

// Range calls fn for every key under sub (a prefix within the mirrored
// prefix), in no particular order, under the read lock: fn must not call
// back into the mirror.
func (m *Mirror) Range(sub string, fn func(key string, e Entry)) {
	m.mu.RLock()
	defer m.mu.RUnlock()
	for k, e := range m.kvs {
		if len(k) >= len(sub) && k[:len(sub)] == sub {
			fn(k, e)
		}
	}
}

// Len returns how many keys the mirror holds.
func (m *Mirror) Len() int {
	m.mu.RLock()
	defer m.mu.RUnlock()
	return len(m.kvs)
}

// WaitRevision returns once the mirror reflects revision rev, or when ctx
// ends.
func (m *Mirror) WaitRevision(ctx context.Context, rev int64) error {
	for {
		m.mu.RLock()
		ok, ch := m.rev >= rev, m.changed
		m.mu.RUnlock()
		if ok {
			return nil
		}
		select {
		case <-ch:
		case <-m.done:
			return ErrClosed
		case <-ctx.Done():
			return ctx.Err()
		}
	}
}

// Close stops the watch and waits for the mirror's goroutine.
func (m *Mirror) Close() {
	m.cancel()
	<-m.done
}
