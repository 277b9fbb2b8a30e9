// Package election elects one leader per name among the nodes of a
// cluster, on etcd's concurrency.Election, with fencing tokens.
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
// at a time.
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
// and returns ctx's error. Once etcd reports it elected, Campaign checks
// that the epoch is still alive and that its key still exists with the
// create revision it campaigned with, because etcd's Campaign can return
// after its own lease expired; otherwise it fails with ErrNotLeader. It
// fails with ErrBusy while another campaign or leadership of this Election
// is active.
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
	ce := concurrency.NewElection(cs, strings.TrimSuffix(el.pfx, "/"))
	cctx, cancel := context.WithCancel(ctx)
	stop := context.AfterFunc(e.Context(), cancel)
	err = ce.Campaign(cctx, value)
	stop()
	cancel()
	if err != nil {
		if lerr := e.Err(); lerr != nil {
			return nil, fmt.Errorf("%w: %w", ErrEpochLost, lerr)
		}
		if ctx.Err() != nil {
			return nil, ctx.Err()
		}
		return nil, err
	}
	hdrRev, err := el.confirm(ctx, e, ce.Key(), ce.Rev())
	if err != nil {
		el.withdraw(e, ce.Key(), ce.Rev())
		return nil, err
	}
	lctx, lcancel := context.WithCancel(context.Background())
	l := &Leadership{
		el:          el,
		ce:          ce,
		epoch:       e,
		key:         ce.Key(),
		rev:         ce.Rev(),
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

// confirm checks, after etcd's Campaign returned, that the epoch is alive
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

// withdraw deletes key if it still has create revision rev, bounded by the
// epoch: once the epoch is lost the key goes with its lease.
func (el *Election) withdraw(e *lease.Epoch, key string, rev int64) {
	ctx, cancel := context.WithTimeout(e.Context(), e.TTL())
	defer cancel()
	_, err := el.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", rev)).
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
		resp, err := el.client.Get(ctx, el.pfx, clientv3.WithFirstCreate()...)
		if err != nil {
			if !sleep(ctx, &backoff) {
				return
			}
			continue
		}
		if len(resp.Kvs) > 0 {
			cur := leaderOf(resp.Kvs[0])
			if cur.Key != last.Key || cur.Revision != last.Revision {
				select {
				case ch <- cur:
					last = cur
				case <-ctx.Done():
					return
				}
			}
		}
		// Any change under the prefix may change the leader; read again.
		if el.waitChange(ctx, resp.Header.Revision) {
			backoff = minBackoff
		} else if !sleep(ctx, &backoff) {
			return
		}
	}
}

// waitChange blocks until a key under the election prefix changes after
// rev; it reports false when the watch broke instead.
func (el *Election) waitChange(ctx context.Context, rev int64) bool {
	wctx, cancel := context.WithCancel(clientv3.WithRequireLeader(ctx))
	defer cancel()
	for wr := range el.client.Watch(wctx, el.pfx, clientv3.WithPrefix(), clientv3.WithRev(rev+1)) {
		if wr.Err() != nil {
			return false
		}
		if len(wr.Events) > 0 {
			return true
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
