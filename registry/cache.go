package registry

import (
	"context"
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

const (
	minBackoff = 50 * time.Millisecond
	maxBackoff = 2 * time.Second
)

// load reads the whole names prefix, replaces the cache with it, publishes
// the difference to subscribers and returns the read's revision.
func (r *Registry) load(ctx context.Context) (int64, error) {
	resp, err := r.client.Get(ctx, r.keyPrefix, clientv3.WithPrefix())
	if err != nil {
		return 0, fmt.Errorf("registry: read %q: %w", r.keyPrefix, err)
	}
	rev := resp.Header.Revision
	r.mu.Lock()
	defer r.mu.Unlock()
	fresh := make(map[string]Entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if _, lost := r.lost[clientv3.LeaseID(kv.Lease)]; lost {
			continue
		}
		name := strings.TrimPrefix(string(kv.Key), r.keyPrefix)
		ent, err := decode(name, kv)
		if err != nil {
			r.log.Warn("skipping unreadable name", zap.Error(err))
			continue
		}
		fresh[name] = ent
		if old, ok := r.entries[name]; !ok || old.Revision != ent.Revision {
			r.publish(Event{Type: Put, Name: name, Entry: ent, Revision: ent.Revision})
		}
	}
	for name, old := range r.entries {
		if _, ok := fresh[name]; !ok {
			r.publish(Event{Type: Delete, Name: name, Entry: old, Revision: rev})
		}
	}
	r.entries = fresh
	r.advance(rev)
	return rev, nil
}

// watchLoop keeps the cache current from revision rev on: it watches from
// the last applied revision + 1, resumes there when the watch breaks, and
// re-reads the prefix when etcd has compacted past it.
func (r *Registry) watchLoop(rev int64) {
	defer r.wg.Done()
	backoff := minBackoff
	for {
		next, compacted := r.watch(rev)
		if next > rev {
			rev = next
			backoff = minBackoff
		}
		if r.ctx.Err() != nil {
			return
		}
		if compacted {
			r.log.Info("names watch compacted; re-reading", zap.Int64("rev", rev))
			for {
				ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
				read, err := r.load(ctx)
				cancel()
				if err == nil {
					rev = read
					break
				}
				r.log.Warn("re-reading names failed", zap.Error(err))
				if !r.pause(&backoff) {
					return
				}
			}
			backoff = minBackoff
			continue
		}
		if !r.pause(&backoff) {
			return
		}
	}
}

// watch applies events after rev until the watch breaks, and returns the
// last applied revision and whether the watch broke on compaction.
func (r *Registry) watch(rev int64) (int64, bool) {
	ctx, cancel := context.WithCancel(clientv3.WithRequireLeader(r.ctx))
	defer cancel()
	wch := r.client.Watch(ctx, r.keyPrefix, clientv3.WithPrefix(), clientv3.WithRev(rev+1), clientv3.WithProgressNotify())
	for wr := range wch {
		if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
			return rev, true
		}
		if err := wr.Err(); err != nil {
			r.log.Info("names watch broke; resuming", zap.Int64("rev", rev), zap.Error(err))
			return rev, false
		}
		if wr.IsProgressNotify() {
			// Progress reports reach only watchers that have caught up, so
			// every event up to the header's revision has been applied.
			r.mu.Lock()
			r.advance(wr.Header.Revision)
			rev = r.rev
			r.mu.Unlock()
			continue
		}
		rev = r.apply(wr.Events)
	}
	return rev, false
}

// apply applies a batch of watch events and returns the new revision.
func (r *Registry) apply(events []*clientv3.Event) int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, ev := range events {
		name := strings.TrimPrefix(string(ev.Kv.Key), r.keyPrefix)
		switch ev.Type {
		case mvccpb.PUT:
			if _, lost := r.lost[clientv3.LeaseID(ev.Kv.Lease)]; lost {
				break
			}
			ent, err := decode(name, ev.Kv)
			if err != nil {
				r.log.Warn("skipping unreadable name", zap.Error(err))
				if old, ok := r.entries[name]; ok {
					delete(r.entries, name)
					r.publish(Event{Type: Delete, Name: name, Entry: old, Revision: ev.Kv.ModRevision})
				}
				break
			}
			r.entries[name] = ent
			r.publish(Event{Type: Put, Name: name, Entry: ent, Revision: ent.Revision})
		case mvccpb.DELETE:
			if old, ok := r.entries[name]; ok {
				delete(r.entries, name)
				r.publish(Event{Type: Delete, Name: name, Entry: old, Revision: ev.Kv.ModRevision})
			}
		}
		r.advance(ev.Kv.ModRevision)
	}
	return r.rev
}

// advance moves the cache revision forward; r.mu must be held.
func (r *Registry) advance(rev int64) {
	if rev <= r.rev {
		return
	}
	r.rev = rev
	close(r.revChanged)
	r.revChanged = make(chan struct{})
}

// pause waits out the backoff before a retry and grows it; it reports
// false when the registry is closing.
func (r *Registry) pause(backoff *time.Duration) bool {
	d := *backoff/2 + rand.N(*backoff/2+1)
	*backoff = min(2**backoff, maxBackoff)
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// epochLoop drops this node's names from the cache as soon as the epoch
// they were registered under is lost: their keys die with the lease, and
// until etcd deletes them nobody on this node may rely on them. Under the
// next epoch, the names of this node's actors still running are
// registered again (rebind).
func (r *Registry) epochLoop() {
	defer r.wg.Done()
	e := r.session.Current()
	for {
		select {
		case <-e.Lost():
			r.dropLease(e.ID())
		case <-r.ctx.Done():
			return
		}
		next, err := r.session.Next(r.ctx, e)
		if err != nil {
			return
		}
		r.rebind(e.ID(), next)
		e = next
	}
}

// dropLease forgets every cached name bound to id and hides names bound to
// it from later reads until etcd deletes them.
func (r *Registry) dropLease(id clientv3.LeaseID) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if _, ok := r.lost[id]; ok {
		return
	}
	r.lost[id] = struct{}{}
	r.lostOrder = append(r.lostOrder, id)
	if len(r.lostOrder) > keptLostLeases {
		delete(r.lost, r.lostOrder[0])
		r.lostOrder = r.lostOrder[1:]
	}
	n := 0
	for name, ent := range r.entries {
		if ent.Lease == id {
			delete(r.entries, name)
			r.publish(Event{Type: Delete, Name: name, Entry: ent, Revision: r.rev})
			n++
		}
	}
	r.log.Info("lease epoch lost; dropped its names", zap.String("lease", fmt.Sprintf("%x", int64(id))), zap.Int("names", n))
}
