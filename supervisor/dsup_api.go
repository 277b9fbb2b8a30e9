package supervisor

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/mirror"
	"github.com/cohort-go/cohort/ring"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// prepare validates a spec for starting: an id is generated if empty, a
// temporary child is pinned to the node it is placed on now, and a kind no
// live eligible node offers fails with ErrUnknownKind.
func (d *Distributed) prepare(ctx context.Context, spec ChildSpec) (ChildSpec, error) {
	if err := d.roomFor(1); err != nil {
		return spec, err
	}
	spec, err := d.prepareAt(spec, d.c.Ring.Snapshot())
	if errors.Is(err, ErrUnknownKind) {
		if snap, ok := d.freshRing(ctx); ok {
			spec, err = d.prepareAt(spec, snap)
		}
	}
	return spec, err
}

// freshRing returns the ring's view once it has caught up with etcd as of
// now, and false if that cannot be had within ctx and freshRingWait. A
// spec this node's view cannot place is placed again on it before it is
// refused: a node that started offering the kind a moment ago, before
// this node's view saw it, has it.
func (d *Distributed) freshRing(ctx context.Context) (*ring.Snapshot, bool) {
	ctx, cancel := context.WithTimeout(ctx, freshRingWait)
	defer cancel()
	resp, err := d.c.Client.Get(ctx, ring.MembersPrefix(d.c.Prefix), clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil || d.c.Ring.WaitRevision(ctx, resp.Header.Revision) != nil {
		return nil, false
	}
	return d.c.Ring.Snapshot(), true
}

// freshRingWait bounds freshRing.
const freshRingWait = 5 * time.Second

// roomFor fails with ErrMaxChildren when n more children would exceed
// MaxChildren, and with ErrSupervisorStopped after Stop.
func (d *Distributed) roomFor(n int) error {
	if d.ctx.Err() != nil {
		return ErrSupervisorStopped
	}
	if d.o.MaxChildren <= 0 {
		return nil
	}
	have := 0
	d.m.Range(d.k.root+"specs/", func(string, mirror.Entry) { have++ })
	if have+n > d.o.MaxChildren {
		return fmt.Errorf("%w: %d (%d children, %d more asked)", ErrMaxChildren, d.o.MaxChildren, have, n)
	}
	return nil
}

// prepareAt is prepare without the MaxChildren check, placing on snap.
func (d *Distributed) prepareAt(spec ChildSpec, snap *ring.Snapshot) (ChildSpec, error) {
	if spec.ID == "" {
		spec.ID = newID()
	}
	if err := spec.validate(); err != nil {
		return spec, err
	}
	var node string
	ok := false
	if spec.Node == "" && spec.Restart != Temporary && d.o.Locator == nil {
		// Where it goes is the ring's business once stored; here it only
		// has to have somewhere to go.
		ok = snap.Among(d.filter(spec.Kind)).Len() > 0
	} else {
		node, ok = d.place(spec, snap)
	}
	if !ok {
		if spec.Node != "" {
			return spec, fmt.Errorf("%w: kind %q on pinned node %q (is it up, and does it register the kind?)", ErrUnknownKind, spec.Kind, spec.Node)
		}
		return spec, fmt.Errorf("%w: kind %q (register it with RegisterKind on the nodes that should run it)", ErrUnknownKind, spec.Kind)
	}
	if spec.Restart == Temporary && spec.Node == "" {
		spec.Node = node
	}
	return spec, nil
}

// StartChild stores the spec and waits until the node the ring gives the
// child has claimed it (its owner key holds the instance's Ref), returning
// that Ref and the id. The instance is registered under the Ref before
// the claim publishes it, and its Init runs right after: messages sent to
// the Ref wait for Init, as they would in Erlang. A child whose Init fails
// is restarted as any exit is (a call that waited for that Init fails
// with its error), and once past ClusterMaxRestarts Call and
// WhichChildren report ErrChildFailed; StartChild does not wait for that.
// A child that stops for good before the wait sees it run (a temporary
// child, or a transient one stopping normally) is answered with the Ref
// it ran under, as OTP's start_child answers with a pid that may have
// exited already.
// A child with that id already existing fails with *AlreadyStartedError
// (also ErrChildFailed if it has failed). The spec is durable: it survives
// the loss of any node and a restart of the whole cluster while etcd
// keeps its data. If ctx ends while waiting, the child still starts; only
// the wait is abandoned, with an error wrapping ctx's. After Stop it fails
// with ErrSupervisorStopped.
func (d *Distributed) StartChild(ctx context.Context, spec ChildSpec) (actor.Ref, string, error) {
	spec, err := d.prepare(ctx, spec)
	if err != nil {
		return actor.Ref{}, spec.ID, err
	}
	defer d.watchStart(spec.ID)()
	created, err := d.putSpec(ctx, spec)
	if err != nil {
		return actor.Ref{}, spec.ID, err
	}
	if !created {
		ref, err := d.Whereis(spec.ID)
		if errors.Is(err, ErrChildFailed) {
			return actor.Ref{}, spec.ID, fmt.Errorf("%w: %w: %q; TerminateChild it first to start it again",
				ErrAlreadyStarted, ErrChildFailed, spec.ID)
		}
		return ref, spec.ID, &AlreadyStartedError{ID: spec.ID, Ref: ref}
	}
	ref, err := d.waitRunning(ctx, spec.ID, actor.Ref{})
	return ref, spec.ID, err
}

// FindOrStart returns the child with the spec's id, starting it first (as
// StartChild does, and returning when it is claimed) if no such child
// exists. An existing child is returned whatever its spec. Many nodes may
// call it at once for one id:
// exactly one spec is stored and exactly one instance runs.
func (d *Distributed) FindOrStart(ctx context.Context, spec ChildSpec) (actor.Ref, error) {
	if spec.ID == "" {
		return actor.Ref{}, fmt.Errorf("%w: FindOrStart needs an id", ErrInvalidSpec)
	}
	if ref, err := d.Whereis(spec.ID); err == nil {
		return ref, nil
	}
	spec, err := d.prepare(ctx, spec)
	if err != nil {
		return actor.Ref{}, err
	}
	defer d.watchStart(spec.ID)()
	if _, err := d.putSpec(ctx, spec); err != nil {
		return actor.Ref{}, err
	}
	return d.waitRunning(ctx, spec.ID, actor.Ref{})
}

// putSpec stores the spec if absent; it reports whether it was created.
func (d *Distributed) putSpec(ctx context.Context, spec ChildSpec) (bool, error) {
	val, err := encodeSpec(spec)
	if err != nil {
		return false, err
	}
	key := d.k.spec(spec.ID)
	resp, err := d.c.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
		Then(clientv3.OpPut(key, string(val)), clientv3.OpDelete(d.k.status(spec.ID))).
		Else(clientv3.OpGet(key)).Commit()
	if err != nil {
		return false, fmt.Errorf("supervisor: store spec %q: %w", spec.ID, err)
	}
	// Wait until the view holds the spec (ours, or the one that was there
	// first), so it is seen by what follows. A transaction that failed
	// wrote nothing: its header revision may be one the view of this
	// prefix never reaches, so wait for the existing spec's revision.
	rev := resp.Header.Revision
	if kvs := resp.Responses[0].GetResponseRange().GetKvs(); !resp.Succeeded && len(kvs) > 0 {
		rev = kvs[0].ModRevision
	}
	_ = d.m.WaitRevision(ctx, rev)
	return resp.Succeeded, nil
}

// StartChildren stores many specs at once, in transactions of up to 127
// (and up to 1 MiB of Args) with a few in flight, and returns their ids without waiting for them to
// run: the way to start tens of thousands of children. Specs whose id
// exists are skipped. Every spec is validated before any is stored: an
// invalid one fails the call with nothing stored. If storing fails part
// way, the error is returned with every id (generated ones included), so
// the call can be repeated with the returned ids: those stored are
// skipped.
func (d *Distributed) StartChildren(ctx context.Context, specs []ChildSpec) ([]string, error) {
	if err := d.roomFor(len(specs)); err != nil {
		return nil, err
	}
	snap, fresh := d.c.Ring.Snapshot(), false
	prepared := make([]ChildSpec, len(specs))
	ids := make([]string, len(specs))
	seen := make(map[string]int, len(specs))
	for i, s := range specs {
		if j, dup := seen[s.ID]; dup && s.ID != "" {
			return nil, fmt.Errorf("%w: specs %d and %d have the same id %q", ErrInvalidSpec, j, i, s.ID)
		}
		seen[s.ID] = i
		s, err := d.prepareAt(s, snap)
		if errors.Is(err, ErrUnknownKind) && !fresh {
			if snap, fresh = d.freshRing(ctx); fresh {
				s, err = d.prepareAt(s, snap)
			} else {
				snap, fresh = d.c.Ring.Snapshot(), true
			}
		}
		if err != nil {
			return nil, fmt.Errorf("spec %d: %w", i, err)
		}
		prepared[i], ids[i] = s, s.ID
	}
	const perTxn, inFlight = 127, 8
	var wg sync.WaitGroup
	var mu sync.Mutex
	var first error
	sem := make(chan struct{}, inFlight)
	for len(prepared) > 0 {
		part := prepared[:nextPart(len(prepared), perTxn, func(i int) int { return len(prepared[i].Args) })]
		prepared = prepared[len(part):]
		mu.Lock()
		failed := first != nil
		mu.Unlock()
		if failed {
			break
		}
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer func() { <-sem }()
			if err := d.putSpecs(ctx, part); err != nil {
				mu.Lock()
				if first == nil {
					first = err
				}
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	return ids, first
}

// putSpecs stores specs in one transaction if none of their ids exists,
// or else one by one, skipping those that exist.
func (d *Distributed) putSpecs(ctx context.Context, specs []ChildSpec) error {
	cmps := make([]clientv3.Cmp, 0, len(specs))
	ops := make([]clientv3.Op, 0, len(specs))
	for _, s := range specs {
		val, err := encodeSpec(s)
		if err != nil {
			return err
		}
		cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(d.k.spec(s.ID)), "=", 0))
		ops = append(ops, clientv3.OpPut(d.k.spec(s.ID), string(val)))
	}
	resp, err := d.c.Client.Txn(ctx).If(cmps...).Then(ops...).Commit()
	if err != nil {
		return fmt.Errorf("supervisor: store specs: %w", err)
	}
	if !resp.Succeeded {
		for _, s := range specs {
			if _, err := d.putSpec(ctx, s); err != nil {
				return err
			}
		}
	}
	return nil
}

// waitRunning waits until id has an owner whose Ref is not old. A child
// whose spec is gone was removed, or ran and stopped for good (a
// temporary child, or a transient one that stopped normally): in that
// case the Ref it ran under, if a watchStart saw it claimed, is returned,
// as OTP's start_child returns the pid of a child that has already
// exited.
func (d *Distributed) waitRunning(ctx context.Context, id string, old actor.Ref) (actor.Ref, error) {
	for {
		if d.ctx.Err() != nil {
			return actor.Ref{}, ErrSupervisorStopped
		}
		changed := d.m.Changed()
		if _, ok := d.specOf(id); !ok {
			if ref, ok := d.startedRef(id); ok && ref != old {
				return ref, nil
			}
			// No spec has a malformed id: say so rather than "no such
			// child", off the path of calls to children that exist.
			if err := validateID(id); err != nil {
				return actor.Ref{}, err
			}
			return actor.Ref{}, fmt.Errorf("%w: %q", ErrChildNotFound, id)
		}
		if st := d.statusOf(id); st.Failed {
			return actor.Ref{}, fmt.Errorf("%w: %q: %s", ErrChildFailed, id, st.Reason)
		}
		if o, _, ok := d.ownerOf(id); ok && o.Ref != old {
			return o.Ref, nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return actor.Ref{}, fmt.Errorf("supervisor: waiting for child %q to run (%s): %w", id, d.whyNotRunning(id), ctx.Err())
		case <-d.ctx.Done():
			return actor.Ref{}, ErrSupervisorStopped
		}
	}
}

// whyNotRunning says, as this node sees it, why the child id has no
// instance.
func (d *Distributed) whyNotRunning(id string) string {
	spec, ok := d.specOf(id)
	if !ok {
		return "its spec is gone"
	}
	node, ok := d.place(spec, d.c.Ring.Snapshot())
	switch {
	case !ok && spec.Node != "":
		return fmt.Sprintf("its node %q is down, or does not run the supervisor with kind %q", spec.Node, spec.Kind)
	case !ok:
		return fmt.Sprintf("no live node runs the supervisor with kind %q", spec.Kind)
	default:
		return fmt.Sprintf("it belongs on %s, which has not started it yet", node)
	}
}

// Whereis returns the Ref of the running instance of id, from the node's
// watch-fed view: ErrChildNotFound if no such child, ErrNotRunning if it
// has no instance now.
func (d *Distributed) Whereis(id string) (actor.Ref, error) {
	if d.ctx.Err() != nil {
		return actor.Ref{}, ErrSupervisorStopped
	}
	if _, ok := d.specOf(id); !ok {
		if err := validateID(id); err != nil {
			return actor.Ref{}, err // no spec can have a malformed id
		}
		return actor.Ref{}, fmt.Errorf("%w: %q", ErrChildNotFound, id)
	}
	if o, _, ok := d.ownerOf(id); ok {
		return o.Ref, nil
	}
	if d.statusOf(id).Failed {
		return actor.Ref{}, fmt.Errorf("%w: %q", ErrChildFailed, id)
	}
	return actor.Ref{}, fmt.Errorf("%w: %q", ErrNotRunning, id)
}

// deliver runs send against the child's current instance. A message that
// was certainly not handled — the instance was not there yet, it was
// stopped to move, or its node is leaving and did not read it — is held
// and sent again to the next instance, until ctx ends.
func (d *Distributed) deliver(ctx context.Context, id string, send func(actor.Ref) (any, error)) (any, error) {
	old := actor.Ref{}
	backoff := time.Millisecond
	for {
		if d.ctx.Err() != nil {
			return nil, ErrSupervisorStopped
		}
		ref, err := d.waitRunning(ctx, id, old)
		if err != nil {
			return nil, err
		}
		v, err := send(ref)
		var exit *actor.ExitError
		// Certainly not handled: no such actor (not there yet, or gone),
		// a node whose actor system had stopped, an instance stopped to
		// move, or a message that never reached the node (it is leaving,
		// or down and not yet replaced).
		unread := errors.Is(err, actor.ErrNotDelivered)
		undelivered := unread || errors.Is(err, actor.ErrNotFound) || errors.Is(err, actor.ErrSystemStopped) ||
			(errors.As(err, &exit) && errors.Is(exit.Reason, ErrMoved))
		if !undelivered {
			return v, err
		}
		if o, _, ok := d.ownerOf(id); ok && o.Ref == ref && (unread || errors.Is(err, actor.ErrNotFound)) {
			// Claimed but not spawned yet, the owner's view lags, or its
			// node is unreachable for now.
			select {
			case <-time.After(backoff):
			case <-ctx.Done():
				return nil, fmt.Errorf("supervisor: child %q did not take the message in time (%v): %w", id, err, ctx.Err())
			case <-d.ctx.Done():
				return nil, ErrSupervisorStopped
			}
			backoff = min(2*backoff, 50*time.Millisecond)
			continue
		}
		old = ref
	}
}

// Call calls the child id wherever it runs; calls made while it moves are
// held and delivered to the new instance within their deadline.
func (d *Distributed) Call(ctx context.Context, id string, msg any) (any, error) {
	return d.deliver(ctx, id, func(ref actor.Ref) (any, error) { return d.c.System.Call(ctx, ref, msg) })
}

// Cast casts to the child id wherever it runs, held like Call while it
// moves, and returns once the child has taken msg from its mailbox
// (actor.System.CastTaken), not when it is queued: a cast that an instance
// stopped to move, or a node leaving, did not take is sent again to the
// next instance, so a planned move loses none and none is handled twice.
// It costs a round trip to the child's node; for fire-and-forget casts
// to a Ref, with at-most-once delivery, use the node's Cast. When ctx ends
// first it returns an error wrapping ctx's, and msg may or may not be
// handled; an error wrapping actor.ErrNodeDown alone (the child's node
// failed with msg in flight) says the same.
func (d *Distributed) Cast(ctx context.Context, id string, msg any) error {
	_, err := d.deliver(ctx, id, func(ref actor.Ref) (any, error) { return nil, d.c.System.CastTaken(ctx, ref, msg) })
	return err
}

// Send sends a raw message to the child id's HandleInfo wherever it runs,
// as Cast does (actor.System.SendTaken).
func (d *Distributed) Send(ctx context.Context, id string, msg any) error {
	_, err := d.deliver(ctx, id, func(ref actor.Ref) (any, error) { return nil, d.c.System.SendTaken(ctx, ref, msg) })
	return err
}

// TerminateChild stops the child id wherever it runs and deletes its spec;
// it returns once no instance runs. ErrChildNotFound if there is no such
// child. "No instance runs" is etcd's view: an instance on a node whose
// process is paused (SIGSTOP, a long GC) counts as gone once that node's
// lease expires, and may still act for a moment when the process resumes,
// before it fences itself (see docs/guarantees.md, paused processes, and
// InitArgs.Token).
func (d *Distributed) TerminateChild(ctx context.Context, id string) error {
	if err := validateID(id); err != nil {
		return err
	}
	if d.ctx.Err() != nil {
		return ErrSupervisorStopped
	}
	resp, err := d.c.Client.Txn(ctx).If(clientv3.Compare(clientv3.CreateRevision(d.k.spec(id)), ">", 0)).
		Then(clientv3.OpDelete(d.k.spec(id)), clientv3.OpDelete(d.k.status(id)), clientv3.OpDelete(d.k.handoff(id))).Commit()
	if err != nil {
		return fmt.Errorf("supervisor: terminate %q: %w", id, err)
	}
	if !resp.Succeeded {
		return fmt.Errorf("%w: %q", ErrChildNotFound, id)
	}
	for {
		changed := d.m.Changed()
		if _, _, ok := d.ownerOf(id); !ok && d.m.Revision() >= resp.Header.Revision {
			return nil
		}
		select {
		case <-changed:
		case <-ctx.Done():
			return fmt.Errorf("supervisor: terminate %q: waiting for the instance to stop: %w", id, ctx.Err())
		case <-d.ctx.Done():
			return fmt.Errorf("supervisor: terminate %q: spec deleted, but %w before its instance was seen to stop", id, ErrSupervisorStopped)
		}
	}
}

// TerminateChildRef is TerminateChild for the child whose running
// instance is ref. ErrChildNotFound if no child runs as ref.
func (d *Distributed) TerminateChildRef(ctx context.Context, ref actor.Ref) error {
	var id string
	d.m.Range(d.k.root+"owners/", func(key string, e mirror.Entry) {
		if o, _ := e.Decoded.(decoded[owner]); o.ok && o.v.Ref == ref {
			id, _ = d.k.idOf(key, "owners/")
		}
	})
	if id == "" {
		return fmt.Errorf("%w: no child runs as %v", ErrChildNotFound, ref)
	}
	return d.TerminateChild(ctx, id)
}

// WhichChildren lists every child of the supervisor across the cluster, as
// of one etcd revision (a linearizable read), sorted by id. A child whose
// node died shows as running there until that node's lease expires (about
// one TTL): its owner key goes with the lease.
func (d *Distributed) WhichChildren(ctx context.Context) ([]DistChildInfo, error) {
	if d.ctx.Err() != nil {
		return nil, ErrSupervisorStopped
	}
	resp, err := d.c.Client.Get(ctx, d.k.root, clientv3.WithPrefix())
	if err != nil {
		return nil, fmt.Errorf("supervisor: list children: %w", err)
	}
	byID := map[string]*DistChildInfo{}
	get := func(id string) *DistChildInfo {
		if byID[id] == nil {
			byID[id] = &DistChildInfo{ID: id}
		}
		return byID[id]
	}
	owners := map[string]owner{}
	for _, kv := range resp.Kvs {
		key := string(kv.Key)
		if id, ok := d.k.idOf(key, "specs/"); ok {
			s, _ := decodeSpec(kv.Value)
			c := get(id)
			c.Kind, c.Restart = s.Kind, s.Restart
		} else if id, ok := d.k.idOf(key, "owners/"); ok {
			owners[id], _ = decodeOwner(kv.Value)
		} else if id, ok := d.k.idOf(key, "status/"); ok {
			st, _ := decode[status](kv.Value)
			c := get(id)
			c.Failures, c.Reason = st.Failures, st.Reason
			if st.Failed {
				c.Status = StatusFailed
			}
		}
	}
	out := make([]DistChildInfo, 0, len(byID))
	for id, c := range byID {
		if c.Kind == "" {
			continue // status of a deleted spec
		}
		if o, ok := owners[id]; ok && c.Status != StatusFailed {
			c.Status, c.Node, c.Ref = StatusRunning, o.Node, o.Ref
		} else if c.Status == "" {
			c.Status = StatusPending
		}
		out = append(out, *c)
	}
	slices.SortFunc(out, func(a, b DistChildInfo) int {
		switch {
		case a.ID < b.ID:
			return -1
		case a.ID > b.ID:
			return 1
		}
		return 0
	})
	return out, nil
}

// CountChildren counts the children across the cluster at one revision.
func (d *Distributed) CountChildren(ctx context.Context) (DistCounts, error) {
	cs, err := d.WhichChildren(ctx)
	if err != nil {
		return DistCounts{}, err
	}
	var n DistCounts
	for _, c := range cs {
		n.Specs++
		switch c.Status {
		case StatusRunning:
			n.Running++
		case StatusFailed:
			n.Failed++
		default:
			n.Pending++
		}
	}
	return n, nil
}

// Children returns the Refs of the running children at one revision.
func (d *Distributed) Children(ctx context.Context) (map[string]actor.Ref, error) {
	cs, err := d.WhichChildren(ctx)
	if err != nil {
		return nil, err
	}
	out := make(map[string]actor.Ref, len(cs))
	for _, c := range cs {
		if c.Status == StatusRunning {
			out[c.ID] = c.Ref
		}
	}
	return out, nil
}

// LocalChildren lists the children running on this node.
func (d *Distributed) LocalChildren() []DistChildInfo {
	d.mu.Lock()
	defer d.mu.Unlock()
	out := make([]DistChildInfo, 0, len(d.local))
	for id, lc := range d.local {
		out = append(out, DistChildInfo{ID: id, Kind: lc.spec.Kind, Restart: lc.spec.Restart,
			Status: StatusRunning, Node: d.c.NodeID, Ref: lc.ref})
	}
	slices.SortFunc(out, func(a, b DistChildInfo) int {
		if a.ID < b.ID {
			return -1
		}
		return 1
	})
	return out
}

// NodeFor returns the node the child id belongs on now, as this node sees
// the ring: for a stored spec, among the nodes that offer its kind; for an
// id with no spec yet, among the nodes that run the supervisor and match
// its Role and Nodes options (where a child of a kind they all register
// would go).
func (d *Distributed) NodeFor(id string) (string, bool) {
	snap := d.c.Ring.Snapshot()
	if spec, ok := d.specOf(id); ok {
		return d.place(spec, snap)
	}
	return d.placeAmong(id, d.filter(""), snap)
}

// Mine reports whether the child id belongs on this node.
func (d *Distributed) Mine(id string) bool {
	n, ok := d.NodeFor(id)
	return ok && n == d.c.NodeID
}

// Nodes returns the live members of the cluster.
func (d *Distributed) Nodes() []ring.Member { return d.c.Ring.Nodes() }

// Rebalance moves, now, the children whose ring owner is another node,
// whatever the Balance mode, and returns when this node's pass is done
// (other nodes rebalance when they are asked, or by their own mode). On a
// node drained by Drain there is nothing to do: it returns at once.
func (d *Distributed) Rebalance(ctx context.Context) error {
	done := make(chan struct{})
	d.mu.Lock()
	d.rebalance = append(d.rebalance, done)
	d.full = true
	d.mu.Unlock()
	d.poke()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
		return ctx.Err()
	case <-d.ctx.Done():
		return ErrSupervisorStopped
	}
}

// Drain hands every movable child on this node off to the others (with
// Handoff state) and stops the rest (temporary and pinned children), for a
// graceful leave; a temporary child is not restarted anywhere, and its
// spec is deleted. It first withdraws this node from the supervisor's
// placement, so no child is placed here again; the node may stay in the
// cluster. It returns when every local child has stopped and its owner
// key is released. When ctx ends, a child still handing off is killed and
// moves without its state. The node stays withdrawn: to run children here
// again, Stop the handle and start the supervisor anew
// (Node.DistributedSupervisor returns the drained handle until then).
func (d *Distributed) Drain(ctx context.Context) {
	d.withdraw(ctx)
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	// A pass in progress may still claim and start children; the passes
	// after it start none.
	d.pass.Lock()
	d.pass.Unlock()
	d.mu.Lock()
	ids := make([]string, 0, len(d.local))
	for id := range d.local {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	ep := d.c.Session.Current()
	d.eachDetached(ids, d.o.MoveBatch, func(id string, lc *localChild) {
		if lc.spec.Node != "" || lc.spec.Restart == Temporary {
			d.stopLocal(id, lc, actor.Shutdown)
			d.releaseAll(ep, []release{{id: id, drop: lc.spec.Restart == Temporary}})
			return
		}
		d.move(ctx, ep, id, lc)
	})
}

// Stop stops the supervisor on this node: it withdraws the node from the
// supervisor's placement, its reconciler ends, and its local children stop
// all at once, each within its spec's Shutdown (without handing off state:
// call Drain first for that), and release their owner keys, so the other
// nodes running the supervisor take them over at once. Temporary children
// are not restarted anywhere: their specs are deleted. Calls through this
// node's handle then fail with ErrSupervisorStopped.
func (d *Distributed) Stop(ctx context.Context) {
	d.withdraw(ctx)
	d.mu.Lock()
	d.draining = true
	d.mu.Unlock()
	d.cancel()
	d.wg.Wait()
	d.mu.Lock()
	ids := make([]string, 0, len(d.local))
	for id := range d.local {
		ids = append(ids, id)
	}
	d.mu.Unlock()
	// As OTP stops a dynamic supervisor's children: all at once, each
	// within its own shutdown timeout.
	var mu sync.Mutex
	rs := make([]release, 0, len(ids))
	d.eachDetached(ids, stopConcurrency, func(id string, lc *localChild) {
		d.stopLocal(id, lc, actor.Shutdown)
		mu.Lock()
		rs = append(rs, release{id: id, drop: lc.spec.Restart == Temporary})
		mu.Unlock()
	})
	d.releaseAll(d.c.Session.Current(), rs)
	d.m.Close()
	d.unholdEpoch()
}

// stopConcurrency bounds the children Stop stops at a time.
const stopConcurrency = 1024

// Done is closed once Stop has withdrawn this node from placement and
// begun stopping the local children; from then on the handle's calls fail
// with ErrSupervisorStopped.
func (d *Distributed) Done() <-chan struct{} { return d.ctx.Done() }

// withdraw takes this node out of the supervisor's placement, once: it
// answers the one offer StartDistributed made. It is written even when
// ctx has ended (with a bound of its own), so a Stop or Drain given an
// expired context does not leave the node published.
func (d *Distributed) withdraw(ctx context.Context) {
	d.withdrawn.Do(func() {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), 10*time.Second)
		defer cancel()
		if err := d.c.Offer(ctx, d.name, false); err != nil {
			d.log.Warn("withdrawing this node from placement failed; its children move when its lease ends", zap.Error(err))
		}
	})
}
