// Package ring keeps the cluster's member set and the consistent-hash ring
// built from it.
//
// A node publishes itself under MemberKey(prefix, id) with the value
// EncodeMember returns, bound to its session lease. Watch reads every member
// key, builds the ring, and follows the changes through an etcd watch, so
// that every node which has seen revision R holds the same member set and
// the same ring, and answers NodeFor identically.
package ring

import (
	"cmp"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// DefaultRetryDelay is the pause before a broken watch is re-established or
// a failed read is retried.
const DefaultRetryDelay = 100 * time.Millisecond

// progressInterval is how often WaitRevision asks etcd for a progress
// notification while it waits, so that a revision that touched no member
// key is still seen.
const progressInterval = 50 * time.Millisecond

// Options configures a Ring. The zero value works.
type Options struct {
	// LocalID is this node's member ID, used by Mine. Empty: Mine is always
	// false.
	LocalID string
	// Points is the number of points each member gets on the default hash
	// ring. Default DefaultPoints. Ignored when Locator is set.
	Points int
	// Locator replaces the hash ring. Default: a hashring.NewWithWeights
	// ring giving every member Points points.
	Locator Locator
	// Logger receives warnings about broken watches and unreadable member
	// records. Default: none.
	Logger *zap.Logger
	// RetryDelay is the pause before re-establishing a broken watch or
	// retrying a failed read. Default DefaultRetryDelay.
	RetryDelay time.Duration
}

// Ring is the member set and hash ring of one cluster, kept current by a
// watch on its member keys. All its methods are safe for concurrent use.
type Ring struct {
	cli    *clientv3.Client
	prefix string // the members prefix
	opts   Options
	log    *zap.Logger

	ctx    context.Context // ends when the ring stops
	cancel context.CancelFunc
	done   chan struct{}

	cur atomic.Pointer[state]

	subMu  sync.Mutex
	subs   map[*subscriber]struct{}
	closed bool
}

// state is one published snapshot with the channel that is closed when a
// newer one replaces it.
type state struct {
	snap *Snapshot
	next chan struct{}
}

var errCompacted = errors.New("watch revision compacted")

// Watch reads the member set of the cluster rooted at prefix and returns a
// Ring that reflects it, then keeps the Ring current from etcd until ctx
// ends or Close is called. It watches from the read's revision + 1 with
// clientv3.WithRequireLeader; a broken watch resumes from the last revision
// seen + 1; when that revision has been compacted, it reads the member set
// again and resumes after the read, so no join or leave is missed. Watch
// returns an error, and starts nothing, if the first read fails or ctx ends
// before it completes.
func Watch(ctx context.Context, cli *clientv3.Client, prefix string, opts Options) (*Ring, error) {
	if cli == nil {
		return nil, ErrNoClient
	}
	if opts.Points <= 0 {
		opts.Points = DefaultPoints
	}
	if opts.RetryDelay <= 0 {
		opts.RetryDelay = DefaultRetryDelay
	}
	if opts.Logger == nil {
		opts.Logger = zap.NewNop()
	}
	r := &Ring{
		cli:    cli,
		prefix: MembersPrefix(prefix),
		opts:   opts,
		log:    opts.Logger.With(zap.String("members", MembersPrefix(prefix))),
		done:   make(chan struct{}),
		subs:   make(map[*subscriber]struct{}),
	}
	snap, err := r.read(ctx)
	if err != nil {
		return nil, err
	}
	r.cur.Store(&state{snap: snap, next: make(chan struct{})})
	r.ctx, r.cancel = context.WithCancel(ctx)
	go r.run(snap.rev + 1)
	return r, nil
}

// Close stops the watch and waits for it to end. Subscriptions are closed
// and blocked WaitRevision calls return ErrClosed. Lookups keep answering
// from the last snapshot. Close is safe to call more than once.
func (r *Ring) Close() {
	r.cancel()
	<-r.done
}

// Done is closed once the ring has stopped following etcd.
func (r *Ring) Done() <-chan struct{} { return r.done }

// Snapshot returns the current member set and ring. It never blocks.
func (r *Ring) Snapshot() *Snapshot { return r.cur.Load().snap }

// Revision returns the etcd revision the ring reflects.
func (r *Ring) Revision() int64 { return r.Snapshot().rev }

// NodeFor returns the ID of the member that owns key in the current ring,
// or false when there are no members.
func (r *Ring) NodeFor(key string) (string, bool) { return r.Snapshot().NodeFor(key) }

// Mine reports whether Options.LocalID owns key in the current ring.
func (r *Ring) Mine(key string) bool { return r.Snapshot().Mine(key) }

// Nodes returns the current members sorted by ID.
func (r *Ring) Nodes() []Member { return r.Snapshot().Nodes() }

// Member returns the current member with the given ID, or false.
func (r *Ring) Member(id string) (Member, bool) { return r.Snapshot().Member(id) }

// NodeForAmong returns the owner of key among the current members that f
// selects, on a ring built from those members alone and cached per f.Key.
func (r *Ring) NodeForAmong(key string, f Filter) (string, bool) {
	return r.Snapshot().NodeForAmong(key, f)
}

// WaitRevision returns nil once the ring reflects revision rev or later,
// even if rev changed no member key. It returns an error wrapping ctx's
// error when ctx ends first, and ErrClosed when the ring stops first.
func (r *Ring) WaitRevision(ctx context.Context, rev int64) error {
	var tick *time.Ticker
	for {
		st := r.cur.Load()
		if st.snap.rev >= rev {
			return nil
		}
		select {
		case <-r.done:
			return ErrClosed
		default:
		}
		if tick == nil {
			tick = time.NewTicker(progressInterval)
			defer tick.Stop()
		}
		r.requestProgress(ctx)
		select {
		case <-st.next:
		case <-tick.C:
		case <-r.done:
			return ErrClosed
		case <-ctx.Done():
			return fmt.Errorf("ring: wait for revision %d (at %d): %w", rev, st.snap.rev, ctx.Err())
		}
	}
}

// requestProgress asks etcd to tell the ring's watch the current revision.
// The answer arrives on the watch only once it has delivered every event up
// to that revision.
func (r *Ring) requestProgress(ctx context.Context) {
	pctx, cancel := context.WithTimeout(clientv3.WithRequireLeader(r.ctx), progressInterval)
	defer cancel()
	stop := context.AfterFunc(ctx, cancel)
	defer stop()
	_ = r.cli.RequestProgress(pctx)
}

func (r *Ring) run(from int64) {
	defer close(r.done)
	defer r.closeSubscribers()
	defer r.cancel()
	for {
		err := r.watch(from)
		if r.ctx.Err() != nil {
			return
		}
		if errors.Is(err, errCompacted) {
			r.log.Warn("member watch compacted; reading the member set again", zap.Int64("from", from))
			snap, err := r.readRetrying()
			if err != nil {
				return
			}
			r.publish(snap)
			from = snap.rev + 1
			continue
		}
		r.log.Warn("member watch broken; resuming", zap.Int64("from", r.Revision()+1), zap.Error(err))
		if !r.pause() {
			return
		}
		from = r.Revision() + 1
	}
}

// pause waits RetryDelay; it reports false if the ring stopped meanwhile.
func (r *Ring) pause() bool {
	t := time.NewTimer(r.opts.RetryDelay)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-r.ctx.Done():
		return false
	}
}

// watch follows the member keys from revision from until the watch breaks.
func (r *Ring) watch(from int64) error {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(r.ctx))
	defer cancel()
	wch := r.cli.Watch(wctx, r.prefix, clientv3.WithPrefix(), clientv3.WithRev(from))
	for resp := range wch {
		if resp.CompactRevision != 0 || errors.Is(resp.Err(), rpctypes.ErrCompacted) {
			return errCompacted
		}
		if err := resp.Err(); err != nil {
			return err
		}
		switch {
		case resp.IsProgressNotify():
			r.advance(resp.Header.Revision)
		case len(resp.Events) > 0:
			r.apply(resp.Events)
		}
	}
	if err := r.ctx.Err(); err != nil {
		return err
	}
	return errors.New("watch channel closed")
}

// readRetrying reads the member set until it succeeds or the ring stops.
func (r *Ring) readRetrying() (*Snapshot, error) {
	for {
		snap, err := r.read(r.ctx)
		if err == nil {
			return snap, nil
		}
		r.log.Warn("reading the member set failed; retrying", zap.Error(err))
		if !r.pause() {
			return nil, r.ctx.Err()
		}
	}
}

// read builds a snapshot from a linearizable read of every member key.
func (r *Ring) read(ctx context.Context) (*Snapshot, error) {
	resp, err := r.cli.Get(ctx, r.prefix, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("ring: read members under %s: %w", r.prefix, err)
	}
	entries := make(map[string]entry, len(resp.Kvs))
	for _, kv := range resp.Kvs {
		if e, ok := r.decode(kv.Key, kv.Value, kv.CreateRevision); ok {
			entries[e.m.ID] = e
		}
	}
	return r.snapshot(resp.Header.Revision, entries), nil
}

type entry struct {
	m      Member
	create int64
}

// decode turns a member key and value into an entry; it reports false for
// keys that are not a member record and logs records it cannot read.
func (r *Ring) decode(key, val []byte, create int64) (entry, bool) {
	id, ok := r.idOf(key)
	if !ok {
		return entry{}, false
	}
	m, err := DecodeMember(val)
	if err == nil && m.ID != id {
		err = fmt.Errorf("%w: record for %q under key of %q", ErrInvalidMember, m.ID, id)
	}
	if err != nil {
		r.log.Warn("ignoring unreadable member record", zap.String("key", string(key)), zap.Error(err))
		return entry{}, false
	}
	return entry{m: m, create: create}, true
}

func (r *Ring) idOf(key []byte) (string, bool) {
	id, ok := strings.CutPrefix(string(key), r.prefix)
	if !ok || checkID(id) != nil {
		return "", false
	}
	return id, true
}

func (r *Ring) snapshot(rev int64, entries map[string]entry) *Snapshot {
	es := make([]entry, 0, len(entries))
	for _, e := range entries {
		es = append(es, e)
	}
	slices.SortFunc(es, func(a, b entry) int { return cmp.Compare(a.m.ID, b.m.ID) })
	members := make([]Member, len(es))
	creates := make([]int64, len(es))
	for i, e := range es {
		members[i], creates[i] = e.m, e.create
	}
	return &Snapshot{rev: rev, localID: r.opts.LocalID, v: newView(members, creates, r.opts.Points, r.opts.Locator)}
}

// apply folds one watch response into the member set. etcd sends all the
// events of a revision in one response, so the result is the member set as
// of the last event's revision.
func (r *Ring) apply(events []*clientv3.Event) {
	old := r.Snapshot()
	entries := make(map[string]entry, old.Len())
	for i, m := range old.v.members {
		entries[m.ID] = entry{m: m, create: old.v.creates[i]}
	}
	rev := old.rev
	for _, ev := range events {
		rev = max(rev, ev.Kv.ModRevision)
		switch ev.Type {
		case mvccpb.PUT:
			if e, ok := r.decode(ev.Kv.Key, ev.Kv.Value, ev.Kv.CreateRevision); ok {
				entries[e.m.ID] = e
			} else if id, ok := r.idOf(ev.Kv.Key); ok {
				delete(entries, id)
			}
		case mvccpb.DELETE:
			if id, ok := r.idOf(ev.Kv.Key); ok {
				delete(entries, id)
			}
		}
	}
	if sameEntries(old.v, entries) {
		r.advance(rev)
		return
	}
	r.publish(r.snapshot(rev, entries))
}

func sameEntries(v *view, entries map[string]entry) bool {
	if len(entries) != len(v.members) {
		return false
	}
	for i, m := range v.members {
		e, ok := entries[m.ID]
		if !ok || e.create != v.creates[i] || !e.m.equal(m) {
			return false
		}
	}
	return true
}

// advance records that nothing changed in the member set up to rev.
func (r *Ring) advance(rev int64) {
	old := r.cur.Load()
	if rev <= old.snap.rev {
		return
	}
	snap := &Snapshot{rev: rev, localID: old.snap.localID, v: old.snap.v}
	r.cur.Store(&state{snap: snap, next: make(chan struct{})})
	close(old.next)
}

// publish makes snap current and tells subscribers when the member set
// changed. Only the watch goroutine calls it.
func (r *Ring) publish(snap *Snapshot) {
	old := r.cur.Load()
	if snap.rev < old.snap.rev {
		return
	}
	if sameView(old.snap.v, snap.v) {
		snap = &Snapshot{rev: snap.rev, localID: snap.localID, v: old.snap.v}
	}
	// Subscribers are offered snap before WaitRevision callers wake, so a
	// caller that waited for a revision finds it in its subscription; and
	// the swap happens under subMu, so a concurrent Subscribe sees either
	// the old snapshot and then this offer, or snap itself.
	r.subMu.Lock()
	r.cur.Store(&state{snap: snap, next: make(chan struct{})})
	if snap.v != old.snap.v {
		r.notifyLocked(snap)
	}
	r.subMu.Unlock()
	close(old.next)
}

func sameView(a, b *view) bool {
	if len(a.members) != len(b.members) {
		return false
	}
	for i := range a.members {
		if a.creates[i] != b.creates[i] || !a.members[i].equal(b.members[i]) {
			return false
		}
	}
	return true
}
