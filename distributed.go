package cohort

import (
	"context"
	"fmt"
	"maps"
	"slices"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
	clientv3 "go.etcd.io/etcd/client/v3"
)

// RegisterKind registers a factory under a kind name on this node and
// publishes the kind in the node's member key, so distributed supervisors
// place children of that kind here. Register the same kinds on every node
// that should run them. Registering a kind again replaces its factory
// for the children started from then on. A kind is a valid actor name
// (actor.ValidateName: non-empty, at most actor.MaxNameLen bytes of UTF-8,
// no control characters). It fails with an error wrapping ErrInvalidConfig on a kind
// that is not, or a nil factory, and with ErrStopped on a stopped node.
func (n *Node) RegisterKind(kind string, f supervisor.Factory) error {
	if err := actor.ValidateName(kind); err != nil {
		return fmt.Errorf("%w: RegisterKind: kind: %w", ErrInvalidConfig, err)
	}
	if f == nil {
		return fmt.Errorf("%w: RegisterKind %q needs a factory, got nil", ErrInvalidConfig, kind)
	}
	if n.isStopped() {
		return ErrStopped
	}
	n.mu.Lock()
	if n.kinds == nil {
		n.kinds = make(map[string]supervisor.Factory)
	}
	n.kinds[kind] = f
	kinds := make([]string, 0, len(n.kinds))
	for k := range n.kinds {
		kinds = append(kinds, k)
	}
	slices.Sort(kinds)
	n.mu.Unlock()
	return n.updateMember(context.Background(), func(m *ring.Member) { m.Kinds = mergeSorted(m.Kinds, kinds) })
}

// updateMember changes the node's member record and re-puts its key under
// the current lease epoch.
func (n *Node) updateMember(ctx context.Context, change func(*ring.Member)) error {
	n.mu.Lock()
	change(&n.member)
	n.mu.Unlock()
	ctx, cancel := context.WithTimeout(ctx, n.cfg.DialTimeout)
	defer cancel()
	stop := context.AfterFunc(n.ctx, cancel)
	defer stop()
	if err := n.claimMember(ctx, n.session.Current()); err != nil {
		return err
	}
	// Return once this node's own ring shows the change, so what the
	// caller does next (start a child of a new kind, say) sees it.
	resp, err := n.client.Get(ctx, ring.MemberKey(n.cfg.Prefix, n.cfg.NodeID), clientv3.WithCountOnly())
	if err != nil {
		return fmt.Errorf("cohort: member key: %w", err)
	}
	return n.ring.WaitRevision(ctx, resp.Header.Revision)
}

func (n *Node) kind(name string) (supervisor.Factory, bool) {
	n.mu.Lock()
	defer n.mu.Unlock()
	f, ok := n.kinds[name]
	return f, ok
}

// DistributedSupervisor returns the distributed supervisor of that name on
// this node, starting it on first use with opts (later calls ignore opts).
// Start it on every node that should take part, with the same options.
func (n *Node) DistributedSupervisor(ctx context.Context, name string, opts supervisor.DistributedOptions) (*supervisor.Distributed, error) {
	// One start at a time: a second instance of a name never runs, even
	// briefly.
	n.dsupMu.Lock()
	defer n.dsupMu.Unlock()
	n.mu.Lock()
	if n.stopped {
		n.mu.Unlock()
		return nil, ErrStopped
	}
	if d, ok := n.dsups[name]; ok && !stopped(d) {
		n.mu.Unlock()
		return d, nil
	}
	n.mu.Unlock()
	d, err := supervisor.StartDistributed(ctx, supervisor.Cluster{
		NodeID: n.cfg.NodeID, Prefix: n.cfg.Prefix, Client: n.client, Session: n.session,
		Ring: n.ring, System: n.sys, Kind: n.kind, Offer: n.offerSupervisor, Offline: n.offline, Logger: n.log,
	}, name, opts)
	if err != nil {
		return nil, err
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.dsups == nil {
		n.dsups = make(map[string]*supervisor.Distributed)
	}
	n.dsups[name] = d
	return d, nil
}

func stopped(d *supervisor.Distributed) bool {
	select {
	case <-d.Done():
		return true
	default:
		return false
	}
}

// offerSupervisor publishes or withdraws, in the member record, that this
// node runs the distributed supervisor sup. Offers are counted: the
// record lists sup while an instance that offered it has not withdrawn,
// so a stopping instance does not withdraw the one that replaces it. A
// node that has left the ring (the end of Stop) changes the record, but
// does not put its key again.
func (n *Node) offerSupervisor(ctx context.Context, sup string, on bool) error {
	change := func(m *ring.Member) {
		if n.offers == nil {
			n.offers = make(map[string]int)
		}
		if on {
			n.offers[sup]++
		} else if n.offers[sup]--; n.offers[sup] <= 0 {
			delete(n.offers, sup)
		}
		m.Supervisors = slices.Sorted(maps.Keys(n.offers))
	}
	n.mu.Lock()
	if n.left {
		change(&n.member)
		n.mu.Unlock()
		return nil
	}
	n.mu.Unlock()
	return n.updateMember(ctx, change)
}

// offline reports that Stop found etcd unreachable and left without it.
func (n *Node) offline() bool {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.etcdGone
}

func mergeSorted(a, b []string) []string {
	out := append(slices.Clone(a), b...)
	slices.Sort(out)
	return slices.Compact(out)
}
