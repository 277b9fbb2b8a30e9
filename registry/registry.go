// Package registry is the cluster-wide name registry on etcd.
//
// A name is the key <prefix>/names/<name>, bound to the lease of the epoch
// that registered it; its value is the JSON record {ref, value}. The first
// writer wins: Register is a transaction that puts the key only if it does
// not exist. Names of a node disappear with its lease, so a dead node's
// names go away when etcd expires its lease, and a node that loses its
// lease epoch drops its own names from its view at once. With
// Config.Actors, a name of one of the node's own actors goes when the
// actor exits, and is registered again under the next epoch if the actor
// still runs and no one took the name meanwhile; other names are the
// caller's to register again (see lease.Session.Next).
//
// Lookups are served from a local cache of the whole names prefix, fed by
// a watch; a miss falls back to a linearizable read. The cache is as fresh
// as the watch: a name registered elsewhere a moment ago may be missed
// (and then read), a name released elsewhere a moment ago may still be
// found. A registry reads its own writes: after Register or Unregister
// returns, Lookup on the same registry sees the change.
package registry

import (
	"context"
	"fmt"
	"sort"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
)

// keptLostLeases bounds how many lost epochs' leases are remembered to
// hide their names until etcd deletes them.
const keptLostLeases = 64

// Registry is one node's handle on the cluster-wide name registry. Build
// it with New and stop it with Close. It is safe for concurrent use.
type Registry struct {
	client    *clientv3.Client
	session   *lease.Session
	cfg       Config
	log       *zap.Logger
	keyPrefix string

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup
	closed atomic.Bool

	// writeRev is the highest revision of a write made through this
	// registry; the cache answers only once it has caught up with it.
	writeRev atomic.Int64

	mu         sync.RWMutex
	entries    map[string]Entry
	rev        int64
	revChanged chan struct{} // closed and replaced when rev advances
	lost       map[clientv3.LeaseID]struct{}
	lostOrder  []clientv3.LeaseID
	subs       map[*subscriber]struct{}

	bmu   sync.Mutex
	bound map[string]*binding // names registered for actors of Config.Actors
}

var _ actor.Resolver = (*Registry)(nil)

// New reads the names prefix into the cache and starts the watch that
// keeps it current. session is the node's lease session that names are
// bound to; with a nil session the registry is read-only (Register,
// Update and Unregister fail with ErrNoSession). New returns an error when
// ctx ends before the first read or the read fails; the client and the
// session must stay open until Close returns.
func New(ctx context.Context, client *clientv3.Client, session *lease.Session, cfg Config) (*Registry, error) {
	cfg, err := cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	r := &Registry{
		client:     client,
		session:    session,
		cfg:        cfg,
		log:        cfg.Logger,
		keyPrefix:  cfg.Prefix + "/names/",
		entries:    make(map[string]Entry),
		revChanged: make(chan struct{}),
		lost:       make(map[clientv3.LeaseID]struct{}),
		subs:       make(map[*subscriber]struct{}),
		bound:      make(map[string]*binding),
	}
	rev, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	r.ctx, r.cancel = context.WithCancel(context.Background())
	r.wg.Add(1)
	go r.watchLoop(rev)
	if session != nil {
		r.wg.Add(1)
		go r.epochLoop()
	}
	return r, nil
}

// Close stops the watch and every Watch subscription (their channels
// close) and waits for them. Names stay registered: they belong to the
// lease, not to the registry. After Close, every method fails with
// ErrClosed. Close is idempotent.
func (r *Registry) Close() error {
	r.mu.Lock()
	r.closed.Store(true)
	r.mu.Unlock()
	r.cancel()
	r.wg.Wait()
	return nil
}

func (r *Registry) key(name string) string { return r.keyPrefix + name }

func (r *Registry) checkOpen() error {
	if r.closed.Load() {
		return ErrClosed
	}
	return nil
}

// Register binds name to ref and value under the node's current lease
// epoch, if no one holds the name. It waits for a live epoch when the
// session is re-joining. On a taken name it returns an
// *actor.AlreadyRegisteredError carrying the owner (errors.Is
// ErrAlreadyRegistered). It fails with ErrInvalidName, actor.ErrInvalidRef
// (zero ref), ErrValueTooLarge, ErrNoSession or ErrClosed before touching
// etcd, and with an error wrapping lease.ErrEpochLost when the epoch was
// lost while the transaction ran (the name is then released again, best
// effort). When ctx ends the call returns ctx's error and the name may or
// may not have been taken; Lookup tells.
//
// With Config.Actors, a ref of that system must be alive (else an error
// wrapping actor.ErrNotFound), the name is released when that actor exits,
// and a name this node holds for one of its actors that exited is taken
// over rather than refused.
func (r *Registry) Register(ctx context.Context, name string, ref actor.Ref, value []byte) error {
	if err := r.checkWrite(name, ref, value); err != nil {
		return fmt.Errorf("registry: register %q: %w", name, err)
	}
	if err := r.checkAlive(ref); err != nil {
		return fmt.Errorf("registry: register %q: %w", name, err)
	}
	e, err := r.session.Wait(ctx)
	if err != nil {
		return fmt.Errorf("registry: register %q: waiting for a lease epoch: %w", name, err)
	}
	data, err := encode(ref, value)
	if err != nil {
		return err
	}
	key := r.key(name)
	resp, err := r.take(ctx, name, key, data, e.ID())
	if err != nil {
		return err
	}
	r.noteWrite(resp.Header.Revision)
	if lerr := e.Err(); lerr != nil {
		r.releaseLost(ctx, key, e.ID())
		return fmt.Errorf("registry: register %q: %w: %w", name, lease.ErrEpochLost, lerr)
	}
	r.bind(name, ref, data, e.ID())
	return nil
}

// take writes data under key, bound to lease, if no one holds the name, or
// if this node holds it under lease for one of its actors that exited (its
// release is under way: the name is taken over). A name that changed
// between the two looks is looked at again, once.
func (r *Registry) take(ctx context.Context, name, key, data string, lease clientv3.LeaseID) (*clientv3.TxnResponse, error) {
	for attempt := 0; ; attempt++ {
		resp, err := r.client.Txn(ctx).
			If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
			Then(clientv3.OpPut(key, data, clientv3.WithLease(lease))).
			Else(clientv3.OpGet(key)).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("registry: register %q: %w", name, err)
		}
		if resp.Succeeded {
			return resp, nil
		}
		held := resp.Responses[0].GetResponseRange().Kvs[0]
		owner, err := decode(name, held)
		if err != nil {
			return nil, fmt.Errorf("registry: register %q: taken by an unreadable record: %w", name, err)
		}
		if attempt > 0 || owner.Lease != lease || !r.local(owner.Ref) || r.cfg.Actors.Alive(owner.Ref) {
			return nil, &actor.AlreadyRegisteredError{Name: name, Owner: owner.Ref}
		}
		resp, err = r.client.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "=", string(held.Value)),
				clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
			Then(clientv3.OpPut(key, data, clientv3.WithLease(lease))).
			Commit()
		if err != nil {
			return nil, fmt.Errorf("registry: register %q: %w", name, err)
		}
		if resp.Succeeded {
			return resp, nil
		}
	}
}

// Update replaces the ref and value of a name this node holds under its
// current epoch, keeping the name's lease and create revision. It fails
// with an error wrapping ErrNotFound when the name is not registered,
// ErrNotOwner (naming the owner) when another lease holds it, and
// lease.ErrEpochLost when the current epoch is lost. On ctx's end it
// returns ctx's error and the update may or may not have happened. With
// Config.Actors, a ref of that system must be alive, and the name is then
// bound to it as Register binds it.
func (r *Registry) Update(ctx context.Context, name string, ref actor.Ref, value []byte) error {
	if err := r.checkWrite(name, ref, value); err != nil {
		return fmt.Errorf("registry: update %q: %w", name, err)
	}
	if err := r.checkAlive(ref); err != nil {
		return fmt.Errorf("registry: update %q: %w", name, err)
	}
	e := r.session.Current()
	if err := e.Err(); err != nil {
		return fmt.Errorf("registry: update %q: %w: %w", name, lease.ErrEpochLost, err)
	}
	data, err := encode(ref, value)
	if err != nil {
		return err
	}
	key := r.key(name)
	resp, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", e.ID())).
		Then(clientv3.OpPut(key, data, clientv3.WithLease(e.ID()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: update %q: %w", name, err)
	}
	if !resp.Succeeded {
		return r.notMine("update", name, resp)
	}
	r.noteWrite(resp.Header.Revision)
	r.bind(name, ref, data, e.ID())
	return nil
}

// Unregister releases a name this node holds under its current epoch. It
// fails with an error wrapping ErrNotFound when the name is not registered
// (names of a lost epoch count as not registered) and ErrNotOwner (naming
// the owner) when another lease holds it. On ctx's end it returns ctx's
// error and the name may or may not have been released.
func (r *Registry) Unregister(ctx context.Context, name string) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	if err := validateName(name); err != nil {
		return fmt.Errorf("registry: unregister: %w", err)
	}
	if r.session == nil {
		return fmt.Errorf("registry: unregister %q: %w", name, ErrNoSession)
	}
	e := r.session.Current()
	key := r.key(name)
	resp, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", e.ID())).
		Then(clientv3.OpDelete(key)).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return fmt.Errorf("registry: unregister %q: %w", name, err)
	}
	if !resp.Succeeded {
		return r.notMine("unregister", name, resp)
	}
	r.noteWrite(resp.Header.Revision)
	r.unbind(name)
	return nil
}

// notMine builds the error of an owner-guarded transaction that failed.
func (r *Registry) notMine(op, name string, resp *clientv3.TxnResponse) error {
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 || r.isLost(clientv3.LeaseID(kvs[0].Lease)) {
		return fmt.Errorf("registry: %s %q: %w", op, name, ErrNotFound)
	}
	owner, err := decode(name, kvs[0])
	if err != nil {
		return fmt.Errorf("registry: %s %q: %w: %w", op, name, ErrNotOwner, err)
	}
	return fmt.Errorf("registry: %s %q: held by %v under lease %x: %w", op, name, owner.Ref, int64(owner.Lease), ErrNotOwner)
}

func (r *Registry) checkWrite(name string, ref actor.Ref, value []byte) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	if err := validateName(name); err != nil {
		return err
	}
	if ref.IsZero() {
		return actor.ErrInvalidRef
	}
	if len(value) > r.cfg.MaxValueSize {
		return fmt.Errorf("%w: %d bytes, limit is %d", ErrValueTooLarge, len(value), r.cfg.MaxValueSize)
	}
	if r.session == nil {
		return ErrNoSession
	}
	return nil
}

// releaseLost deletes key if it is still bound to the lost lease id.
func (r *Registry) releaseLost(ctx context.Context, key string, id clientv3.LeaseID) {
	_, err := r.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", id)).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		r.log.Debug("releasing a name of a lost epoch failed; it goes with the lease", zap.String("key", key), zap.Error(err))
	}
}

func (r *Registry) noteWrite(rev int64) {
	for {
		cur := r.writeRev.Load()
		if rev <= cur || r.writeRev.CompareAndSwap(cur, rev) {
			return
		}
	}
}

// Lookup returns the entry registered under name: from the cache when it
// holds the name, else from a linearizable read. It fails with an error
// wrapping ErrNotFound when no one holds the name, ErrInvalidName, or the
// read's error (ctx's error when ctx ends).
func (r *Registry) Lookup(ctx context.Context, name string) (Entry, error) {
	if err := r.checkOpen(); err != nil {
		return Entry{}, err
	}
	if err := validateName(name); err != nil {
		return Entry{}, fmt.Errorf("registry: lookup: %w", err)
	}
	r.mu.RLock()
	if r.rev >= r.writeRev.Load() {
		if ent, ok := r.entries[name]; ok {
			r.mu.RUnlock()
			return ent, nil
		}
	}
	r.mu.RUnlock()
	resp, err := r.client.Get(ctx, r.key(name))
	if err != nil {
		return Entry{}, fmt.Errorf("registry: lookup %q: %w", name, err)
	}
	if len(resp.Kvs) == 0 || r.isLost(clientv3.LeaseID(resp.Kvs[0].Lease)) {
		return Entry{}, fmt.Errorf("registry: lookup %q: %w", name, ErrNotFound)
	}
	return decode(name, resp.Kvs[0])
}

// Whereis returns the Ref registered under name, as Lookup does.
func (r *Registry) Whereis(ctx context.Context, name string) (actor.Ref, error) {
	ent, err := r.Lookup(ctx, name)
	return ent.Ref, err
}

// Resolve implements actor.Resolver with Whereis: a name not registered
// fails with an error wrapping actor.ErrNotFound.
func (r *Registry) Resolve(ctx context.Context, name string) (actor.Ref, error) {
	return r.Whereis(ctx, name)
}

// List returns the entries whose names start with prefix (all of them for
// ""), sorted by name, from the cache, or from a linearizable read while
// the cache has not yet caught up with this registry's own writes. It
// fails with ErrInvalidName for a prefix no name can start with, and with
// the read's error.
func (r *Registry) List(ctx context.Context, prefix string) ([]Entry, error) {
	if err := r.checkOpen(); err != nil {
		return nil, err
	}
	if err := validatePrefix(prefix); err != nil {
		return nil, fmt.Errorf("registry: list: %w", err)
	}
	r.mu.RLock()
	if r.rev >= r.writeRev.Load() {
		out := make([]Entry, 0, len(r.entries))
		for name, ent := range r.entries {
			if strings.HasPrefix(name, prefix) {
				out = append(out, ent)
			}
		}
		r.mu.RUnlock()
		sort.Slice(out, func(i, j int) bool { return out[i].Name < out[j].Name })
		return out, nil
	}
	r.mu.RUnlock()
	resp, err := r.client.Get(ctx, r.key(prefix), clientv3.WithPrefix(), clientv3.WithSort(clientv3.SortByKey, clientv3.SortAscend))
	if err != nil {
		return nil, fmt.Errorf("registry: list %q: %w", prefix, err)
	}
	out := make([]Entry, 0, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if r.isLost(clientv3.LeaseID(kv.Lease)) {
			continue
		}
		ent, err := decode(strings.TrimPrefix(string(kv.Key), r.keyPrefix), kv)
		if err != nil {
			r.log.Warn("skipping unreadable name", zap.Error(err))
			continue
		}
		out = append(out, ent)
	}
	return out, nil
}

// Count returns how many names start with prefix, as List would.
func (r *Registry) Count(ctx context.Context, prefix string) (int, error) {
	if err := r.checkOpen(); err != nil {
		return 0, err
	}
	if err := validatePrefix(prefix); err != nil {
		return 0, fmt.Errorf("registry: count: %w", err)
	}
	r.mu.RLock()
	if r.rev >= r.writeRev.Load() {
		n := 0
		if prefix == "" {
			n = len(r.entries)
		} else {
			for name := range r.entries {
				if strings.HasPrefix(name, prefix) {
					n++
				}
			}
		}
		r.mu.RUnlock()
		return n, nil
	}
	r.mu.RUnlock()
	l, err := r.List(ctx, prefix)
	return len(l), err
}

// Revision is the etcd revision the cache has caught up with.
func (r *Registry) Revision() int64 {
	r.mu.RLock()
	defer r.mu.RUnlock()
	return r.rev
}

// Sync waits until the cache reflects every change committed in etcd
// before the call, so lookups that follow see writes made elsewhere
// before Sync. It returns ctx's error when ctx ends first, and ErrClosed
// when the registry is closed.
func (r *Registry) Sync(ctx context.Context) error {
	if err := r.checkOpen(); err != nil {
		return err
	}
	resp, err := r.client.Get(ctx, r.keyPrefix, clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("registry: sync: %w", err)
	}
	target := resp.Header.Revision
	wctx := clientv3.WithRequireLeader(ctx)
	for {
		r.mu.RLock()
		rev, ch := r.rev, r.revChanged
		r.mu.RUnlock()
		if rev >= target {
			return nil
		}
		// No events may be due on the names prefix; a progress report
		// moves the cache revision up to the store's.
		if err := r.client.RequestProgress(wctx); err != nil && ctx.Err() == nil {
			r.log.Debug("progress request failed", zap.Error(err))
		}
		t := time.NewTimer(syncRetry)
		select {
		case <-ch:
		case <-t.C:
		case <-ctx.Done():
			t.Stop()
			return ctx.Err()
		case <-r.ctx.Done():
			t.Stop()
			return ErrClosed
		}
		t.Stop()
	}
}

// syncRetry is how long Sync waits for a progress report before asking
// again: etcd answers a progress request only while every watcher on the
// stream is caught up.
const syncRetry = 100 * time.Millisecond

func (r *Registry) isLost(id clientv3.LeaseID) bool {
	if id == clientv3.NoLease {
		return false
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	_, ok := r.lost[id]
	return ok
}
