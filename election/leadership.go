package election

import (
	"context"
	"errors"
	"fmt"
	"sync"
	"sync/atomic"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	"go.etcd.io/etcd/api/v3/v3rpc/rpctypes"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.etcd.io/etcd/client/v3/concurrency"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/lease"
)

// Leadership is one term of this node as leader of an election, from the
// return of Campaign until Done is closed. It is safe for concurrent use.
type Leadership struct {
	el    *Election
	epoch *lease.Epoch
	key   string
	rev   int64

	opMu  sync.Mutex // serializes Proclaim and Resign on ce
	ce    *concurrency.Election
	value string

	ctx         context.Context // canceled by halt and when the epoch is lost
	cancel      context.CancelFunc
	halted      atomic.Bool
	done        chan struct{}
	monitorDone chan struct{}

	mu  sync.Mutex
	err error

	releaseOnce sync.Once
}

// release lets the Election campaign again, once per term.
func (l *Leadership) release() { l.releaseOnce.Do(l.el.release) }

// Rev is the fencing token of the term: the create revision of the leader
// key. A later term of any node has a larger token.
func (l *Leadership) Rev() int64 { return l.rev }

// Key is the leader key of the term.
func (l *Leadership) Key() string { return l.key }

// Epoch is the lease epoch the term runs under.
func (l *Leadership) Epoch() *lease.Epoch { return l.epoch }

// Guard returns the compare that holds only while this term's leader key
// exists with its create revision: put it in the If of a transaction and
// the transaction's Then runs only if the key still leads, as judged by
// etcd at commit time. Once the key is gone (after Resign, or when etcd
// removes it with the lease of a lost epoch) every write guarded by this
// term's token is rejected (the transaction does not succeed), whatever
// the holder believes; no other term can start before that.
func (l *Leadership) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(l.key), "=", l.rev)
}

// FencedTxn returns a transaction whose If holds Guard() followed by cmps.
// Add the writes with Then (and Else); check TxnResponse.Succeeded, which
// is false when the term has ended or one of cmps failed.
func (l *Leadership) FencedTxn(ctx context.Context, cmps ...clientv3.Cmp) clientv3.Txn {
	return l.el.client.Txn(ctx).If(append([]clientv3.Cmp{l.Guard()}, cmps...)...)
}

// Done returns a channel that is closed when the term ends; Err then
// tells why. The holder must stop acting as leader when it is closed.
func (l *Leadership) Done() <-chan struct{} { return l.done }

// Err is nil while the term lasts; afterwards it wraps ErrResigned,
// ErrEpochLost (with the epoch's reason, lease.ErrClosed when the node
// stopped) or ErrLeaderKeyLost.
func (l *Leadership) Err() error {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.err
}

// Value is what the leader campaigned with or last proclaimed.
func (l *Leadership) Value() string {
	l.opMu.Lock()
	defer l.opMu.Unlock()
	return l.value
}

// Proclaim replaces the leader's value without a new election. It fails
// with an error wrapping ErrNotLeader when the term has ended or the key is
// gone, and with ctx's error when ctx ends (the value may then have been
// written or not).
func (l *Leadership) Proclaim(ctx context.Context, value string) error {
	l.opMu.Lock()
	defer l.opMu.Unlock()
	if err := l.Err(); err != nil {
		return fmt.Errorf("election %q: proclaim: %w: %w", l.el.name, ErrNotLeader, err)
	}
	if err := l.ce.Proclaim(ctx, value); err != nil {
		if errors.Is(err, concurrency.ErrElectionNotLeader) {
			return fmt.Errorf("election %q: proclaim: %w", l.el.name, ErrNotLeader)
		}
		return fmt.Errorf("election %q: proclaim: %w", l.el.name, err)
	}
	l.value = value
	return nil
}

// Resign ends the term (Done closes before anything else happens) and then
// deletes the leader key, so the next candidate leads at once. It returns
// the delete's error, ctx's error when ctx ends first; the key then goes
// when the lease does. Resign after the term ended for another reason
// still deletes the key if it exists, and is otherwise a no-op.
func (l *Leadership) Resign(ctx context.Context) error {
	l.end(ErrResigned)
	l.halt()
	defer l.release()
	l.opMu.Lock()
	defer l.opMu.Unlock()
	_, err := l.el.client.Txn(ctx).
		If(l.Guard()).
		Then(clientv3.OpDelete(l.key)).
		Commit()
	if err != nil {
		return fmt.Errorf("election %q: resign: %w", l.el.name, err)
	}
	return nil
}

// end records reason as the end of the term and closes Done; only the
// first call has an effect.
func (l *Leadership) end(reason error) {
	l.mu.Lock()
	if l.err != nil {
		l.mu.Unlock()
		return
	}
	l.err = reason
	l.mu.Unlock()
	close(l.done)
	l.el.log.Info("leadership ended", zap.String("key", l.key), zap.Int64("rev", l.rev), zap.Error(reason))
}

// halt stops the monitor and waits for it.
func (l *Leadership) halt() {
	l.halted.Store(true)
	l.cancel()
	<-l.monitorDone
}

// monitor ends the term when the epoch is lost or the leader key is
// deleted, watching the key from revision rev+1 and watching anew when the
// watch breaks, until halt. Every call it makes runs under l.ctx, which
// the epoch's loss cancels, so no blocked call can delay telling the
// holder.
func (l *Leadership) monitor(rev int64) {
	defer close(l.monitorDone)
	backoff := minBackoff
	for {
		last, reason := l.watchKey(rev)
		if l.halted.Load() {
			return
		}
		if l.epoch.Err() != nil {
			reason = l.epochLost()
		}
		if reason != nil {
			l.release()
			l.end(reason)
			return
		}
		if last > rev {
			rev, backoff = last, minBackoff
		}
		t := time.NewTimer(backoff)
		select {
		case <-l.ctx.Done():
		case <-t.C:
		}
		t.Stop()
		backoff = min(2*backoff, maxBackoff)
	}
}

func (l *Leadership) epochLost() error {
	return fmt.Errorf("%w: %w", ErrEpochLost, l.epoch.Err())
}

// watchKey follows the leader key from rev+1. It returns the reason the
// term ended, or nil and the last revision seen when the watch broke or
// halt was called.
func (l *Leadership) watchKey(rev int64) (int64, error) {
	ctx, cancel := context.WithCancel(l.ctx)
	defer cancel()
	wch := l.el.client.Watch(ctx, l.key, clientv3.WithRev(rev+1))
	for {
		select {
		case <-l.ctx.Done():
			return rev, nil
		case wr, ok := <-wch:
			if !ok {
				return rev, nil
			}
			if wr.CompactRevision != 0 || errors.Is(wr.Err(), rpctypes.ErrCompacted) {
				return l.checkKey(ctx)
			}
			if wr.Err() != nil {
				l.el.log.Debug("leader key watch broke; watching anew", zap.Error(wr.Err()))
				return rev, nil
			}
			for _, ev := range wr.Events {
				if ev.Type == mvccpb.DELETE {
					return rev, fmt.Errorf("%w: %s at revision %d", ErrLeaderKeyLost, l.key, ev.Kv.ModRevision)
				}
				rev = ev.Kv.ModRevision
			}
		}
	}
}

// checkKey reads the leader key after the watch fell behind a compaction.
func (l *Leadership) checkKey(ctx context.Context) (int64, error) {
	ctx, cancel := context.WithTimeout(ctx, l.epoch.TTL())
	defer cancel()
	resp, err := l.el.client.Get(ctx, l.key)
	if err != nil {
		return 0, nil
	}
	if len(resp.Kvs) == 0 || resp.Kvs[0].CreateRevision != l.rev {
		return 0, fmt.Errorf("%w: %s gone at revision %d", ErrLeaderKeyLost, l.key, resp.Header.Revision)
	}
	return resp.Header.Revision, nil
}
