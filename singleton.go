package cohort

import (
	"context"
	"errors"
	"fmt"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// Singleton wraps child so that, with the result added to a supervisor on
// every node of the cluster (for instance with Supervise), exactly one node
// runs child at a time, registered globally under child.ID. It is
// supervisor.Singleton with this node's session, registry, key prefix and
// logger; see there for the guarantees and for how the child gets its
// fencing token.
func (n *Node) Singleton(child supervisor.Child) supervisor.Child {
	return n.SingletonWith(child, supervisor.SingletonOptions{})
}

// SingletonWith is Singleton with options: fields left zero among Session,
// Registry, Prefix and Logger are filled in from the node.
func (n *Node) SingletonWith(child supervisor.Child, opts supervisor.SingletonOptions) supervisor.Child {
	if opts.Session == nil {
		opts.Session = n.session
	}
	if opts.Registry == nil {
		opts.Registry = n.reg
	}
	if opts.Prefix == "" {
		opts.Prefix = n.cfg.Prefix
	}
	if opts.Logger == nil {
		opts.Logger = n.log
	}
	return supervisor.Singleton(child, opts)
}

// Supervise starts a root supervisor (one_for_one, default intensity) on
// the node's actor system with children, started in order before it
// returns. Stop stops the node's root supervisors, latest first, before it
// resigns leaderships and revokes the lease, so the singletons among them
// hand over at once. It fails as supervisor.Start does (ErrStartChild,
// ErrInvalidSpec) and with ErrStopped once the node is stopping.
func (n *Node) Supervise(ctx context.Context, children ...supervisor.Child) (*supervisor.Ref, error) {
	n.mu.Lock()
	stopped := n.stopped
	n.mu.Unlock()
	if stopped {
		return nil, ErrStopped
	}
	sup, err := supervisor.Start(ctx, n.sys, supervisor.Spec{Children: children, Logger: n.log})
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		_ = sup.Stop(context.Background())
		return nil, ErrStopped
	}
	n.roots = append(n.roots, sup)
	n.mu.Unlock()
	return sup, nil
}

// stopRoots stops the supervisors started with Supervise, latest first.
func (n *Node) stopRoots(ctx context.Context) error {
	n.mu.Lock()
	roots := n.roots
	n.roots = nil
	n.mu.Unlock()
	var errs []error
	for i := len(roots) - 1; i >= 0; i-- {
		if err := roots[i].Stop(ctx); err != nil && !errors.Is(err, actor.ErrNotFound) {
			errs = append(errs, fmt.Errorf("stop root supervisor: %w", err))
		}
	}
	return joinErrors(errs)
}
