// Package election elects one leader per name among the nodes of a
// cluster, with etcd's concurrency.Election keys and rules, and fencing
// tokens.
//
// A candidate's key lives under <prefix>/election/<name>/ and is bound to
// the lease of the node's current epoch (see package lease). The leader is
// the candidate with the oldest key; its key's create revision is the
// fencing token, which grows with every new leader. A leadership ends, and
// its holder is told through Done, when the node's epoch is lost (before
// etcd can expire the lease, so a new leader cannot start while the old one
// still believes it leads), when the holder resigns, when the node's
// session is closed, and when the leader key is deleted from outside.
package election

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
)

// Config configures an Election. Its zero value is a working default.
type Config struct {
	// Prefix is the etcd key prefix of the cluster; candidates live under
	// Prefix + "/election/" + name + "/". Zero means "/cohort". A trailing
	// '/' is dropped.
	Prefix string
	// Logger receives leadership events. Nil means no logging.
	Logger *zap.Logger
}

// Election is one node's handle on the election of one name. It is safe
// for concurrent use; at most one Campaign or Leadership is active on it
// at a time. Keep one Election per name per node: the candidate key is
// named after the node's lease, so two Elections of one name on one
// session would share it.
type Election struct {
	session *lease.Session
	client  *clientv3.Client
	name    string
	pfx     string // ends in '/'
	log     *zap.Logger

	mu     sync.Mutex
	active bool
}

// Leader describes the current leader of an election.
type Leader struct {
	// Key is the leader's candidate key.
	Key string
	// Value is what the leader campaigned with or last proclaimed.
	Value string
	// Rev is the leader key's create revision: the fencing token.
	Rev int64
	// Lease is the lease the leader key is bound to.
	Lease clientv3.LeaseID
	// Revision is the etcd revision of the leader key's last change.
	Revision int64
}

// New returns the election of name for the node that owns session.
// Campaigns run on the session's current epoch. It fails with
// ErrInvalidName for a name actor.ValidateName rejects or that holds a '/'
// (election prefixes must not nest).
func New(session *lease.Session, name string, cfg Config) (*Election, error) {
	if err := actor.ValidateName(name); err != nil {
		return nil, fmt.Errorf("election: %w", err)
	}
	if strings.IndexByte(name, '/') >= 0 {
		return nil, fmt.Errorf("election: %w: %q holds '/'", ErrInvalidName, name)
	}
	if cfg.Prefix == "" {
		cfg.Prefix = "/cohort"
	}
	if cfg.Logger == nil {
		cfg.Logger = zap.NewNop()
	}
	return &Election{
		session: session,
		client:  session.Client(),
		name:    name,
		pfx:     strings.TrimRight(cfg.Prefix, "/") + "/election/" + name + "/",
		log:     cfg.Logger.With(zap.String("election", name)),
	}, nil
}

// Name is the election's name.
func (el *Election) Name() string { return el.name }

// Campaign puts this node up as a candidate with value and blocks until it
// leads. It runs on the session's current epoch (waiting for one while
// the session re-joins) and returns when that epoch is lost, with an
// error wrapping ErrEpochLost. When ctx ends it withdraws the candidacy
// (bounded by half a second; a key not withdrawn goes with the lease) and
// returns ctx's error. Once its key is the oldest, Campaign checks that
// the epoch is still alive and that the key still exists with the create
// revision it campaigned with and the epoch's lease, because a campaign
// can outlive its own lease (etcd issue 19597); otherwise it fails with
// ErrNotLeader. It fails with ErrBusy while another campaign or
// leadership of this Election is active.
//
// Candidates use concurrency.Election's keys and rules (key prefix + lease
// ID in hex, the oldest key leads), so they interoperate with other
// concurrency.Election users of the same prefix, such as etcdctl elect.
func (el *Election) Campaign(ctx context.Context, value string) (*Leadership, error) {
	el.mu.Lock()
	if el.active {
		el.mu.Unlock()
		return nil, fmt.Errorf("election %q: %w", el.name, ErrBusy)
	}
	el.active = true
	el.mu.Unlock()
	l, err := el.campaign(ctx, value)
	if err != nil {
		el.release()
		return nil, fmt.Errorf("election %q: campaign: %w", el.name, err)
	}
	return l, nil
}

func (el *Election) release() {
	el.mu.Lock()
	el.active = false
	el.mu.Unlock()
}

func (el *Election) campaign(ctx context.Context, value string) (*Leadership, error) {
	e, err := el.session.Wait(ctx)
	if err != nil {
		return nil, err
	}
	cs, err := e.Concurrency()
	if err != nil {
		return nil, err
	}
	cctx, cancel := context.WithCancel(ctx)
	defer cancel()
	stop := context.AfterFunc(e.Context(), cancel)
	defer stop()

	key := fmt.Sprintf("%s%x", el.pfx, int64(e.ID()))
	rev, err := el.enter(cctx, e, key, value)
	if err == nil {
		err = el.waitPredecessors(cctx, rev)
	}
	if err != nil {
		// Also when enter failed: its put may have committed unseen.
		el.withdraw(e, key)
		if lerr := e.Err(); lerr != nil {
			return nil, fmt.Errorf("%w: %w", ErrEpochLost, lerr)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	hdrRev, err := el.confirm(ctx, e, key, rev)
	if err != nil {
		el.withdraw(e, key)
		return nil, err
	}
	lctx, lcancel := context.WithCancel(e.Context())
	l := &Leadership{
		el:          el,
		ce:          concurrency.ResumeElection(cs, strings.TrimSuffix(el.pfx, "/"), key, rev),
		epoch:       e,
		key:         key,
		rev:         rev,
		value:       value,
		ctx:         lctx,
		cancel:      lcancel,
		done:        make(chan struct{}),
		monitorDone: make(chan struct{}),
	}
	go l.monitor(hdrRev)
	el.log.Info("elected", zap.String("key", l.key), zap.Int64("rev", l.rev), zap.Stringer("epoch", e))
	return l, nil
}

// enter puts key, this node's candidate key, bound to the epoch's lease,
// and returns its create revision. A key left by an earlier candidacy on
// the same epoch is taken over with the new value.
func (el *Election) enter(ctx context.Context, e *lease.Epoch, key, value string) (int64, error) {
	resp, err := el.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(e.ID()))).
		Else(clientv3.OpGet(key)).
		Commit()
	if err != nil {
		return 0, err
	}
	if resp.Succeeded {
		return resp.Header.Revision, nil
	}
	kv := resp.Responses[0].GetResponseRange().Kvs[0]
	if string(kv.Value) == value {
		return kv.CreateRevision, nil
	}
	put, err := el.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", kv.CreateRevision)).
		Then(clientv3.OpPut(key, value, clientv3.WithLease(e.ID()))).
		Commit()
	if err != nil {
		return 0, err
	}
	if !put.Succeeded {
		return 0, fmt.Errorf("%w: candidate key %s changed while entering", ErrNotLeader, key)
	}
	return kv.CreateRevision, nil
}

// waitPredecessors blocks until every candidate key created before rev is
// deleted, so the key created at rev is the oldest: the leader. It follows
// concurrency.Election's wait, with one change: the watch is opened, and
// known to be in place, before the read. etcd serves a watch that starts
// at a past revision (which is what concurrency.Election opens, after its
// read) from a loop that runs every 100ms, while a watch from "now" gets
// each event at once; so a standby takes over within milliseconds of a
// resignation however recently it queued.
func (el *Election) waitPredecessors(ctx context.Context, rev int64) error {
	opts := append(clientv3.WithLastCreate(), clientv3.WithMaxCreateRev(rev-1))
	for {
		done, err := el.waitOnce(ctx, opts)
		if done || err != nil {
			return err
		}
	}
}

// waitOnce opens a watch on the prefix, then reads the youngest
// predecessor and waits for the deletes until none is left. It reports
// false with a nil error when the watch broke and the wait must start
// again.
func (el *Election) waitOnce(ctx context.Context, opts []clientv3.OpOption) (bool, error) {
	wctx, cancel := context.WithCancel(ctx)
	defer cancel()
	wch := el.client.Watch(wctx, el.pfx, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr, ok := <-wch; !ok || wr.Err() != nil || !wr.Created {
		if err := ctx.Err(); err != nil {
			return false, err
		}
		if !ok {
			return false, fmt.Errorf("watch on %s closed", el.pfx)
		}
		return false, nil
	}
	for {
		resp, err := el.client.Get(ctx, el.pfx, opts...)
		if err != nil {
			return false, err
		}
		if len(resp.Kvs) == 0 {
			return true, nil
		}
		if ok := waitDelete(wch, string(resp.Kvs[0].Key), resp.Header.Revision); !ok {
			return false, ctx.Err()
		}
	}
}

// waitDelete consumes wch until it reports key deleted after revision
// after; it returns false when the watch breaks.
func waitDelete(wch clientv3.WatchChan, key string, after int64) bool {
	for wr := range wch {
		if wr.Err() != nil {
			return false
		}
		for _, ev := range wr.Events {
			if ev.Type == mvccpb.DELETE && string(ev.Kv.Key) == key && ev.Kv.ModRevision > after {
				return true
			}
		}
	}
	return false
}

// confirm checks, once the candidate key is the oldest, that the epoch is alive
// and that key still exists with create revision rev and the epoch's
// lease. It returns the revision of its read.
func (el *Election) confirm(ctx context.Context, e *lease.Epoch, key string, rev int64) (int64, error) {
	if !e.Alive() {
		if lerr := e.Err(); lerr != nil {
			return 0, fmt.Errorf("%w: %w", ErrEpochLost, lerr)
		}
		return 0, fmt.Errorf("%w: epoch alive-until passed during the campaign", ErrNotLeader)
	}
	resp, err := el.client.Get(ctx, key)
	if err != nil {
		return 0, fmt.Errorf("confirming leadership: %w", err)
	}
	if len(resp.Kvs) == 0 {
		return 0, fmt.Errorf("%w: leader key %s gone when the campaign returned", ErrNotLeader, key)
	}
	kv := resp.Kvs[0]
	if kv.CreateRevision != rev || clientv3.LeaseID(kv.Lease) != e.ID() {
		return 0, fmt.Errorf("%w: leader key %s recreated (create revision %d, want %d)", ErrNotLeader, key, kv.CreateRevision, rev)
	}
	if lerr := e.Err(); lerr != nil {
		return 0, fmt.Errorf("%w: %w", ErrEpochLost, lerr)
	}
	return resp.Header.Revision, nil
}

// withdrawTimeout bounds the clean-up of a failed candidacy, so Campaign
// returns promptly after its context ends even when etcd is unreachable.
const withdrawTimeout = 500 * time.Millisecond

// withdraw deletes key if it is still bound to the epoch's lease (the
// key's name holds the lease ID, so such a key is this candidacy's),
// bounded by the epoch and by withdrawTimeout: a key not deleted goes with
// its lease.
func (el *Election) withdraw(e *lease.Epoch, key string) {
	ctx, cancel := context.WithTimeout(e.Context(), withdrawTimeout)
	defer cancel()
	_, err := el.client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(key), "=", e.ID())).
		Then(clientv3.OpDelete(key)).
		Commit()
	if err != nil {
		el.log.Debug("withdrawing candidacy failed; the key goes with the lease", zap.String("key", key), zap.Error(err))
	}
}

// Leader returns the current leader with a linearizable read. It fails
// with ErrNoLeader when there is none and with the read's error (ctx's
// error when ctx ends).
func (el *Election) Leader(ctx context.Context) (Leader, error) {
	resp, err := el.client.Get(ctx, el.pfx, clientv3.WithFirstCreate()...)
	if err != nil {
		return Leader{}, fmt.Errorf("election %q: leader: %w", el.name, err)
	}
	if len(resp.Kvs) == 0 {
		return Leader{}, fmt.Errorf("election %q: %w", el.name, ErrNoLeader)
	}
	return leaderOf(resp.Kvs[0]), nil
}

func leaderOf(kv *mvccpb.KeyValue) Leader {
	return Leader{
		Key:      string(kv.Key),
		Value:    string(kv.Value),
		Rev:      kv.CreateRevision,
		Lease:    clientv3.LeaseID(kv.Lease),
		Revision: kv.ModRevision,
	}
}

// Observe returns a channel that receives the current leader and then
// every change of leader or of the leader's value, in order; it does not
// report intervals without a leader, and it may skip leaders that came and
// went between two reads, but it always catches up to the most recent one.
// When etcd's watch breaks it reads again and watches anew, so the channel
// is closed only when ctx ends, after which the goroutine behind it has
// exited. It needs no lease and keeps working while the node's epoch is
// lost.
func (el *Election) Observe(ctx context.Context) <-chan Leader {
	ch := make(chan Leader)
	go el.observe(ctx, ch)
	return ch
}

func (el *Election) observe(ctx context.Context, ch chan<- Leader) {
	defer close(ch)
	var last Leader
	backoff := minBackoff
	for ctx.Err() == nil {
		if el.observeOnce(ctx, ch, &last) {
			backoff = minBackoff
		}
		if !sleep(ctx, &backoff) {
			return
		}
	}
}

// observeOnce opens a watch on the prefix and, once it is in place, reads
// the leader, sends it if it changed, and reads again after every change
// under the prefix, until the watch breaks or ctx ends. It reports whether
// it got as far as a read.
func (el *Election) observeOnce(ctx context.Context, ch chan<- Leader, last *Leader) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	wch := el.client.Watch(wctx, el.pfx, clientv3.WithPrefix(), clientv3.WithCreatedNotify())
	if wr, ok := <-wch; !ok || wr.Err() != nil || !wr.Created {
		return false
	}
	for {
		resp, err := el.client.Get(ctx, el.pfx, clientv3.WithFirstCreate()...)
		if err != nil {
			return false
		}
		if len(resp.Kvs) > 0 {
			cur := leaderOf(resp.Kvs[0])
			if cur.Key != last.Key || cur.Revision != last.Revision {
				select {
				case ch <- cur:
					*last = cur
				case <-ctx.Done():
					return true
				}
			}
		}
		if !changedAfter(wch, resp.Header.Revision) {
			return true
		}
	}
}

// changedAfter consumes wch until it reports a change after revision rev;
// it returns false when the watch breaks.
func changedAfter(wch clientv3.WatchChan, rev int64) bool {
	for wr := range wch {
		if wr.Err() != nil {
			return false
		}
		for _, ev := range wr.Events {
			if ev.Kv.ModRevision > rev {
				return true
			}
		}
	}
	return false
}

const (
	minBackoff = 20 * time.Millisecond
	maxBackoff = time.Second
)

// sleep waits out the backoff and doubles it; it reports false when ctx
// ends first.
func sleep(ctx context.Context, backoff *time.Duration) bool {
	t := time.NewTimer(*backoff)
	defer t.Stop()
	*backoff = min(2**backoff, maxBackoff)
	select {
	case <-t.C:
		return true
	case <-ctx.Done():
		return false
	}
}
