package supervisor

import (
	"context"
	"errors"
	"fmt"
	"sync"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/lease"
)

// Term is one tenure of a singleton on this node: from the moment the node
// won the singleton's election until its leadership ended. The child a
// Singleton runs gets its Term through the context passed to its
// StartFunc (see TermFrom), or as the argument of the factory given to
// Fenced or NestedFenced.
//
// The Term's fencing token grows with every new term of the singleton,
// on any node. Guard writes with it: a write made through Write, Txn or
// with Guard in its If is rejected by etcd once the term has ended, even
// if the holder does not know yet (a paused process, a stuck goroutine).
// For stores other than etcd, pass Token along and have the store refuse
// a token lower than the highest it has seen.
//
// A Term is safe for concurrent use.
type Term struct {
	id   string
	node string
	l    *election.Leadership

	ctx    context.Context
	cancel context.CancelCauseFunc
	once   sync.Once
	unhold func() // releases the hold on the term's epoch
}

// newTerm starts a term of leadership l. It holds l's lease epoch (see
// lease.Epoch.Hold) until release: should the epoch be lost, its lease is
// not revoked early, letting another node's term begin, before this
// term's child has stopped.
func newTerm(id, node string, l *election.Leadership) *Term {
	ctx, cancel := context.WithCancelCause(context.Background())
	return &Term{id: id, node: node, l: l, ctx: ctx, cancel: cancel, unhold: l.Epoch().Hold()}
}

// release releases the term's hold on its epoch, once the child of the
// term has stopped. It may be called more than once.
func (t *Term) release() { t.unhold() }

// end cancels the term's context with the reason it ended.
func (t *Term) end() {
	t.once.Do(func() {
		err := t.Err()
		if err == nil {
			err = ErrLeadershipLost
		}
		t.cancel(err)
	})
}

// ID is the singleton's id: the id of the wrapped child spec.
func (t *Term) ID() string { return t.id }

// Node is the id of the node the term runs on (the actor system's node).
func (t *Term) Node() string { return t.node }

// Token is the term's fencing token: the create revision of its leader
// key. Any later term of the same singleton, on any node, has a larger
// token.
func (t *Term) Token() int64 { return t.l.Rev() }

// Epoch is the lease epoch the term runs under.
func (t *Term) Epoch() *lease.Epoch { return t.l.Epoch() }

// Guard returns the compare that holds only while this term's leader key
// exists: put it in the If of an etcd transaction, and the transaction's
// Then runs only if the term is still current when etcd commits it.
func (t *Term) Guard() clientv3.Cmp { return t.l.Guard() }

// Txn returns an etcd transaction whose If holds Guard followed by cmps.
// Add the operations with Then (and Else) and check Succeeded, which is
// false when the term has ended or one of cmps failed.
func (t *Term) Txn(ctx context.Context, cmps ...clientv3.Cmp) clientv3.Txn {
	return t.l.FencedTxn(ctx, cmps...)
}

// Write applies ops to etcd atomically, if and only if the term is still
// current when etcd commits them. It fails with an error wrapping ErrFenced
// (and no op applied) when the term has ended, with the request's error
// when etcd cannot be reached (the ops may then have been applied or not,
// but never after the term ended), and with ctx's error when ctx ends.
func (t *Term) Write(ctx context.Context, ops ...clientv3.Op) (*clientv3.TxnResponse, error) {
	resp, err := t.l.FencedTxn(ctx).Then(ops...).Commit()
	if err != nil {
		return nil, fmt.Errorf("singleton %q: fenced write with token %d: %w", t.id, t.Token(), err)
	}
	if !resp.Succeeded {
		return resp, fmt.Errorf("singleton %q: write with token %d: %w", t.id, t.Token(), ErrFenced)
	}
	return resp, nil
}

// Alive reports, without asking etcd, whether the term is still current:
// its leadership has not ended and its lease epoch is proven alive on this
// node's monotonic clock. A holder that checks Alive before each unit of
// work does no work after a pause that outlived its lease: once Alive
// reports false it never reports true again. It is not a substitute for
// guarding writes (a pause can fall between the check and the write).
func (t *Term) Alive() bool { return t.l.Err() == nil && t.l.Epoch().Alive() }

// Done returns a channel that is closed when the term's leadership ends.
func (t *Term) Done() <-chan struct{} { return t.l.Done() }

// Err is nil while the term lasts; afterwards it wraps ErrLeadershipLost
// and the election's reason (election.ErrResigned on a graceful stop,
// election.ErrEpochLost with the lease's reason on lease loss,
// election.ErrLeaderKeyLost when the key was deleted from outside).
func (t *Term) Err() error {
	if err := t.l.Err(); err != nil {
		return fmt.Errorf("%w: %w", ErrLeadershipLost, err)
	}
	return nil
}

// Context returns a context canceled when the term ends, with the term's
// Err as its cause. It is also the context a Singleton passes to its
// child's StartFunc. Derive from it the context of work that must not
// outlive the term.
func (t *Term) Context() context.Context { return t.ctx }

// String renders the term for logs.
func (t *Term) String() string {
	return fmt.Sprintf("singleton %q term %d on %s", t.id, t.Token(), t.node)
}

type termKey struct{}

// withTerm returns the term's context carrying the term.
func withTerm(t *Term) context.Context { return context.WithValue(t.ctx, termKey{}, t) }

// TermFrom returns the singleton term carried by ctx: the context a
// Singleton passes to its child's StartFunc carries it. It reports false
// for any other context, an actor's Context() among them: an actor gets
// its term through Fenced (or NestedFenced), which hand it to the
// function that makes the actor.
func TermFrom(ctx context.Context) (*Term, bool) {
	t, ok := ctx.Value(termKey{}).(*Term)
	return t, ok && t != nil
}

// Fenced returns a Child, for use as the child of Singleton, that spawns
// the actor newActor makes for the current term with opts, so the actor
// can keep the Term (its fencing token and write guard) in its fields. A
// restart within the same term gets the same Term. Started anywhere but
// directly under a Singleton, it fails with an error wrapping ErrNoTerm.
func Fenced(id string, newActor func(t *Term) actor.Actor, opts actor.Options) Child {
	return Child{ID: id, Start: func(ctx context.Context, sys *actor.System, extra []any) (actor.Ref, error) {
		t, err := termOf(ctx, id, newActor == nil)
		if err != nil {
			return actor.Ref{}, err
		}
		o := opts
		if len(extra) > 0 {
			o.Args = append(append([]any(nil), extra...), opts.Args)
		}
		return sys.Spawn(ctx, newActor(t), o)
	}}
}

// NestedFenced returns a supervisor Child, for use as the child of
// Singleton, whose spec is built by build from the current term at every
// start, so the workers of a whole subtree can capture the Term. Started
// anywhere but directly under a Singleton, it fails with an error
// wrapping ErrNoTerm.
func NestedFenced(id string, build func(t *Term) Spec) Child {
	return Child{ID: id, Kind: Supervisor, Start: func(ctx context.Context, sys *actor.System, _ []any) (actor.Ref, error) {
		t, err := termOf(ctx, id, build == nil)
		if err != nil {
			return actor.Ref{}, err
		}
		s, err := Start(ctx, sys, build(t))
		if err != nil {
			return actor.Ref{}, err
		}
		return s.Ref(), nil
	}}
}

func termOf(ctx context.Context, id string, nilFactory bool) (*Term, error) {
	if nilFactory {
		return nil, fmt.Errorf("%w: child %q has a nil factory", ErrInvalidSpec, id)
	}
	t, ok := TermFrom(ctx)
	if !ok {
		return nil, fmt.Errorf("%w: child %q must be started by a Singleton", ErrNoTerm, id)
	}
	if err := t.Err(); err != nil {
		return nil, err
	}
	return t, nil
}

// isEpochLoss reports whether a term ended because its lease epoch was
// lost.
func isEpochLoss(err error) bool { return errors.Is(err, election.ErrEpochLost) }
