package demonode

import (
	"context"
	"fmt"
	"os"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"

	"github.com/cohort-go/cohort/internal/embedetcd"
)

// FloorResult is what RunEtcdFloor measured.
type FloorResult struct {
	// Stored is how long the spec writes took, Claimed how long until
	// every key was claimed, both from the first write.
	Stored, Claimed time.Duration
}

// RunEtcdFloor measures the etcd work of starting n distributed children
// with nothing else running: one writer stores n spec keys, and claimers
// (one etcd client each, like node processes) watch the specs and claim
// their share, in the batches the distributed supervisor uses: owner keys
// created only if absent, bound to the claimer's lease, if no handoff key
// changed since the revision the claimer saw. It
// is the floor under the start figure of RunBench: what etcd alone takes
// on this machine. endpoints empty means an embedded etcd in this process.
func RunEtcdFloor(ctx context.Context, endpoints []string, n, claimers int) (FloorResult, error) {
	return runEtcdFloor(ctx, endpoints, n, claimers, nil)
}

// runEtcdFloor is RunEtcdFloor with the etcd clients logging to log (nil:
// the etcd client's default, warnings to stderr).
func runEtcdFloor(ctx context.Context, endpoints []string, n, claimers int, log *zap.Logger) (FloorResult, error) {
	var res FloorResult
	if len(endpoints) == 0 {
		dir, err := os.MkdirTemp("", "dsupbench-floor-")
		if err != nil {
			return res, err
		}
		defer os.RemoveAll(dir)
		srv, err := embedetcd.Start(ctx, embedetcd.Config{Dir: dir})
		if err != nil {
			return res, err
		}
		defer srv.Close()
		endpoints = srv.Endpoints()
	}
	dial := func() (*clientv3.Client, error) {
		return clientv3.New(clientv3.Config{Endpoints: endpoints, DialTimeout: 5 * time.Second, Logger: log})
	}
	prefix := fmt.Sprintf("/dsupbench-floor/%d/", time.Now().UnixNano())
	specs, owners, handoffs := prefix+"specs/", prefix+"owners/", prefix+"handoff/"
	ctx, cancel := context.WithCancel(ctx)
	var claimed atomic.Int64
	allClaimed := make(chan struct{})
	errs := make(chan error, 1)
	fail := func(err error) {
		select {
		case errs <- err:
		default:
		}
	}
	var wg sync.WaitGroup
	var clients []*clientv3.Client
	defer func() {
		cancel()
		wg.Wait()
		// Remove the run's keys once the watches have ended, whether the
		// run succeeded or not.
		if len(clients) > 0 {
			dctx, dcancel := context.WithTimeout(context.Background(), 5*time.Second)
			_, _ = clients[0].Delete(dctx, prefix, clientv3.WithPrefix())
			dcancel()
		}
		for _, c := range clients {
			c.Close()
		}
	}()
	for c := range claimers {
		cli, err := dial()
		if err != nil {
			return res, err
		}
		clients = append(clients, cli)
		ls, err := cli.Grant(ctx, 10)
		if err != nil {
			return res, err
		}
		if _, err := cli.KeepAlive(ctx, ls.ID); err != nil {
			return res, err
		}
		watch := cli.Watch(ctx, specs, clientv3.WithPrefix())
		wg.Add(1)
		go func() {
			defer wg.Done()
			sem := make(chan struct{}, claimsInFlightFloor)
			claim := func(ids []string, rev int64) {
				sem <- struct{}{}
				wg.Add(1)
				go func() {
					defer wg.Done()
					defer func() { <-sem }()
					cmps := make([]clientv3.Cmp, 0, len(ids)+1)
					ops := make([]clientv3.Op, 0, len(ids))
					cmps = append(cmps, clientv3.Compare(clientv3.ModRevision(handoffs), "<", rev+1).WithPrefix())
					for _, id := range ids {
						cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(owners+id), "=", 0))
						ops = append(ops, clientv3.OpPut(owners+id, fmt.Sprintf(`{"node":"claimer-%d","ref":{"node":"claimer-%d","id":%d,"inc":1}}`, c, c, claimed.Load()), clientv3.WithLease(ls.ID)))
					}
					resp, err := cli.Txn(ctx).If(cmps...).Then(ops...).Commit()
					if err != nil {
						fail(fmt.Errorf("claim: %w", err))
						return
					}
					if !resp.Succeeded {
						fail(fmt.Errorf("claim: the transaction claiming %d children (%s to %s) did not succeed: one of them already has an owner, or a handoff key changed after revision %d",
							len(ids), ids[0], ids[len(ids)-1], rev))
						return
					}
					if claimed.Add(int64(len(ids))) == int64(n) {
						close(allClaimed)
					}
				}()
			}
			var mine []string
			var rev int64
			for resp := range watch {
				rev = resp.Header.Revision
				for _, ev := range resp.Events {
					if ev.Type != clientv3.EventTypePut {
						continue // the cleanup's deletes, not specs to claim
					}
					id := strings.TrimPrefix(string(ev.Kv.Key), specs)
					if int(id[len(id)-1])%claimers == c {
						mine = append(mine, id)
					}
				}
				for len(mine) >= claimsPerTxnFloor {
					claim(mine[:claimsPerTxnFloor:claimsPerTxnFloor], rev)
					mine = mine[claimsPerTxnFloor:]
				}
				if len(mine) > 0 && len(watch) == 0 {
					claim(mine, rev)
					mine = nil
				}
			}
		}()
	}
	writer, err := dial()
	if err != nil {
		return res, err
	}
	clients = append(clients, writer)
	start := time.Now()
	sem := make(chan struct{}, specsInFlightFloor)
	var writes sync.WaitGroup
	for i := 0; i < n; i += specsPerTxnFloor {
		sem <- struct{}{}
		writes.Add(1)
		go func() {
			defer writes.Done()
			defer func() { <-sem }()
			var cmps []clientv3.Cmp
			var ops []clientv3.Op
			for j := i; j < min(i+specsPerTxnFloor, n); j++ {
				key := fmt.Sprintf("%sc%06d", specs, j)
				cmps = append(cmps, clientv3.Compare(clientv3.CreateRevision(key), "=", 0))
				ops = append(ops, clientv3.OpPut(key, fmt.Sprintf(`{"id":"c%06d","kind":"counter"}`, j)))
			}
			resp, err := writer.Txn(ctx).If(cmps...).Then(ops...).Commit()
			if err != nil {
				fail(fmt.Errorf("store specs: %w", err))
				return
			}
			if !resp.Succeeded {
				fail(fmt.Errorf("store specs: the transaction storing specs c%06d to c%06d did not succeed: one of them exists already under %s",
					i, min(i+specsPerTxnFloor, n)-1, specs))
			}
		}()
	}
	writes.Wait()
	res.Stored = time.Since(start)
	select {
	case <-allClaimed:
		res.Claimed = time.Since(start)
	case err := <-errs:
		return res, err
	case <-ctx.Done():
		return res, ctx.Err()
	}
	return res, nil
}

// The batches of the floor are those of the distributed supervisor:
// StartChildren stores 127 specs per transaction with 8 in flight, and a
// node claims 127 children per transaction (lean claims: no handoff
// taken, held only if no handoff key changed) with 4 in flight.
const (
	specsPerTxnFloor    = 127
	specsInFlightFloor  = 8
	claimsPerTxnFloor   = 127
	claimsInFlightFloor = 4
)
