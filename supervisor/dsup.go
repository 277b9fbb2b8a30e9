package supervisor

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/mirror"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"google.golang.org/grpc/codes"
	grpcstatus "google.golang.org/grpc/status"
)

// Distributed is a distributed dynamic supervisor: the same name runs on
// every node, children are placed on the consistent-hash ring over the
// nodes that can run them, their specs are kept in etcd, and at most one
// instance of a child runs anywhere. Each node reconciles on its own: it
// claims and starts the children the ring gives it, moves away those the
// ring gives another node, and restarts those of a dead node once its
// lease is gone.
type Distributed struct {
	name string
	c    Cluster
	o    DistributedOptions
	k    keys
	log  *zap.Logger
	m    *mirror.Mirror

	mu        sync.Mutex
	local     map[string]*localChild
	dirty     map[string]struct{}
	names     internTable         // node ids and kinds in mirrored values
	deferred  map[string]struct{} // local children to move once moves may run
	exits     []childExit
	full      bool
	rebalance []chan struct{}
	ringAt    time.Time // last membership change
	draining  bool
	releases  releaseQueue
	unhold    func()              // releases the epoch held by watchEpochs
	ranOnce   map[string]struct{} // temporary children started here, while their spec exists
	filters   sync.Map            // kind → ring.Filter
	runs      ring.Filter         // the members running the supervisor
	// handoffSeen is when the mirror last saw a handoff key written
	// (Unix nanoseconds).
	handoffSeen atomic.Int64
	fencedTo    clientv3.LeaseID // the epoch the last pass fenced for
	// ringWant is the revision, newer than the ring's view, that a pass
	// needs the ring to reach before it decides on some specs; a
	// goroutine awaits it while ringAwait.
	ringWant  int64
	ringAwait bool
	waiting   map[string]struct{} // ids to look at again then
	// doubt holds the children whose owner key may be this node's under
	// the epoch with no instance here: a claim, a restart or a release
	// that etcd did not answer. The pass releases such a key (with the
	// state the release carried), so the child is claimed anew rather
	// than left owned and stopped until the epoch ends.
	doubt map[string]doubtful

	// starts are the ids a StartChild or FindOrStart on this node waits
	// to see claimed, with the first Ref claimed for each, taken as the
	// mirror decodes owner keys: a child that ran and stopped (its spec
	// removed) before the wait looked is still answered with its Ref.
	startMu sync.Mutex
	starts  map[string]*startWatch
	startN  atomic.Int32 // len(starts), read without startMu

	pass      sync.Mutex // held by a reconcile pass
	withdrawn sync.Once  // the offer of StartDistributed withdrawn
	kick      chan struct{}
	ctx       context.Context
	cancel    context.CancelFunc
	wg        sync.WaitGroup
}

// startWatch is the claim of one id that calls on this node wait for.
type startWatch struct {
	waiters int
	ref     actor.Ref // the first Ref claimed, zero until then
}

// watchStart records the Refs claimed for id until the returned func is
// called.
func (d *Distributed) watchStart(id string) (done func()) {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if d.starts == nil {
		d.starts = make(map[string]*startWatch)
	}
	w := d.starts[id]
	if w == nil {
		w = &startWatch{}
		d.starts[id] = w
		d.startN.Add(1)
	}
	w.waiters++
	return func() {
		d.startMu.Lock()
		defer d.startMu.Unlock()
		if w.waiters--; w.waiters == 0 {
			delete(d.starts, id)
			d.startN.Add(-1)
		}
	}
}

// claimed notes the Ref an owner key of id names, for watchStart.
func (d *Distributed) claimed(id string, ref actor.Ref) {
	d.startMu.Lock()
	if w := d.starts[id]; w != nil && w.ref.IsZero() {
		w.ref = ref
	}
	d.startMu.Unlock()
}

// startedRef returns the Ref claimed for id since watchStart, if any.
func (d *Distributed) startedRef(id string) (actor.Ref, bool) {
	d.startMu.Lock()
	defer d.startMu.Unlock()
	if w := d.starts[id]; w != nil && !w.ref.IsZero() {
		return w.ref, true
	}
	return actor.Ref{}, false
}

// doubtful is an owner key in doubt, and the release that settles it.
// claimed is the Ref a claim in doubt wrote: if the key holds it, the
// claim went through, and took the child's handed-off state with it.
type doubtful struct {
	ep      *lease.Epoch
	r       release
	claimed actor.Ref
}

// inDoubt records that etcd did not answer a request that wrote, or was
// to delete, the owner keys of rs under ep, and looks at them again soon.
func (d *Distributed) inDoubt(ep *lease.Epoch, rs ...release) {
	ds := make([]doubtful, len(rs))
	for i, r := range rs {
		ds[i] = doubtful{ep: ep, r: r}
	}
	d.noteDoubts(ds)
}

func (d *Distributed) noteDoubts(ds []doubtful) {
	d.mu.Lock()
	ids := make([]string, len(ds))
	for i, x := range ds {
		d.doubt[x.r.id] = x
		ids[i] = x.r.id
	}
	d.mu.Unlock()
	d.markDirty(ids...)
}

// settled forgets the doubt about ids: their owner keys were written or
// deleted as intended.
func (d *Distributed) settled(ids ...string) {
	d.mu.Lock()
	if len(d.doubt) > 0 {
		for _, id := range ids {
			delete(d.doubt, id)
		}
	}
	d.mu.Unlock()
}

func idsOf(rs []release) []string {
	ids := make([]string, len(rs))
	for i, r := range rs {
		ids[i] = r.id
	}
	return ids
}

// childExit is the exit of the instance down.Ref of the local child id.
type childExit struct {
	id   string
	down actor.Down
}

type localChild struct {
	spec     ChildSpec
	ref      actor.Ref
	epoch    *lease.Epoch // the epoch it was claimed under
	token    int64        // its owner key's create revision
	restarts []time.Time
	stopping bool // detached: whoever detached it stops it
	fenced   bool // detached by a fence
	// started is set once its Start has returned and its start event
	// is out; an exit reported before then waits in exit, so that a
	// child's stop never precedes its start.
	started bool
	exit    *actor.Down
}

// aliveUntil is when the lease the child was claimed under is last
// certainly alive.
func (lc *localChild) aliveUntil() time.Time { return lc.epoch.AliveUntil() }

// StartDistributed starts the distributed supervisor name on this node. Run
// it on every node that should take part, with the same options.
func StartDistributed(ctx context.Context, c Cluster, name string, o DistributedOptions) (*Distributed, error) {
	if err := actor.ValidateName(name); err != nil || strings.Contains(name, "/") {
		return nil, fmt.Errorf("%w: supervisor name %q: a non-empty name of printable characters without '/'", ErrInvalidSpec, name)
	}
	if c.Client == nil || c.Session == nil || c.Ring == nil || c.System == nil || c.Kind == nil || c.Offer == nil {
		return nil, fmt.Errorf("%w: Cluster needs Client, Session, Ring, System, Kind and Offer", ErrInvalidSpec)
	}
	if err := o.check(); err != nil {
		return nil, err
	}
	in, err := o.Intensity.resolve()
	if err != nil {
		return nil, fmt.Errorf("DistributedOptions.Intensity: %w", err)
	}
	if o.Intensity == (Intensity{}) {
		in = Intensity{MaxRestarts: 3, Period: 5 * time.Second}
	}
	o.Intensity = in
	if o.MoveBatch == 0 {
		o.MoveBatch = 512
	}
	if o.StableWindow == 0 {
		o.StableWindow = time.Second
	}
	if o.ClusterMaxRestarts == 0 {
		o.ClusterMaxRestarts = 3
	}
	log := o.Logger
	if log == nil {
		log = c.Logger
	}
	if log == nil {
		log = c.System.Logger()
	}
	d := &Distributed{name: name, c: c, o: o, k: keys{root: c.Prefix + "/sup/" + name + "/"},
		log: log.With(zap.String("dsup", name)), local: make(map[string]*localChild),
		dirty: make(map[string]struct{}), waiting: make(map[string]struct{}), doubt: make(map[string]doubtful), deferred: make(map[string]struct{}), ranOnce: make(map[string]struct{}), full: true, kick: make(chan struct{}, 1)}
	d.runs = ring.Filter{Key: "dsup:" + name, Match: func(m ring.Member) bool { return m.RunsSupervisor(name) }}
	d.ctx, d.cancel = context.WithCancel(context.Background())
	// The mirror lives as long as the supervisor; ctx bounds only its
	// first read.
	abort := context.AfterFunc(ctx, d.cancel)
	// The node is published as running the supervisor while its view of
	// the children loads: the other nodes move children to it only after
	// the stable window, which the load overlaps, and a child released to
	// it meanwhile waits (with its handed-off state) until it claims it.
	offered := make(chan error, 1)
	go func() { offered <- c.Offer(ctx, name, true) }()
	d.m, err = mirror.StartDecoded(d.ctx, c.Client, d.k.root, d.log, d.onUpdate, d.decodeKey)
	if !abort() && err == nil {
		d.m.Close()
		err = ctx.Err()
	}
	if oerr := <-offered; oerr != nil && err == nil {
		d.m.Close()
		err = fmt.Errorf("publish it in the member record: %w", oerr)
	}
	if err != nil {
		d.cancel()
		d.withdraw(context.Background())
		return nil, fmt.Errorf("supervisor: distributed %q: %w", name, err)
	}
	changes, unsubscribe := c.Ring.Subscribe()
	d.wg.Add(3)
	go d.watchRing(changes, unsubscribe)
	go d.watchEpochs()
	go d.loop()
	return d, nil
}

// Name returns the supervisor's name.
func (d *Distributed) Name() string { return d.name }

func (d *Distributed) poke() {
	select {
	case d.kick <- struct{}{}:
	default:
	}
}

func (d *Distributed) onUpdate(u mirror.Update) {
	d.mu.Lock()
	if u.Reset {
		d.full = true
	}
	for i, key := range u.Keys {
		if id, ok := d.k.idOf(key, "specs/"); ok {
			d.dirty[id] = struct{}{}
		} else if id, ok := d.k.idOf(key, "status/"); ok {
			d.dirty[id] = struct{}{}
		} else if d.k.has(key, "handoff/") && (u.Deleted == nil || !u.Deleted[i]) {
			d.handoffSeen.Store(time.Now().UnixNano())
		} else if id, ok := d.k.idOf(key, "owners/"); ok {
			// A new owner key asks nothing of the reconciler: its own
			// claims start their children, and a key of its own from an
			// earlier epoch is found by the full pass after the epoch
			// changes; unless it is a key in doubt. A deleted one may
			// have to be claimed.
			if _, doubt := d.doubt[id]; doubt || u.Deleted == nil || u.Deleted[i] {
				d.dirty[id] = struct{}{}
			}
		}
	}
	d.mu.Unlock()
	d.poke()
}

func (d *Distributed) watchRing(changes <-chan ring.Change, unsubscribe func()) {
	defer d.wg.Done()
	defer unsubscribe()
	first := true
	var placing string
	for {
		select {
		case <-d.ctx.Done():
			return
		case ch, ok := <-changes:
			if !ok {
				return
			}
			if !first {
				for _, m := range ch.Joined {
					d.emit(DistEvent{Type: NodeUp, Node: m.ID})
				}
				for _, m := range ch.Left {
					d.emit(DistEvent{Type: NodeDown, Node: m.ID})
				}
			}
			// Only a change among the nodes that run this supervisor
			// moves its children: another supervisor starting, or a node
			// that does not run this one, asks nothing of it.
			now := d.placing(ch.Members)
			if !first && now == placing && !slices.ContainsFunc(ch.Left, d.runs.Match) && !slices.ContainsFunc(ch.Joined, d.runs.Match) {
				continue
			}
			placing = now
			d.mu.Lock()
			d.full = true
			if !first {
				d.ringAt = time.Now()
			}
			d.mu.Unlock()
			first = false
			d.poke()
			// A join moves children only after the window; look again then.
			time.AfterFunc(d.o.StableWindow, d.poke)
		}
	}
}

// placing describes what placement by this supervisor depends on in
// members: the nodes that run it, with their kinds and roles.
func (d *Distributed) placing(members []ring.Member) string {
	var b strings.Builder
	for _, m := range members {
		if !d.runs.Match(m) {
			continue
		}
		b.WriteString(m.ID)
		for _, l := range [][]string{m.Kinds, m.Roles} {
			b.WriteByte(0)
			b.WriteString(strings.Join(l, "\x01"))
		}
		b.WriteByte(0)
	}
	return b.String()
}

// watchEpochs holds each epoch of the session (see lease.Epoch.Hold) while
// children may run under it, and fences those children when it is lost;
// only then may the session revoke the lost lease and let other nodes
// start them.
func (d *Distributed) watchEpochs() {
	defer d.wg.Done()
	ep := d.c.Session.Current()
	for {
		d.hold(ep)
		select {
		case <-d.ctx.Done():
			return // Stop releases the hold once the children stopped
		case <-ep.Lost():
		}
		// Stop the children claimed under the lost epoch now, not on the
		// loop's next pass: the loop may be busy.
		lost := ep
		d.fence(lost.Err(), func(lc *localChild) bool { return lc.epoch == lost })
		d.unholdEpoch()
		d.poke()
		next, err := d.c.Session.Next(d.ctx, ep)
		if err != nil {
			return
		}
		ep = next
		d.mu.Lock()
		d.full = true
		d.mu.Unlock()
		d.poke()
	}
}

// hold holds ep for the children started under it.
func (d *Distributed) hold(ep *lease.Epoch) {
	r := ep.Hold()
	d.mu.Lock()
	d.unhold = r
	d.mu.Unlock()
}

// unholdEpoch releases the hold on the last epoch held, if any.
func (d *Distributed) unholdEpoch() {
	d.mu.Lock()
	r := d.unhold
	d.unhold = nil
	d.mu.Unlock()
	if r != nil {
		r()
	}
}

func (d *Distributed) loop() {
	defer d.wg.Done()
	for {
		select {
		case <-d.ctx.Done():
			return
		case <-d.kick:
		}
		d.pass.Lock()
		d.reconcile()
		d.pass.Unlock()
	}
}

func (d *Distributed) emit(e DistEvent) {
	e.Supervisor, e.Time = d.name, time.Now()
	if e.Node == "" {
		e.Node = d.c.NodeID
	}
	level := zap.InfoLevel
	if e.Type == DistChildFailed {
		level = zap.ErrorLevel
	}
	if d.log.Core().Enabled(level) {
		d.log.Log(level, "distributed supervisor "+e.Type.String(),
			zap.String("child", e.ChildID), zap.String("on", e.Node), zap.Stringer("ref", e.Ref), zap.Error(e.Reason))
	}
	if d.o.Listener != nil {
		d.o.Listener(e)
	}
}

// filter is the eligibility filter for a kind under the options, built
// once per kind; for kind "" it matches the nodes eligible whatever the
// kind.
func (d *Distributed) filter(kind string) ring.Filter {
	if f, ok := d.filters.Load(kind); ok {
		return f.(ring.Filter)
	}
	f := ring.Filter{Key: "dsup:" + d.name + ":" + kind, Match: func(m ring.Member) bool {
		if (kind != "" && !m.HasKind(kind)) || !m.RunsSupervisor(d.name) {
			return false
		}
		if d.o.Role != "" && !m.HasRole(d.o.Role) {
			return false
		}
		return len(d.o.Nodes) == 0 || slices.Contains(d.o.Nodes, m.ID)
	}}
	d.filters.Store(kind, f)
	return f
}

// place returns the node a spec belongs on at this ring snapshot.
func (d *Distributed) place(spec ChildSpec, snap *ring.Snapshot) (string, bool) {
	if spec.Node != "" {
		m, ok := snap.Member(spec.Node)
		return spec.Node, ok && d.filter(spec.Kind).Match(m)
	}
	return d.placeAmong(spec.ID, d.filter(spec.Kind), snap)
}

// placeAmong returns the node id belongs on among the members f matches.
func (d *Distributed) placeAmong(id string, f ring.Filter, snap *ring.Snapshot) (string, bool) {
	if d.o.Locator == nil {
		return snap.NodeForAmong(id, f)
	}
	sub := snap.Among(f)
	ids := sub.IDs()
	if len(ids) == 0 {
		return "", false
	}
	n := d.o.Locator(id, ids)
	return n, slices.Contains(ids, n)
}

// decoded is a mirror value decoded once on arrival: the decoded form and
// whether it decoded.
type decoded[T any] struct {
	v  T
	ok bool
}

// decodeKey decodes a value under the supervisor's prefix by its kind of
// key, for the mirror to cache.
func (d *Distributed) decodeKey(key string, value []byte) any {
	if id, ok := d.k.idOf(key, "specs/"); ok {
		v, ok := decodeSpecIn(value, id, &d.names)
		return decoded[ChildSpec]{v, ok}
	}
	switch {
	case d.k.has(key, "owners/"):
		v, ok := decodeOwnerIn(value, &d.names)
		if ok && d.startN.Load() > 0 {
			if id, isID := d.k.idOf(key, "owners/"); isID {
				d.claimed(id, v.Ref)
			}
		}
		return decoded[owner]{v, ok}
	case d.k.has(key, "status/"):
		v, ok := decode[status](value)
		return decoded[status]{v, ok}
	}
	return nil
}

// lookup returns the mirror's entry of the key sub+id, building the key
// on the stack: the reconciler looks up several keys per child per pass.
func (d *Distributed) lookup(sub, id string) (mirror.Entry, bool) {
	var buf [128]byte
	key := append(append(append(buf[:0], d.k.root...), sub...), id...)
	return d.m.Lookup(key)
}

func (d *Distributed) specOf(id string) (ChildSpec, bool) {
	e, ok := d.lookup("specs/", id)
	if !ok {
		return ChildSpec{}, false
	}
	s, _ := e.Decoded.(decoded[ChildSpec])
	return s.v, s.ok
}

func (d *Distributed) ownerOf(id string) (owner, clientv3.LeaseID, bool) {
	e, ok := d.lookup("owners/", id)
	if !ok {
		return owner{}, 0, false
	}
	o, _ := e.Decoded.(decoded[owner])
	return o.v, clientv3.LeaseID(e.Lease), o.ok
}

func (d *Distributed) statusOf(id string) status {
	e, _ := d.lookup("status/", id)
	st, _ := e.Decoded.(decoded[status])
	return st.v
}

// reconcile is one pass of the node's reconciler. Only the loop goroutine
// runs it.
func (d *Distributed) reconcile() {
	ep := d.c.Session.Current()
	if err := ep.Check(); err != nil {
		d.fence(err, func(*localChild) bool { return true })
		return
	}
	// A child this loop started under an epoch that was lost meanwhile.
	// Children are claimed only under the current epoch, so after one pass
	// under an epoch there are none left to fence until it changes.
	if d.fencedTo != ep.ID() {
		d.fence(fmt.Errorf("claimed under an earlier epoch than %v", ep), func(lc *localChild) bool { return lc.epoch != ep })
		d.fencedTo = ep.ID()
	}
	d.mu.Lock()
	ids := d.dirty
	d.dirty = make(map[string]struct{})
	full := d.full
	d.full = false
	exits := d.exits
	d.exits = nil
	waiters := d.rebalance
	d.rebalance = nil
	stable := time.Since(d.ringAt) >= d.o.StableWindow
	// Moves run once membership is stable (auto balance) or on Rebalance.
	// Until then the children waiting to move are not looked at again.
	movesRun := (d.o.Balance == BalanceAuto && stable) || waiters != nil
	if movesRun {
		for id := range d.deferred {
			ids[id] = struct{}{}
		}
		clear(d.deferred)
	}
	draining := d.draining
	d.mu.Unlock()
	if draining {
		// A drained node takes no child and holds none: a Rebalance
		// asked of it has nothing to do.
		for _, w := range waiters {
			close(w)
		}
		return
	}
	for _, e := range exits {
		d.childExited(ep, e)
	}
	if full {
		all := make(map[string]struct{}, len(ids)+d.m.Len())
		for id := range ids {
			all[id] = struct{}{}
		}
		d.m.Range(d.k.root+"specs/", func(key string, _ mirror.Entry) {
			if id, ok := d.k.idOf(key, "specs/"); ok {
				all[id] = struct{}{}
			}
		})
		ids = all
	}
	snap := d.c.Ring.Snapshot()
	// deferred are local children that belong elsewhere but wait for the
	// stable window (or for the next move batch): they are looked at
	// again on the pass when moves run, without rescanning every local
	// child.
	var claims, moves, deferred []string
	for id := range ids {
		spec, hasSpec := d.specOf(id)
		d.mu.Lock()
		lc := d.local[id]
		doubt, inDoubt := d.doubt[id]
		if inDoubt && doubt.ep != ep {
			// Its keys went, or go, with that epoch's lease.
			delete(d.doubt, id)
			inDoubt = false
		}
		d.mu.Unlock()
		if hasSpec && lc == nil && !inDoubt {
			// Most ids in a pass are another live node's: nothing to do.
			if want, ok := d.place(spec, snap); ok && want != d.c.NodeID {
				continue
			}
		}
		own, ownLease, hasOwner := d.ownerOf(id)
		if !hasSpec {
			d.mu.Lock()
			delete(d.ranOnce, id)
			d.mu.Unlock()
			if lc != nil {
				d.stopLocal(id, lc, actor.Shutdown)
				d.release(ep, id, nil)
			} else if hasOwner && own.Node == d.c.NodeID {
				d.release(ep, id, nil)
			}
			continue
		}
		if d.statusOf(id).Failed {
			if lc != nil {
				d.stopLocal(id, lc, ErrChildFailed)
				d.release(ep, id, nil)
			}
			continue
		}
		if inDoubt && lc == nil && hasOwner && own.Node == d.c.NodeID && ownLease == ep.ID() {
			// Owned under this epoch with no instance here: released,
			// with the state its release carried, or that the claim in
			// doubt took, to be claimed anew.
			r := doubt.r
			if !doubt.claimed.IsZero() && own.Ref == doubt.claimed {
				e, _ := d.lookup("owners/", id)
				state, err := d.takenState(ep, id, e.ModRevision)
				if err != nil {
					d.log.Warn("reading the state a claim took failed; will retry", zap.String("child", id), zap.Error(err))
					d.markDirty(id)
					continue
				}
				r.handoff = state
			}
			d.releaseAll(ep, []release{r})
			continue
		}
		want, ok := d.place(spec, snap)
		if spec.Restart == Temporary && spec.Node != "" && !ok {
			// A temporary child's node is gone, or no longer runs the
			// supervisor: it is not restarted elsewhere. The owner of its
			// id among the nodes running the supervisor removes the spec,
			// once its view of the ring is as new as the spec: its node
			// placed it there seeing itself run the supervisor.
			if e, _ := d.lookup("specs/", id); e.ModRevision > snap.Revision() {
				d.awaitRing(e.ModRevision, id)
			} else if mine, _ := snap.NodeForAmong(id, d.runs); mine == d.c.NodeID {
				d.deleteSpec(id)
			}
			continue
		}
		if lc != nil {
			movable := spec.Node == "" && spec.Restart != Temporary
			if ok && want != d.c.NodeID && movable {
				switch {
				case movesRun:
					moves = append(moves, id)
				case d.o.Balance == BalanceAuto:
					deferred = append(deferred, id)
				}
			}
			continue
		}
		if !ok || want != d.c.NodeID {
			continue
		}
		d.mu.Lock()
		_, ran := d.ranOnce[id]
		d.mu.Unlock()
		switch {
		case !hasOwner && spec.Restart == Temporary && (ran || d.pinnedBefore(id, snap)):
			// A temporary child runs once: this node started it, and it
			// stopped without its exit deleting the spec (the node fenced
			// itself), or it was pinned to an earlier incarnation of this
			// node, which may have run it. Its spec goes instead of a
			// second start.
			d.deleteSpec(id)
		case !hasOwner:
			claims = append(claims, id)
		case own.Node == d.c.NodeID && ownLease != ep.ID():
			// Ours from an earlier epoch: release it so it can be claimed.
			d.release(ep, id, nil)
		}
	}
	slices.Sort(claims)
	d.claim(ep, claims)
	more := len(moves) > d.o.MoveBatch
	if more {
		slices.Sort(moves)
		deferred = append(deferred, moves[d.o.MoveBatch:]...)
		moves = moves[:d.o.MoveBatch]
	}
	if len(deferred) > 0 {
		d.mu.Lock()
		for _, id := range deferred {
			d.deferred[id] = struct{}{}
		}
		if more {
			// A Rebalance returns when all its moves are done, over as
			// many passes as the batch size takes.
			d.rebalance = append(d.rebalance, waiters...)
			waiters = nil
		}
		d.mu.Unlock()
	}
	d.moveAll(ep, moves)
	if more {
		d.poke()
	}
	for _, w := range waiters {
		close(w)
	}
}

// claim takes ownership of ids (owner keys created only if absent, bound to
// the epoch's lease, with any handed-off state taken in the same
// transaction) and starts them.
//
// Handed-off state is taken by deleting its key, an operation per child.
// While no handoff was written lately (a start of many children, a
// failover) the claim is lean instead: the mirror, at a revision read
// first, shows which ids have a handoff key; those are claimed in full,
// and the others in transactions of twice as many children that take no
// handoff but hold only if no handoff key was written after that
// revision. One that was falls back to the full form.
func (d *Distributed) claim(ep *lease.Epoch, ids []string) {
	type batch struct {
		ids []string
		rev int64 // lean form: no handoff key written after rev
	}
	var batches []batch
	split := func(ids []string, per int, rev int64) {
		for len(ids) > 0 {
			n := min(per, len(ids))
			batches = append(batches, batch{ids[:n], rev})
			ids = ids[n:]
		}
	}
	if time.Since(time.Unix(0, d.handoffSeen.Load())) > leanAfter {
		rev := d.m.Revision()
		var full, lean []string
		for _, id := range ids {
			if _, ok := d.lookup("handoff/", id); ok {
				full = append(full, id)
			} else {
				lean = append(lean, id)
			}
		}
		split(full, idsPerTxn, 0)
		split(lean, leanIDsPerTxn, rev)
	} else {
		split(ids, idsPerTxn, 0)
	}
	// A few transactions in flight at once keep etcd busy while this node
	// spawns the children of the previous batch.
	var wg sync.WaitGroup
	sem := make(chan struct{}, claimsInFlight)
	for _, b := range batches {
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if b.rev == 0 || !d.claimLean(ep, b.ids, b.rev) {
				for part := range slices.Chunk(b.ids, idsPerTxn) {
					d.claimBatch(ep, part)
				}
			}
		}()
	}
	wg.Wait()
}

// requestTimeout bounds each etcd request of the supervisor's own.
var requestTimeout = 10 * time.Second

// idsPerTxn is how many children one claim or release transaction covers:
// two operations per child, within etcd's default limit of 128
// operations per transaction (--max-txn-ops).
const idsPerTxn = 64

// What one child may put in etcd, and what one transaction carries. etcd
// refuses a request larger than its --max-request-bytes (1.5 MiB by
// default, and in the embedded etcd), and its client sends none over
// 2 MiB; transactions that group children are cut to stay well below.
const (
	// MaxArgsBytes bounds a ChildSpec's Args: a spec lives in etcd. Keep
	// large data elsewhere and pass a key to it.
	MaxArgsBytes = 512 << 10
	// MaxHandoffBytes bounds the state a child's Handoff returns. Larger
	// state is not carried: the child moves without it, and the move is
	// reported (a log at error level, and the reason of its stopped
	// event).
	MaxHandoffBytes = 512 << 10
	// txnBytes bounds the keys and values of one grouped transaction.
	txnBytes = 1 << 20
	// opOverhead is counted for each key of a grouped transaction, besides
	// its value: the key and the operation's framing.
	opOverhead = 256
)

// nextPart returns how many of n items, item i carrying size(i) bytes, go
// in the next transaction: at most maxItems, and no more than txnBytes in
// all, but at least one.
func nextPart(n, maxItems int, size func(i int) int) int {
	total := 0
	for i := range min(n, maxItems) {
		total += size(i) + opOverhead
		if total > txnBytes && i > 0 {
			return i
		}
	}
	return min(n, maxItems)
}

// tooLarge reports whether etcd, or its client, refused a request for its
// size.
func tooLarge(err error) bool {
	return errors.Is(err, rpctypes.ErrRequestTooLarge) || grpcstatus.Code(err) == codes.ResourceExhausted
}

// leanIDsPerTxn is how many children a lean claim covers: one comparison
// each and one over the handoff keys, within the same limit.
const leanIDsPerTxn = 127

// leanAfter is how long after the last handoff key it saw a node claims
// in the lean form.
const leanAfter = time.Second

// claimsInFlight bounds the claim transactions one node has in flight.
const claimsInFlight = 4

// claimLean claims ids in one transaction that holds only if none of them
// has an owner and no handoff key was written after rev, when the mirror
// showed none of theirs. It reports false when the transaction did not
// hold (the caller claims them in full), true when it was done with them.
func (d *Distributed) claimLean(ep *lease.Epoch, ids []string, rev int64) bool {
	unchanged := clientv3.Compare(clientv3.ModRevision(d.k.root+"handoff/"), "<", rev+1).WithPrefix()
	ins, resp, ok := d.claimTxn(ep, ids, 1, unchanged, nil)
	if !ok {
		return true
	}
	if !resp.Succeeded {
		return false
	}
	d.started(ep, ids, ins, resp.Header.Revision, func(int) []byte { return nil })
	return true
}

// claimTxn commits the claim of ids: the owner key of each created only if
// absent, under a Ref reserved here and bound to ep's lease, followed by
// the operation take makes for its id, if take is set (opsPerID is the
// number of operations per id); cmp, if set, is one more comparison. It returns false when the commit
// failed (logged, and the ids left for the next pass).
func (d *Distributed) claimTxn(ep *lease.Epoch, ids []string, opsPerID int, cmp clientv3.Cmp, take func(id string) clientv3.Op) ([]instance, *clientv3.TxnResponse, bool) {
	ins := make([]instance, len(ids))
	cmps := make([]clientv3.Cmp, 0, len(ids)+1)
	ops := make([]clientv3.Op, 0, opsPerID*len(ids))
	if cmp.Key != nil {
		cmps = append(cmps, cmp)
	}
	for i, id := range ids {
		if spec, ok := d.specOf(id); ok {
			ins[i] = d.prepareInstance(spec)
			ins[i].spec, ins[i].hasSpec = spec, true
		} else {
			ins[i].ref = d.c.System.ReserveRef() // released unstarted
		}
		key := d.k.owner(id)
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
		ops = append(ops, clientv3.OpPut(key, string(encodeOwner(owner{Node: d.c.NodeID, Ref: ins[i].ref})), clientv3.WithLease(ep.ID())))
		if take != nil {
			ops = append(ops, take(id))
		}
	}
	ctx, cancel := context.WithTimeout(ep.Context(), requestTimeout)
	resp, err := d.c.Client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	cancel()
	if err != nil || !resp.Succeeded {
		for _, in := range ins {
			in.abandon()
		}
	}
	if err != nil {
		d.log.Warn("claim failed; will retry", zap.Error(err))
		ds := make([]doubtful, len(ids))
		for i, id := range ids {
			ds[i] = doubtful{ep: ep, r: release{id: id}, claimed: ins[i].ref}
		}
		d.noteDoubts(ds)
		return nil, nil, false
	}
	if resp.Succeeded {
		d.settled(ids...)
	}
	return ins, resp, true
}

// instance is the next instance of a child, prepared before its owner key
// is written, so that messages sent on seeing the key wait for it to
// start. pr is nil when it could not be prepared: err says why, and its
// start fails with it.
type instance struct {
	ref     actor.Ref
	pr      *actor.Prepared
	err     error
	spec    ChildSpec // as the claim read it
	hasSpec bool
}

// prepareInstance prepares an instance of spec's kind, not yet started.
func (d *Distributed) prepareInstance(spec ChildSpec) instance {
	a, err := d.build(spec)
	if err == nil {
		var pr *actor.Prepared
		if pr, err = d.c.System.Prepare(a, actor.Options{ShutdownTimeout: Child{Shutdown: spec.Shutdown}.shutdown()}); err == nil {
			return instance{ref: pr.Ref(), pr: pr}
		}
	}
	return instance{ref: d.c.System.ReserveRef(), err: err}
}

// build makes a behaviour of spec's kind with the factory this node
// registered.
func (d *Distributed) build(spec ChildSpec) (a actor.Actor, err error) {
	f, ok := d.c.Kind(spec.Kind)
	if !ok {
		return nil, fmt.Errorf("%w: kind %q is not registered on node %s", ErrUnknownKind, spec.Kind, d.c.NodeID)
	}
	defer func() {
		if r := recover(); r != nil {
			err = fmt.Errorf("factory for kind %q panicked: %v", spec.Kind, r)
		}
	}()
	if a = f(); a == nil {
		return nil, fmt.Errorf("factory for kind %q returned nil", spec.Kind)
	}
	return a, nil
}

// abandon drops a prepared instance that will not start.
func (in instance) abandon() {
	if in.pr != nil {
		in.pr.Abandon()
	}
}

// takenState returns the handed-off state of id that the claim which
// wrote its owner key at revision rev took: a claim takes the handoff key
// by deleting it in the same transaction, so the key's value just before
// rev is that state (nil: there was none). A compacted revision means the
// state is gone: it is logged and nil returned.
func (d *Distributed) takenState(ep *lease.Epoch, id string, rev int64) ([]byte, error) {
	ctx, cancel := context.WithTimeout(ep.Context(), requestTimeout)
	defer cancel()
	resp, err := d.c.Client.Get(ctx, d.k.handoff(id), clientv3.WithRev(rev-1))
	if errors.Is(err, rpctypes.ErrCompacted) {
		d.log.Error("the state a claim took was compacted away in etcd; the child starts without it",
			zap.String("child", id), zap.Int64("revision", rev-1))
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	if len(resp.Kvs) == 0 {
		return nil, nil
	}
	return resp.Kvs[0].Value, nil
}

// claimBatch claims up to idsPerTxn ids in one transaction, taking their
// handed-off state, falling back to one transaction per id when some
// were taken meanwhile.
func (d *Distributed) claimBatch(ep *lease.Epoch, part []string) {
	// The handed-off state, if any, is taken by deleting it: the deletion
	// returns it.
	ins, resp, ok := d.claimTxn(ep, part, 2, clientv3.Cmp{}, func(id string) clientv3.Op {
		return clientv3.OpDelete(d.k.handoff(id), clientv3.WithPrevKV())
	})
	if !ok {
		return
	}
	if !resp.Succeeded {
		if len(part) > 1 {
			for _, id := range part {
				d.claimBatch(ep, []string{id})
			}
		}
		return
	}
	d.started(ep, part, ins, resp.Header.Revision, func(i int) []byte {
		if kvs := resp.Responses[2*i+1].GetResponseDeleteRange().GetPrevKvs(); len(kvs) > 0 {
			return kvs[0].Value
		}
		return nil
	})
}

// started starts the children whose owner keys a claim created at
// revision token, ids[i] as ins[i] with handoff(i), and releases those
// whose spec is gone.
func (d *Distributed) started(ep *lease.Epoch, ids []string, ins []instance, token int64, handoff func(i int) []byte) {
	var orphans []release
	for i, id := range ids {
		// A spec deleted after the claim read it is found by the next
		// pass, which stops the child and releases it.
		if !ins[i].hasSpec {
			ins[i].abandon()
			orphans = append(orphans, release{id: id})
			continue
		}
		d.start(ep, ins[i].spec, ins[i], token, handoff(i), nil)
	}
	d.releaseAll(ep, orphans)
}

// start starts a child's instance, whose Ref its owner key publishes.
// start runs a claimed child: it is put in d.local at once, and its Init
// runs in a goroutine of its own, so that a slow Init holds up neither
// the reconciler (other children's starts, restarts and takeovers) nor a
// Stop or Drain of the supervisor.
func (d *Distributed) start(ep *lease.Epoch, spec ChildSpec, in instance, token int64, handoff []byte, restarts []time.Time) {
	ref := in.ref
	// A child starts only while its epoch is alive, and is in d.local
	// before it is spawned, so a fence finds it; one that was fenced while
	// it was being spawned is stopped once its Start returns. The hold
	// keeps the lost lease from being revoked (letting another node start
	// the child) until then, or until it exits (it may be killed in its
	// Init, which cannot be stopped).
	release := ep.Hold()
	lc := &localChild{spec: spec, ref: ref, epoch: ep, token: token, restarts: restarts}
	d.mu.Lock()
	if !ep.Alive() {
		d.mu.Unlock()
		release()
		in.abandon()
		return // the owner key goes with the lease
	}
	d.local[spec.ID] = lc
	if spec.Restart == Temporary {
		d.ranOnce[spec.ID] = struct{}{}
	}
	d.mu.Unlock()
	exited := func(down actor.Down) {
		release()
		d.mu.Lock()
		if !lc.started {
			lc.exit = &down
			d.mu.Unlock()
			return
		}
		d.exits = append(d.exits, childExit{id: spec.ID, down: down})
		d.mu.Unlock()
		d.poke()
	}
	if in.err != nil {
		exited(actor.Down{Ref: ref, Reason: in.err}) // never prepared: nothing to watch
		d.startDone(spec.ID, lc, in.err, handoff != nil)
		release()
		return
	}
	// Watched before it starts, so that its exit is reported with its
	// own reason however soon it comes (a message queued before the
	// start may stop it at once), and so is a failed start (its Init's
	// error).
	d.c.System.MonitorFunc(ref, exited)
	// The goroutine is the child's own while its Init runs, as an
	// actor's goroutine is: it ends when Init returns. Stop and Drain do
	// not wait for it: they stop the child (killing it after its shutdown
	// timeout, which ends its messaging), and Go cannot end an Init that
	// does not return.
	go func() {
		defer release()
		err := in.pr.Start(InitArgs{ID: spec.ID, Args: spec.Args, Handoff: handoff, Token: token, ownerKey: d.k.owner(spec.ID), epoch: ep})
		d.startDone(spec.ID, lc, err, handoff != nil)
	}()
}

// startDone reports how the start of the local child id ended, once,
// then lets its exit, if it came meanwhile, through to the reconciler.
func (d *Distributed) startDone(id string, lc *localChild, err error, moved bool) {
	d.mu.Lock()
	stopping, fenced := lc.stopping, lc.fenced
	d.mu.Unlock()
	switch {
	case fenced && err == nil:
		d.stopFenced(id, lc, fmt.Errorf("%w: %w", lease.ErrEpochLost, lc.epoch.Err()))
	case stopping:
		// Detached while it started: whoever detached it stops it.
	case err != nil:
		d.log.Warn("child failed to start", zap.String("child", id), zap.Error(err))
	case moved:
		d.emit(DistEvent{Type: DistChildMoved, ChildID: id, Ref: lc.ref})
	default:
		d.emit(DistEvent{Type: DistChildStarted, ChildID: id, Ref: lc.ref})
	}
	d.mu.Lock()
	lc.started = true
	exit := lc.exit
	if exit != nil {
		d.exits = append(d.exits, childExit{id: id, down: *exit})
	}
	d.mu.Unlock()
	if exit != nil {
		d.poke()
	}
}

// childExited applies the restart type and the intensities to a local
// child that exited on its own.
func (d *Distributed) childExited(ep *lease.Epoch, e childExit) {
	id, down := e.id, e.down
	d.mu.Lock()
	lc := d.local[id]
	if lc != nil && lc.ref == down.Ref {
		delete(d.local, id)
	} else {
		lc = nil
	}
	d.mu.Unlock()
	if lc == nil || lc.stopping {
		return
	}
	d.emit(DistEvent{Type: DistChildStopped, ChildID: id, Ref: down.Ref, Reason: down.Reason})
	spec := lc.spec
	if spec.Restart == Temporary || (spec.Restart == Transient && actor.IsNormal(down.Reason)) {
		d.deleteSpec(id)
		return
	}
	if lc.epoch != ep {
		d.markDirty(id)
		return
	}
	now := time.Now()
	recent := slices.DeleteFunc(lc.restarts, func(t time.Time) bool { return now.Sub(t) > d.o.Intensity.Period })
	recent = append(recent, now)
	if len(recent) > d.o.Intensity.MaxRestarts {
		if d.countFailure(id, down.Reason) {
			return
		}
		recent = nil
	}
	in := d.prepareInstance(spec)
	val := encodeOwner(owner{Node: d.c.NodeID, Ref: in.ref})
	ctx, cancel := context.WithTimeout(ep.Context(), requestTimeout)
	resp, err := d.c.Client.Txn(ctx).
		If(clientv3.Compare(clientv3.LeaseValue(d.k.owner(id)), "=", ep.ID())).
		Then(clientv3.OpPut(d.k.owner(id), string(val), clientv3.WithLease(ep.ID()))).Commit()
	cancel()
	if err != nil || !resp.Succeeded {
		in.abandon()
		if err != nil {
			d.log.Warn("restart failed; will retry", zap.String("child", id), zap.Error(err))
			d.inDoubt(ep, release{id: id})
		}
		d.markDirty(id)
		return
	}
	d.start(ep, spec, in, lc.token, nil, recent) // the owner key stays: so does the token
}

// awaitRing looks at ids again once the ring reflects revision rev.
func (d *Distributed) awaitRing(rev int64, ids ...string) {
	d.mu.Lock()
	defer d.mu.Unlock()
	for _, id := range ids {
		d.waiting[id] = struct{}{}
	}
	d.ringWant = max(d.ringWant, rev)
	if d.ringAwait || d.ctx.Err() != nil {
		return
	}
	d.ringAwait = true
	d.wg.Add(1)
	go func() {
		defer d.wg.Done()
		for {
			d.mu.Lock()
			want := d.ringWant
			d.mu.Unlock()
			if err := d.c.Ring.WaitRevision(d.ctx, want); err != nil {
				d.mu.Lock()
				d.ringAwait = false
				d.mu.Unlock()
				return
			}
			d.mu.Lock()
			if d.ringWant > want {
				d.mu.Unlock()
				continue
			}
			d.ringAwait = false
			for id := range d.waiting {
				d.dirty[id] = struct{}{}
			}
			clear(d.waiting)
			d.mu.Unlock()
			d.poke()
			return
		}
	}()
}

// pinnedBefore reports whether the spec of id was stored before this
// node's present incarnation joined the ring (specs are written once, so
// their revision is their creation's).
func (d *Distributed) pinnedBefore(id string, snap *ring.Snapshot) bool {
	e, ok := d.lookup("specs/", id)
	joined, member := snap.Joined(d.c.NodeID)
	return ok && member && e.ModRevision < joined
}

// countFailure records that a child exceeded its restart intensity here;
// it reports true when that reached the cluster-wide limit and the child
// is now failed.
func (d *Distributed) countFailure(id string, reason error) bool {
	for attempt := 0; attempt < 10; attempt++ {
		ctx, cancel := context.WithTimeout(d.ctx, requestTimeout)
		resp, err := d.c.Client.Get(ctx, d.k.status(id))
		if err != nil {
			cancel()
			return false
		}
		var st status
		var rev int64
		if len(resp.Kvs) > 0 {
			st, _ = decode[status](resp.Kvs[0].Value)
			rev = resp.Kvs[0].ModRevision
		}
		st.Failures++
		st.Reason, st.Node = fmt.Sprint(reason), d.c.NodeID
		st.Failed = st.Failures >= d.o.ClusterMaxRestarts
		val, _ := json.Marshal(st)
		ops := []clientv3.Op{clientv3.OpPut(d.k.status(id), string(val))}
		if st.Failed {
			ops = append(ops, clientv3.OpDelete(d.k.owner(id)))
		}
		tr, err := d.c.Client.Txn(ctx).If(clientv3.Compare(clientv3.ModRevision(d.k.status(id)), "=", rev)).Then(ops...).Commit()
		cancel()
		if err != nil {
			return false
		}
		if tr.Succeeded {
			if st.Failed {
				d.emit(DistEvent{Type: DistChildFailed, ChildID: id, Reason: fmt.Errorf("%w: %d times, last: %v", ErrChildFailed, st.Failures, reason)})
			}
			return st.Failed
		}
	}
	return false
}

func (d *Distributed) markDirty(ids ...string) {
	d.mu.Lock()
	for _, id := range ids {
		d.dirty[id] = struct{}{}
	}
	d.mu.Unlock()
	time.AfterFunc(100*time.Millisecond, d.poke)
}

// release is an owner key to delete, with the state to hand off to the
// next owner, if any.
type release struct {
	id      string
	handoff []byte
	drop    bool // delete the spec too: a temporary child that has run
}

// release deletes this node's owner key of id, with handed-off state when
// there is some, if the key is still bound to the epoch's lease.
func (d *Distributed) release(ep *lease.Epoch, id string, handoff []byte) {
	d.releaseAll(ep, []release{{id: id, handoff: handoff}})
}

// releaseAll releases owner keys as release does, up to idsPerTxn in one
// transaction; when one of them is no longer this epoch's, the others of
// its transaction are released one by one.
func (d *Distributed) releaseAll(ep *lease.Epoch, rs []release) {
	if len(rs) > 0 && d.c.Offline != nil && d.c.Offline() {
		d.log.Debug("node left with etcd unreachable; owner keys go with its lease", zap.Int("children", len(rs)))
		return
	}
	for len(rs) > 0 {
		part := rs[:nextPart(len(rs), idsPerTxn, func(i int) int { return len(rs[i].handoff) })]
		rs = rs[len(part):]
		cmps := make([]clientv3.Cmp, 0, len(part))
		ops := make([]clientv3.Op, 0, 2*len(part))
		for _, r := range part {
			cmps = append(cmps, clientv3.Compare(clientv3.LeaseValue(d.k.owner(r.id)), "=", ep.ID()))
			ops = append(ops, clientv3.OpDelete(d.k.owner(r.id)))
			if r.drop {
				ops = append(ops, clientv3.OpDelete(d.k.spec(r.id)), clientv3.OpDelete(d.k.status(r.id)))
			}
			if r.handoff != nil {
				ops = append(ops, clientv3.OpPut(d.k.handoff(r.id), string(r.handoff)))
			}
		}
		ctx, cancel := context.WithTimeout(ep.Context(), requestTimeout)
		resp, err := d.c.Client.Txn(ctx).If(cmps...).Then(ops...).Commit()
		cancel()
		switch {
		case err != nil && tooLarge(err) && len(part) > 1:
			for _, r := range part {
				d.releaseAll(ep, []release{r})
			}
		case err != nil && tooLarge(err) && part[0].handoff != nil:
			// Only a larger limit than etcd's could carry this state:
			// the child is released without it rather than left
			// stopped and owned.
			d.log.Error("handoff state refused by etcd; the child moves without it",
				zap.String("child", part[0].id), zap.Int("bytes", len(part[0].handoff)), zap.Error(err))
			r := part[0]
			r.handoff = nil
			d.releaseAll(ep, []release{r})
		case err != nil:
			d.log.Warn("release failed; will retry", zap.Int("children", len(part)), zap.String("first", part[0].id), zap.Error(err))
			d.inDoubt(ep, part...)
		case resp.Succeeded:
			d.settled(idsOf(part)...)
		case len(part) > 1:
			for _, r := range part {
				d.releaseAll(ep, []release{r})
			}
		}
	}
}

// releaseQueue group-commits the releases of moving children: while one
// transaction is in flight the next releases queue, and the goroutine
// whose release found no transaction in flight commits them all.
type releaseQueue struct {
	mu      sync.Mutex
	pending []queuedRelease
	busy    bool
}

type queuedRelease struct {
	ep   *lease.Epoch
	r    release
	done chan struct{}
}

// releaseGrouped is release, committed together with the releases other
// goroutines queue meanwhile.
func (d *Distributed) releaseGrouped(ep *lease.Epoch, id string, handoff []byte) {
	q := &d.releases
	done := make(chan struct{})
	q.mu.Lock()
	q.pending = append(q.pending, queuedRelease{ep: ep, r: release{id: id, handoff: handoff}, done: done})
	if q.busy {
		q.mu.Unlock()
		<-done
		return
	}
	q.busy = true
	for len(q.pending) > 0 {
		batch := q.pending
		q.pending = nil
		q.mu.Unlock()
		for len(batch) > 0 {
			// One transaction per epoch: releases queued under an
			// earlier epoch fail their lease comparison, as they would
			// alone.
			ep := batch[0].ep
			var rs []release
			rest := batch[:0]
			var dones []chan struct{}
			for _, b := range batch {
				if b.ep == ep {
					rs = append(rs, b.r)
					dones = append(dones, b.done)
				} else {
					rest = append(rest, b)
				}
			}
			d.releaseAll(ep, rs)
			for _, c := range dones {
				close(c)
			}
			batch = rest
		}
		q.mu.Lock()
	}
	q.busy = false
	q.mu.Unlock()
}

func (d *Distributed) deleteSpec(id string) {
	ctx, cancel := context.WithTimeout(d.ctx, requestTimeout)
	defer cancel()
	if _, err := d.c.Client.Txn(ctx).Then(clientv3.OpDelete(d.k.spec(id)), clientv3.OpDelete(d.k.status(id)),
		clientv3.OpDelete(d.k.handoff(id))).Commit(); err != nil {
		d.log.Warn("delete spec failed", zap.String("child", id), zap.Error(err))
	}
}

// stopLocal stops a local child by its shutdown spec and forgets it.
func (d *Distributed) stopLocal(id string, lc *localChild, reason error) {
	d.detach(id)
	_ = d.c.System.StopTimeout(context.Background(), lc.ref, reason, Child{Shutdown: lc.spec.Shutdown}.shutdown())
	d.emit(DistEvent{Type: DistChildStopped, ChildID: id, Ref: lc.ref, Reason: reason})
}

// moveAll hands off and releases children, all at once.
func (d *Distributed) moveAll(ep *lease.Epoch, ids []string) {
	d.eachDetached(ids, len(ids), func(id string, lc *localChild) { d.move(d.ctx, ep, id, lc) })
}

// detach takes id's child out of the local set, marked as stopped by this
// node (so its exit is not taken for a crash), or returns nil.
func (d *Distributed) detach(id string) *localChild {
	d.mu.Lock()
	defer d.mu.Unlock()
	lc := d.local[id]
	if lc != nil {
		lc.stopping = true
		delete(d.local, id)
	}
	return lc
}

// eachDetached detaches the local children ids and runs fn for each, at
// most limit at a time, and waits for all.
func (d *Distributed) eachDetached(ids []string, limit int, fn func(id string, lc *localChild)) {
	var wg sync.WaitGroup
	sem := make(chan struct{}, max(limit, 1))
	for _, id := range ids {
		lc := d.detach(id)
		if lc == nil {
			continue
		}
		wg.Add(1)
		sem <- struct{}{}
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			fn(id, lc)
		}()
	}
	wg.Wait()
}

// move takes the child's handoff state and stops it in one step in its own
// goroutine, so no message is handled after the state was taken, then
// releases the owner key with the state for the next owner.
func (d *Distributed) move(parent context.Context, ep *lease.Epoch, id string, lc *localChild) {
	ctx, cancel := context.WithTimeout(parent, Child{Shutdown: lc.spec.Shutdown}.shutdown())
	defer cancel()
	// A handler blocked on Stopping returns, so the handoff runs next.
	_ = d.c.System.Interrupt(ctx, lc.ref)
	v, err := d.c.System.Exec(ctx, lc.ref, func(a actor.Actor, c *actor.Context) (any, error) {
		defer c.Stop(ErrMoved)
		if h, ok := a.(Handoffer); ok {
			return h.Handoff(c)
		}
		return nil, nil
	})
	reason := ErrMoved
	if err != nil {
		d.log.Error("handoff failed; the child moves without state", zap.String("child", id), zap.Error(err))
		reason = fmt.Errorf("%w, without state: its handoff failed: %w", ErrMoved, err)
		_ = d.c.System.StopTimeout(ctx, lc.ref, ErrMoved, Child{Shutdown: lc.spec.Shutdown}.shutdown())
	} else {
		_, downs := d.c.System.Monitor(lc.ref)
		select {
		case <-downs:
		case <-ctx.Done():
			_ = d.c.System.Kill(lc.ref)
		}
	}
	state, _ := v.([]byte)
	if len(state) > MaxHandoffBytes {
		d.log.Error("handoff state over MaxHandoffBytes; the child moves without it",
			zap.String("child", id), zap.Int("bytes", len(state)), zap.Int("limit", MaxHandoffBytes))
		reason = fmt.Errorf("%w, without state: its handoff returned %d bytes, over MaxHandoffBytes (%d)", ErrMoved, len(state), MaxHandoffBytes)
		state = nil
	}
	d.releaseGrouped(ep, id, state)
	d.emit(DistEvent{Type: DistChildStopped, ChildID: id, Ref: lc.ref, Reason: reason})
}

// fence stops at once the local children that match because the lease
// epoch they were claimed under is lost: their owner keys die with the
// lease, and another node may start them once etcd has expired it (or the
// session revoked it, which waits for the epoch's holds: see watchEpochs).
// A child gets its shutdown timeout, but no longer than until half the
// lease margin past the epoch's alive-until instant, well before etcd can
// expire the lease; it is abandoned after that.
func (d *Distributed) fence(reason error, match func(*localChild) bool) {
	d.mu.Lock()
	local := make(map[string]*localChild)
	for id, lc := range d.local {
		if match(lc) {
			lc.stopping, lc.fenced = true, true
			local[id] = lc
			delete(d.local, id)
		}
	}
	d.mu.Unlock()
	if len(local) == 0 {
		return
	}
	why := fmt.Errorf("%w: %w", lease.ErrEpochLost, reason)
	var wg sync.WaitGroup
	for id, lc := range local {
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.stopFenced(id, lc, why)
		}()
	}
	wg.Wait()
}

// stopFenced stops a fenced child within the lease budget (see fence).
func (d *Distributed) stopFenced(id string, lc *localChild, why error) {
	timeout := Child{Shutdown: lc.spec.Shutdown}.shutdown()
	if timeout != BrutalKill {
		budget := time.Until(lc.aliveUntil().Add(d.c.Session.Config().Margin / 2))
		timeout = min(timeout, max(budget, lostGrace))
	}
	_ = d.c.System.StopTimeout(context.Background(), lc.ref, why, timeout)
	d.emit(DistEvent{Type: DistChildStopped, ChildID: id, Ref: lc.ref, Reason: why})
}

func newID() string {
	var b [8]byte
	_, _ = rand.Read(b[:])
	return hex.EncodeToString(b[:])
}
