package registry

import (
	"context"
	"fmt"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
)

// A name registered for an actor of the node's own system (Config.Actors)
// is bound to the actor as well as to the lease: a monitor releases it when
// the actor exits, with a transaction that deletes the key only while it
// still holds that registration, so a name registered again meanwhile, or
// gone with its lease, is left alone.

// binding is the registration of a name for a local actor, as written.
// lease and mon are guarded by Registry.bmu: a rejoin moves the name to
// the next epoch's lease.
type binding struct {
	data  string
	lease clientv3.LeaseID
	mon   actor.MonitorRef
}

// local reports whether ref is an actor of the node's own system.
func (r *Registry) local(ref actor.Ref) bool {
	return r.cfg.Actors != nil && ref.Node == r.cfg.Actors.Node()
}

// checkAlive refuses a Ref of the node's own system that is not alive: a
// name would point at an actor that can never answer.
func (r *Registry) checkAlive(ref actor.Ref) error {
	if r.local(ref) && !r.cfg.Actors.Alive(ref) {
		return fmt.Errorf("%w: %v is not alive (register a running actor, from its Init or after Spawn)", actor.ErrNotFound, ref)
	}
	return nil
}

// bind follows ref, registered under name as data under lease, if it is
// an actor of this node: the name is released when it exits.
func (r *Registry) bind(name string, ref actor.Ref, data string, lease clientv3.LeaseID) {
	r.unbind(name)
	if !r.local(ref) {
		return
	}
	b := &binding{data: data, lease: lease}
	r.bmu.Lock()
	r.bound[name] = b
	r.bmu.Unlock()
	m := r.cfg.Actors.MonitorFunc(ref, func(actor.Down) { r.exited(name, b) })
	r.bmu.Lock()
	b.mon = m
	r.bmu.Unlock()
}

// unbind stops following the actor registered under name, if any.
func (r *Registry) unbind(name string) {
	r.bmu.Lock()
	b := r.bound[name]
	delete(r.bound, name)
	var m actor.MonitorRef
	if b != nil {
		m = b.mon
	}
	r.bmu.Unlock()
	if b != nil {
		r.cfg.Actors.Demonitor(m)
	}
}

// exited releases name, registered as b, after its actor exited. It runs
// on the monitor's callback, so the release runs in a goroutine of its
// own, which Close waits for.
func (r *Registry) exited(name string, b *binding) {
	r.bmu.Lock()
	if r.bound[name] == b {
		delete(r.bound, name)
	}
	r.bmu.Unlock()
	if r.cfg.Actors.Stopped() {
		// The node is going: its lease, revoked or expiring, takes all
		// its names at once.
		return
	}
	r.mu.RLock()
	defer r.mu.RUnlock()
	if r.closed.Load() {
		return
	}
	r.wg.Add(1)
	go func() {
		defer r.wg.Done()
		r.releaseExited(name, b)
	}()
}

// releaseExited deletes name's key while it holds b, retrying while etcd
// does not answer, until the registry closes. Once the key holds another
// registration, or is gone, there is nothing to do.
func (r *Registry) releaseExited(name string, b *binding) {
	key := r.key(name)
	r.bmu.Lock()
	lease := b.lease
	r.bmu.Unlock()
	for wait := 100 * time.Millisecond; ; wait = min(2*wait, 5*time.Second) {
		ctx, cancel := context.WithTimeout(r.ctx, 5*time.Second)
		resp, err := r.client.Txn(ctx).
			If(clientv3.Compare(clientv3.Value(key), "=", b.data),
				clientv3.Compare(clientv3.LeaseValue(key), "=", lease)).
			Then(clientv3.OpDelete(key)).
			Commit()
		cancel()
		if err == nil {
			if resp.Succeeded {
				r.noteWrite(resp.Header.Revision)
				r.log.Debug("name released: its actor exited", zap.String("name", name))
			}
			return
		}
		r.log.Warn("releasing the name of an actor that exited failed; will retry", zap.String("name", name), zap.Error(err))
		select {
		case <-r.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}

// rebind registers again, under the epoch e that follows a lost one, the
// names of this node's actors that were bound to the lost lease and still
// run: a node that rejoins the cluster gets its actors' names back, unless
// another node took one meanwhile (then the name is theirs, and this
// actor's binding ends). A name etcd does not answer for is tried again
// while e lives.
func (r *Registry) rebind(lost clientv3.LeaseID, e *lease.Epoch) {
	r.bmu.Lock()
	todo := make(map[string]*binding)
	for name, b := range r.bound {
		if b.lease == lost {
			todo[name] = b
		}
	}
	r.bmu.Unlock()
	for wait := 100 * time.Millisecond; len(todo) > 0; wait = min(2*wait, 5*time.Second) {
		for name, b := range todo {
			key := r.key(name)
			ctx, cancel := context.WithTimeout(e.Context(), 5*time.Second)
			resp, err := r.client.Txn(ctx).
				If(clientv3.Compare(clientv3.CreateRevision(key), "=", 0)).
				Then(clientv3.OpPut(key, b.data, clientv3.WithLease(e.ID()))).
				Commit()
			cancel()
			if err != nil {
				continue
			}
			delete(todo, name)
			r.bmu.Lock()
			current := r.bound[name] == b
			if current && resp.Succeeded {
				b.lease = e.ID()
			}
			r.bmu.Unlock()
			switch {
			case resp.Succeeded && current:
				r.noteWrite(resp.Header.Revision)
				r.log.Info("name registered again after the node rejoined", zap.String("name", name))
			case resp.Succeeded:
				// Its actor exited, or the name was unbound, meanwhile.
				r.releaseLost(e.Context(), key, e.ID())
			case current:
				r.unbind(name)
				r.log.Warn("name taken by another node while this one was out of the cluster; its actor no longer holds it",
					zap.String("name", name))
			}
		}
		if len(todo) == 0 {
			return
		}
		select {
		case <-e.Lost():
			return
		case <-r.ctx.Done():
			return
		case <-time.After(wait):
		}
	}
}
