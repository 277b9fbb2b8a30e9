// Package cohort wires the actor runtime, the etcd session lease,
// membership, the ring, the global registry and elections into one Node.
//
//	node, err := cohort.Start(ctx, cohort.Config{}) // embedded etcd, defaults
//	defer node.Stop(context.Background())           // a live context, not a signal's
package cohort

import (
	"context"
	"crypto/tls"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/embedetcd"
	"github.com/cohort-go/cohort/internal/transport"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/registry"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Version is published in the member key.
const Version = "0.1.0"

// Node is one member of a cohort cluster: an actor system bound to one etcd
// session lease, with membership, the ring, the global registry and
// elections. Create it with Start and end it with Stop.
type Node struct {
	cfg     Config
	log     *zap.Logger
	member  ring.Member
	etcd    *embedetcd.Server
	tmpDir  string
	client  *clientv3.Client
	session *lease.Session
	ring    *ring.Ring
	reg     *registry.Registry
	sys     *actor.System

	lis       net.Listener         // transport listener until the transport serves it
	transport *transport.Transport // set once started; closed in teardown
	// serverTLS and clientTLS are the transport's, nil without TLS.
	serverTLS, clientTLS *tls.Config

	ctx    context.Context
	cancel context.CancelFunc
	wg     sync.WaitGroup

	mu          sync.Mutex
	leaderships map[*election.Leadership]struct{}
	roots       []*supervisor.Ref // started by Supervise; stopped first by Stop
	kinds       map[string]supervisor.Factory
	dsups       map[string]*supervisor.Distributed
	dsupMu      sync.Mutex     // serializes DistributedSupervisor's starts
	offers      map[string]int // distributed supervisors offered, by name; guarded by mu
	stopped     bool
	left        bool // Stop deleted the member key: it is not put again
	etcdGone    bool // Stop found etcd unreachable, and left without it
	stopErr     error
	stopDone    chan struct{}

	absentMu sync.Mutex
	absent   map[string]time.Time // node ids found not members by refreshMember
}

// Start starts a node: it connects to etcd (or starts an embedded one),
// grants the session lease, claims the member key, and starts the ring
// watch and the registry. It fails with ErrInvalidConfig (naming the field)
// for a Config it cannot work with, with ErrDuplicateNode if a live node
// already has the id, with ErrEtcdUnreachable if etcd does not answer within
// DialTimeout, and with ctx's error when ctx ends first. Whatever was started
// is stopped again on failure. An id held by another instance is waited
// for, up to one TTL of that instance's lease: a dead one's expires and
// the node starts (a restart right after a crash needs no retry loop); a
// live one renews it and Start fails with ErrDuplicateNode.
func Start(ctx context.Context, cfg Config) (_ *Node, err error) {
	cfg, err = cfg.withDefaults()
	if err != nil {
		return nil, err
	}
	n := &Node{cfg: cfg, log: cfg.Logger.With(zap.String("node", cfg.NodeID)),
		leaderships: make(map[*election.Leadership]struct{}), stopDone: make(chan struct{}),
		absent: make(map[string]time.Time)}
	n.ctx, n.cancel = context.WithCancel(context.Background())
	// Until Start returns, the end of ctx ends the node's own context, so
	// no step of the start can outlive it; afterwards the node lives on.
	detach := context.AfterFunc(ctx, n.cancel)
	defer func() {
		detach()
		if err != nil {
			n.teardown(context.Background())
			if ctx.Err() != nil {
				err = fmt.Errorf("%w (start: %w)", ctx.Err(), err)
			}
		}
	}()
	endpoints := cfg.Endpoints
	if len(endpoints) == 0 {
		if endpoints, err = n.startEmbedded(ctx); err != nil {
			return nil, err
		}
	}
	n.client, err = clientv3.New(clientv3.Config{
		Endpoints:   endpoints,
		DialTimeout: cfg.DialTimeout - n.probeBudget(),
		TLS:         cfg.TLS,
		Username:    cfg.Username,
		Password:    cfg.Password,
		Logger:      cfg.Logger.Named("etcd-client").WithOptions(zap.IncreaseLevel(zap.WarnLevel)),
		Context:     n.ctx,
	})
	if err != nil {
		if etcdDenied(err) {
			return nil, n.deniedError(err)
		}
		return nil, fmt.Errorf("%w: %v: %w (%s)", ErrEtcdUnreachable, endpoints, err, n.etcdHint(endpoints))
	}
	if err := n.ping(ctx, endpoints); err != nil {
		return nil, err
	}
	if n.etcd != nil {
		if err := n.endPreviousRun(ctx); err != nil {
			return nil, err
		}
	}
	lc := cfg.leaseConfig()
	lc.Logger = n.log
	n.session, err = lease.Start(n.ctx, n.client, lc)
	if err != nil {
		return nil, fmt.Errorf("cohort: session lease: %w", err)
	}
	if n.serverTLS, n.clientTLS, err = cfg.Transport.tlsConfigs(); err != nil {
		return nil, err
	}
	addr, err := n.listenTransport()
	if err != nil {
		return nil, err
	}
	n.member = ring.Member{ID: cfg.NodeID, Addr: addr, StartedAt: time.Now().UTC(), Version: Version,
		Kinds: cfg.Kinds, Roles: cfg.Roles, TLS: n.serverTLS != nil}
	first := n.session.Current()
	err = n.claimMember(n.ctx, first)
	if errors.Is(err, ErrDuplicateNode) {
		err = n.awaitIDFree(ctx, first, err)
	}
	if err != nil {
		return nil, err
	}
	n.sys = actor.NewSystem(actor.Config{Node: cfg.NodeID, Logger: n.log})
	n.ring, err = ring.Watch(n.ctx, n.client, cfg.Prefix, ring.Options{LocalID: cfg.NodeID, Logger: n.log})
	if err != nil {
		return nil, fmt.Errorf("cohort: membership: %w", err)
	}
	n.reg, err = registry.New(n.ctx, n.client, n.session, registry.Config{Prefix: cfg.Prefix, Logger: n.log, Actors: n.sys})
	if err != nil {
		return nil, fmt.Errorf("cohort: registry: %w", err)
	}
	n.sys.AddResolver(n.reg)
	if err := n.startTransport(); err != nil {
		return nil, err
	}
	if cfg.Addr != "" {
		n.wg.Add(1)
		go n.checkAddr(cfg.Addr)
	}
	n.wg.Add(1)
	go n.keepMember(first)
	n.log.Info("node started", zap.String("prefix", cfg.Prefix), zap.Strings("etcd", endpoints),
		zap.Stringer("lease", first))
	return n, nil
}

func (n *Node) startEmbedded(ctx context.Context) ([]string, error) {
	dir := n.cfg.DataDir
	if dir == "" {
		d, err := os.MkdirTemp("", "cohort-etcd-")
		if err != nil {
			return nil, fmt.Errorf("cohort: embedded etcd data dir: %w", err)
		}
		dir, n.tmpDir = d, d
	}
	srv, err := embedetcd.Start(ctx, embedetcd.Config{Dir: dir, ClientURL: n.cfg.EmbeddedClientURL,
		Logger: n.cfg.Logger.Named("etcd")})
	if errors.Is(err, embedetcd.ErrInvalidConfig) {
		return nil, fmt.Errorf("%w: embedded etcd (EmbeddedClientURL %q): %w", ErrInvalidConfig, n.cfg.EmbeddedClientURL, err)
	}
	if err != nil {
		return nil, fmt.Errorf("cohort: embedded etcd: %w", err)
	}
	n.etcd = srv
	return []string{srv.ClientURL()}, nil
}

// endPreviousRun revokes the lease of an earlier run of this node found in
// the embedded etcd it has just started from its data directory. That run
// is dead: the etcd lived in its process and could not have outlived it.
// Left alone, its lease would never expire, for etcd gives every lease a
// full TTL again when it restarts, and it restarts with each attempt to
// start the node: the member key would refuse this node's id for ever.
// Revoking it does what its expiry would have: the dead run's names,
// candidacies and children's owner keys go.
func (n *Node) endPreviousRun(ctx context.Context) error {
	resp, err := n.client.Get(ctx, ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID))
	if err != nil {
		return fmt.Errorf("cohort: reading the member key: %w", err)
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].Lease == 0 {
		return nil
	}
	id := clientv3.LeaseID(resp.Kvs[0].Lease)
	if _, err := n.client.Revoke(ctx, id); err != nil && !errors.Is(err, rpctypes.ErrLeaseNotFound) {
		return fmt.Errorf("cohort: revoking the lease of this node's previous run (%x) in the embedded etcd: %w", int64(id), err)
	}
	n.log.Info("revoked the lease of this node's previous run, left in the embedded etcd's data directory",
		zap.String("lease", fmt.Sprintf("%x", int64(id))))
	return nil
}

// ping makes sure etcd answers, so a wrong endpoint fails Start with a clear
// error rather than a later hang.
func (n *Node) ping(ctx context.Context, endpoints []string) error {
	pctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout-n.probeBudget())
	defer cancel()
	if _, err := n.client.Get(pctx, n.cfg.Prefix+"/members/", clientv3.WithCountOnly()); err != nil {
		if ctx.Err() != nil {
			return fmt.Errorf("waiting for etcd at %v: %w", endpoints, ctx.Err())
		}
		if etcdDenied(err) {
			return n.deniedError(err)
		}
		hint := ""
		if strings.Contains(err.Error(), "unexpected HTTP status code") {
			// A gRPC call answered with a plain HTTP status: an HTTP
			// server, not etcd.
			hint = fmt.Sprintf("%s answers HTTP/2, but not as etcd does: is it etcd's client URL (etcd's default port is 2379)?", endpoints[0])
		} else {
			hint = n.etcdHint(endpoints)
		}
		return fmt.Errorf("%w: %v within %v (DialTimeout %v, less %v kept to probe the endpoint): %w (%s)", ErrEtcdUnreachable, endpoints,
			n.cfg.DialTimeout-n.probeBudget(), n.cfg.DialTimeout, n.probeBudget(), err, hint)
	}
	return nil
}

// deniedError is ErrEtcdDenied for err, saying what to check.
func (n *Node) deniedError(err error) error {
	return fmt.Errorf("%w: %w (check Username and Password, that etcd's auth is on if they are set, and that the user may read and write under %q)",
		ErrEtcdDenied, err, n.cfg.Prefix+"/")
}

// probeBudget is the part of DialTimeout kept for probing an endpoint that
// did not answer: a quarter, at most 2 s.
func (n *Node) probeBudget() time.Duration { return min(n.cfg.DialTimeout/4, 2*time.Second) }

// etcdHint is what probing the first endpoint found, or the general advice.
func (n *Node) etcdHint(endpoints []string) string {
	if len(endpoints) > 0 {
		if h := probeEtcd(endpoints[0], n.cfg.TLS, n.probeBudget()); h != "" {
			return h
		}
	}
	return "check Endpoints, TLS files and credentials, and that etcd runs"
}

// claimMember writes the member key bound to ep's lease. The key is created
// only if absent; a key left by this same node instance under an earlier
// epoch is taken over; a key of another live instance is ErrDuplicateNode.
// Once the node is stopping it has left the ring: the key is not put again,
// and the claim fails with ErrStopped.
func (n *Node) claimMember(ctx context.Context, ep *lease.Epoch) error {
	key := ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID)
	n.mu.Lock()
	member, left := n.member, n.left
	n.mu.Unlock()
	if left {
		return ErrStopped
	}
	val, err := ring.EncodeMember(member)
	if err != nil {
		return err
	}
	resp, err := n.client.Txn(ctx).
		If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(ep.ID()))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return n.stoppedOr(fmt.Errorf("cohort: member key: %w", err))
	}
	if resp.Succeeded {
		return nil
	}
	kvs := resp.Responses[0].GetResponseRange().Kvs
	if len(kvs) == 0 {
		return n.claimMember(ctx, ep)
	}
	kv := kvs[0]
	old, derr := ring.DecodeMember(kv.Value)
	if derr != nil || !old.StartedAt.Equal(member.StartedAt) {
		return fmt.Errorf("%w: %q (started %v) — choose another NodeID, or wait up to the lease TTL if that node is dead",
			ErrDuplicateNode, n.cfg.NodeID, old.StartedAt)
	}
	if clientv3.LeaseID(kv.Lease) == ep.ID() && string(kv.Value) == string(val) {
		return nil
	}
	resp, err = n.client.Txn(ctx).
		If(clientv3.Compare(clientv3.ModRevision(key), "=", kv.ModRevision)).
		Then(clientv3.OpPut(key, string(val), clientv3.WithLease(ep.ID()))).Commit()
	if err != nil {
		return n.stoppedOr(fmt.Errorf("cohort: member key: %w", err))
	}
	if !resp.Succeeded {
		return n.claimMember(ctx, ep)
	}
	return nil
}

// awaitIDFree waits, after claimMember found the node's id held by another
// instance, for that instance's lease to expire, for up to its TTL (and a
// second): a node restarted right after its process died finds its dead
// run's member key until then. An instance that is alive renews its lease
// and keeps the key: that is ErrDuplicateNode, saying so. The wait ends
// with ctx too.
func (n *Node) awaitIDFree(ctx context.Context, ep *lease.Epoch, dup error) error {
	key := ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID)
	resp, err := n.client.Get(ctx, key)
	if err != nil {
		return dup
	}
	if len(resp.Kvs) == 0 {
		return n.claimMember(n.ctx, ep)
	}
	kv := resp.Kvs[0]
	ttl := n.cfg.LeaseTTL
	if lr, err := n.client.TimeToLive(ctx, clientv3.LeaseID(kv.Lease)); err == nil && lr.GrantedTTL > 0 {
		ttl = time.Duration(lr.GrantedTTL) * time.Second
	}
	n.log.Info("node id held by another instance; waiting up to its lease TTL for it to go", zap.Duration("ttl", ttl))
	wctx, cancel := context.WithTimeout(ctx, ttl+time.Second)
	defer cancel()
	for wr := range n.client.Watch(wctx, key, clientv3.WithRev(resp.Header.Revision+1), clientv3.WithFilterPut()) {
		if len(wr.Events) > 0 {
			return n.claimMember(n.ctx, ep)
		}
		if wr.Err() != nil {
			break
		}
	}
	if ctx.Err() != nil {
		return fmt.Errorf("%w (the start's context ended while waiting for that instance's lease to expire)", dup)
	}
	old, _ := ring.DecodeMember(kv.Value)
	return fmt.Errorf("%w: %q (started %v) is alive: it kept its lease for its TTL (%v) — choose another NodeID",
		ErrDuplicateNode, n.cfg.NodeID, old.StartedAt, ttl)
}

// checkAddr warns when the address the node publishes for its transport
// (Config.Addr) does not accept a connection from the node itself: other
// nodes would not reach it either, unless the network lets them where it
// does not let the node (then the warning is wrong, and harmless).
func (n *Node) checkAddr(addr string) {
	defer n.wg.Done()
	d := net.Dialer{Timeout: 2 * time.Second}
	conn, err := d.DialContext(n.ctx, "tcp", addr)
	if err != nil {
		if n.ctx.Err() == nil {
			n.log.Warn("the transport address this node publishes (Config.Addr) does not accept connections from this node: other nodes may not reach it",
				zap.String("addr", addr), zap.Error(err))
		}
		return
	}
	_ = conn.Close()
}

// keepMember re-puts the member key under every new epoch of the session,
// retrying while etcd is unreachable, until the node stops.
func (n *Node) keepMember(ep *lease.Epoch) {
	defer n.wg.Done()
	for {
		next, err := n.session.Next(n.ctx, ep)
		if err != nil {
			return
		}
		ep = next
		backoff := 50 * time.Millisecond
		for {
			err := n.claimMember(ep.Context(), ep)
			if err == nil {
				n.log.Info("rejoined the cluster", zap.Stringer("lease", ep))
				break
			}
			if errors.Is(err, ErrStopped) {
				return
			}
			if ep.Err() != nil || n.ctx.Err() != nil {
				break
			}
			n.log.Warn("re-putting member key failed; retrying", zap.Error(err), zap.Duration("backoff", backoff))
			select {
			case <-time.After(backoff):
			case <-ep.Lost():
			case <-n.ctx.Done():
				return
			}
			backoff = min(2*backoff, 2*time.Second)
		}
	}
}

// ID returns the node id.
func (n *Node) ID() string { return n.cfg.NodeID }

// Prefix returns the cluster's etcd key prefix.
func (n *Node) Prefix() string { return n.cfg.Prefix }

// Endpoints returns the etcd client URLs this node uses; for a node with an
// embedded etcd, the URL other nodes join with.
func (n *Node) Endpoints() []string { return n.client.Endpoints() }

// System returns the node's actor system. Its Refs carry the node id, and
// its names resolve through the global registry after the local table.
func (n *Node) System() *actor.System { return n.sys }

// Client returns the node's etcd client. Stop closes it: a request made
// with it afterwards fails, once the etcd client's own retries are spent
// (about 2.5 s).
func (n *Node) Client() *clientv3.Client { return n.client }

// Session returns the node's lease session, whose epochs end when the node
// fences itself off.
func (n *Node) Session() *lease.Session { return n.session }

// Ring returns the membership ring.
func (n *Node) Ring() *ring.Ring { return n.ring }

// Registry returns the global name registry.
func (n *Node) Registry() *registry.Registry { return n.reg }

// Election returns the election of that name, on the node's session. It
// fails with ErrStopped once the node is stopping.
func (n *Node) Election(name string) (*election.Election, error) {
	if n.isStopped() {
		return nil, ErrStopped
	}
	return election.New(n.session, name, election.Config{Prefix: n.cfg.Prefix, Logger: n.log})
}

// Campaign campaigns in the named election and returns once this node
// leads. The leadership is resigned when the node stops. It fails when ctx
// ends, the node stops (ErrStopped), or the lease epoch is lost while waiting.
func (n *Node) Campaign(ctx context.Context, name, value string) (*election.Leadership, error) {
	el, err := n.Election(name)
	if err != nil {
		return nil, err
	}
	l, err := el.Campaign(ctx, value)
	if err != nil {
		return nil, n.stoppedOr(err)
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.stopped {
		_ = l.Resign(context.Background())
		return nil, ErrStopped
	}
	n.leaderships[l] = struct{}{}
	go func() {
		<-l.Done()
		n.mu.Lock()
		delete(n.leaderships, l)
		n.mu.Unlock()
	}()
	return l, nil
}

// Call calls an actor on any node by Ref or name (names resolve through the
// global registry after the local table); see actor.System.Call. An actor
// on another node is reached over the transport: a call pending on a node
// that goes away fails at once with ErrNodeDown; one that the node, on its
// way out of the cluster, certainly did not take fails with an error that
// matches ErrNotDelivered too, and may be sent again where the actor runs
// next. On a stopped node it fails with an error matching both ErrStopped
// and actor.ErrSystemStopped.
func (n *Node) Call(ctx context.Context, to actor.Target, msg any) (any, error) {
	v, err := n.sys.Call(ctx, to, msg)
	return v, unnamed(n.systemStopped(err))
}

// WaitName waits until name is registered in the global registry, as seen
// by this node, and returns its Ref (at once if it already is). Use it
// before calling a singleton by name: Supervise returns before the
// singleton is elected and registers its name. The name may move or go
// again afterwards, as a Call may find. WaitName fails with an error
// wrapping ctx's error when ctx ends first, with ErrStopped when the node
// stops, and with registry.ErrInvalidName for a malformed name.
func (n *Node) WaitName(ctx context.Context, name string) (actor.Ref, error) {
	if n.isStopped() {
		return actor.Ref{}, ErrStopped
	}
	wctx, cancel := context.WithCancel(ctx)
	defer cancel() // ends the subscription
	events, err := n.reg.Watch(wctx, name)
	if errors.Is(err, registry.ErrClosed) {
		return actor.Ref{}, ErrStopped
	}
	if err != nil {
		return actor.Ref{}, err
	}
	for ev := range events {
		if ev.Type == registry.Put {
			return ev.Entry.Ref, nil
		}
	}
	// The channel closes when ctx ends or the registry closes (node stop).
	if err := ctx.Err(); err != nil {
		return actor.Ref{}, fmt.Errorf("cohort: waiting for name %q: %w", name, err)
	}
	return actor.Ref{}, ErrStopped
}

// Cast casts to an actor; see actor.System.Cast and Call.
func (n *Node) Cast(ctx context.Context, to actor.Target, msg any) error {
	return unnamed(n.systemStopped(n.sys.Cast(ctx, to, msg)))
}

// Send sends a raw message; see actor.System.Send and Call.
func (n *Node) Send(to actor.Target, msg any) error {
	return unnamed(n.systemStopped(n.sys.Send(to, msg)))
}

// unnamed adds to the error of a message to a name no one holds that the
// name may not be registered yet.
func unnamed(err error) error {
	if errors.Is(err, actor.ErrNameNotFound) {
		return fmt.Errorf("%w (if it is about to be registered, a singleton not yet elected for instance, Node.WaitName waits for it)", err)
	}
	return err
}

func (n *Node) isStopped() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.stopped
}

// stoppedOr returns ErrStopped in place of err (often a canceled context
// or a closed session or client) once the node is stopping, else err.
func (n *Node) stoppedOr(err error) error {
	if err != nil && n.isStopped() {
		return ErrStopped
	}
	return err
}

// systemStopped makes the actor system's ErrSystemStopped of a stopped
// node match ErrStopped too.
func (n *Node) systemStopped(err error) error {
	if err != nil && errors.Is(err, actor.ErrSystemStopped) && n.isStopped() {
		return fmt.Errorf("%w: %w", ErrStopped, err)
	}
	return err
}

// Stop leaves the cluster in order: it stops the supervisors started with
// Supervise (their singletons hand over at once), resigns the node's
// leaderships (so another node takes over at once), drains its
// distributed supervisors (their children move, with their state, to the
// other nodes), stops the local actors (callers elsewhere get their
// replies or *ExitError), deletes the member key, revokes the lease
// (removing every key bound to it), closes the etcd client, and last stops
// the embedded etcd (closing etcd under a live client would stall the
// client for seconds).
//
// ctx bounds the etcd requests and the hand-offs; the steps run whatever
// happens. The hand-offs get ctx less up to a second (at most a quarter
// of it), kept for deleting the member key and revoking the lease, so a
// child slow to stop does not cost the node a clean leave. Each etcd
// request is bounded by max(5 s, LeaseTTL) as well (and so is the whole
// Stop when ctx has no deadline), and once one finds etcd unreachable the
// later ones are not waited for (the lease expires on its own, and Stop
// returns ErrEtcdUnreachable saying so, or context.DeadlineExceeded when
// it was ctx's deadline that ran out first). Give it a
// live context: under one already cancelled, distributed children move
// without their state, and leaderships are not resigned nor the lease
// revoked, so singletons and names move only when the lease expires. The
// errors of several steps come joined on one line.
//
// Stop may be called more than once and from several goroutines; all
// return when the first finishes. Stop on a nil *Node (a Start that
// failed) does nothing.
func (n *Node) Stop(ctx context.Context) error {
	if n == nil {
		return nil
	}
	_, callerDeadline := ctx.Deadline()
	if !callerDeadline {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, n.stopTimeout())
		defer cancel()
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		<-n.stopDone
		return n.stopErr
	}
	n.stopped = true
	ls := make([]*election.Leadership, 0, len(n.leaderships))
	for l := range n.leaderships {
		ls = append(ls, l)
	}
	n.mu.Unlock()
	var errs []error
	// Each etcd request below is bounded by stopTimeout; once one finds
	// etcd unreachable, the later ones are not waited for: the lease then
	// expires on its own within one TTL.
	etcdDown := false
	etcdCtx := func() (context.Context, context.CancelFunc) {
		c, cancel := context.WithTimeout(ctx, n.stopTimeout())
		if etcdDown {
			cancel()
		}
		return c, cancel
	}
	// A request that ran out its time, its own bound's or the Stop's,
	// ends the waiting on etcd: the later ones would find the same.
	// cutShort: it was the caller's deadline that ended it.
	cutShort := false
	etcdErr := func(c context.Context, err error) error {
		if err != nil && errors.Is(c.Err(), context.DeadlineExceeded) {
			etcdDown = true
			cutShort = callerDeadline && ctx.Err() != nil
		}
		return err
	}
	// The hand-offs get ctx less a reserve for leaving the cluster
	// (deleting the member key, revoking the lease): a child slow to stop
	// costs the node its hand-off time, not its clean leave.
	work := ctx
	if dl, ok := ctx.Deadline(); ok {
		var cancel context.CancelFunc
		work, cancel = context.WithDeadline(ctx, dl.Add(-min(leaveReserve, time.Until(dl)/4)))
		defer cancel()
	}
	if err := n.stopRoots(work); err != nil {
		errs = append(errs, err)
	}
	for _, l := range ls {
		c, cancel := etcdCtx()
		err := etcdErr(c, l.Resign(c))
		cancel()
		if err != nil && !errors.Is(err, context.Canceled) {
			errs = append(errs, fmt.Errorf("resign %s: %w", l.Key(), err))
		}
	}
	// Hand the distributed children off while the node is still a member:
	// each supervisor first withdraws the node from its placement, and
	// calls to the moving children reach their new instances. That needs
	// etcd: if it cannot be reached, the children are only stopped, and
	// the node's record is no longer written (as after leaving).
	n.mu.Lock()
	dsups := make([]*supervisor.Distributed, 0, len(n.dsups))
	for _, d := range n.dsups {
		dsups = append(dsups, d)
	}
	n.mu.Unlock()
	if len(dsups) > 0 && !etcdDown {
		// A probe, bounded by a quarter of a request's bound, so that an
		// etcd gone does not take the whole Stop.
		dl, _ := ctx.Deadline()
		c, cancel := context.WithTimeout(ctx, min(n.stopTimeout(), time.Until(dl))/4)
		_, err := n.client.Get(c, ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID), clientv3.WithCountOnly())
		etcdErr(c, err)
		cancel()
	}
	if etcdDown {
		n.mu.Lock()
		n.left, n.etcdGone = true, true
		n.mu.Unlock()
	}
	for _, d := range dsups {
		if !etcdDown {
			d.Drain(work)
		}
		d.Stop(work)
	}
	// Stop the local actors while the transport still carries their
	// answers: a call in progress gets its reply, a queued one its
	// *ExitError, rather than ErrNodeDown.
	if err := n.sys.Shutdown(work); err != nil {
		errs = append(errs, err)
	}
	// Tell each peer which of its calls were read, so that it fails the
	// others as not delivered (and sends them where their actors run
	// next) rather than as lost to a node down.
	if n.transport != nil {
		n.transport.Drain(work)
	}
	// Leave the ring last.
	n.mu.Lock()
	n.left = true
	n.mu.Unlock()
	if !etcdDown {
		c, cancel := etcdCtx()
		_, err := n.client.Txn(c).
			If(clientv3.Compare(clientv3.LeaseValue(ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID)), "=", n.session.Current().ID())).
			Then(clientv3.OpDelete(ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID))).Commit()
		if etcdErr(c, err) != nil {
			errs = append(errs, fmt.Errorf("delete member key: %w", err))
		}
		cancel()
	}
	wasDown := etcdDown
	c, cancel := etcdCtx()
	if err := n.teardown(c); err != nil && !(wasDown && errors.Is(err, context.Canceled)) {
		errs = append(errs, err)
	}
	cancel()
	switch {
	case cutShort:
		errs = append(errs, fmt.Errorf("cohort: stop: %w before etcd answered; the node's member key and lease expire within the lease TTL (%v)",
			context.DeadlineExceeded, n.session.Config().TTL))
	case wasDown:
		errs = append(errs, fmt.Errorf("%w: the node left without it; its member key and lease expire within the lease TTL (%v)",
			ErrEtcdUnreachable, n.session.Config().TTL))
	}
	n.stopErr = joinErrors(errs)
	close(n.stopDone)
	return n.stopErr
}

// leaveReserve is the part of Stop's context (at most a quarter of it)
// kept for leaving the cluster once the hand-offs are done.
const leaveReserve = time.Second

// stopTimeout bounds each of Stop's etcd requests (and the whole of Stop
// when its ctx has no deadline), so a node cut off from etcd still stops:
// after it the lease expires on its own within one TTL.
func (n *Node) stopTimeout() time.Duration {
	return max(5*time.Second, n.session.Config().TTL)
}

// teardown closes what Start opened, in reverse order.
func (n *Node) teardown(ctx context.Context) error {
	var errs []error
	n.stopTransport()
	if n.reg != nil {
		_ = n.reg.Close()
	}
	if n.ring != nil {
		n.ring.Close()
	}
	if n.session != nil {
		if err := n.session.Close(ctx); err != nil {
			errs = append(errs, fmt.Errorf("revoke lease: %w", err))
		}
	}
	n.cancel()
	n.wg.Wait()
	if n.client != nil {
		_ = n.client.Close()
	}
	if n.etcd != nil {
		n.etcd.Close()
	}
	if n.tmpDir != "" {
		_ = os.RemoveAll(n.tmpDir)
	}
	return joinErrors(errs)
}
