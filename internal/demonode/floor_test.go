package demonode

import (
	"context"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zaptest/observer"

	"github.com/cohort-go/cohort/internal/etcdtest"
)

// The etcd floor claims every spec once, logs no etcd client warning (its
// cleanup's deletes are not specs to claim), and leaves no key behind.
func TestEtcdFloorIsQuietAndCleansUp(t *testing.T) {
	cl := etcdtest.Start(t)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	core, logs := observer.New(zap.WarnLevel)
	// A few runs: the stray claims the deletes caused raced with the end
	// of the run, so one run could miss them.
	for range 3 {
		res, err := runEtcdFloor(ctx, cl.Endpoints(), 3000, 3, zap.New(core))
		if err != nil {
			t.Fatal(err)
		}
		if res.Claimed <= 0 || res.Stored <= 0 {
			t.Fatalf("result %+v", res)
		}
	}
	for _, e := range logs.All() {
		t.Errorf("etcd client %s: %s %v", e.Level, e.Message, e.ContextMap())
	}
	c := cl.Client(t)
	resp, err := c.Get(ctx, "/dsupbench-floor/", clientv3.WithPrefix(), clientv3.WithCountOnly())
	if err != nil {
		t.Fatal(err)
	}
	if resp.Count != 0 {
		t.Errorf("%d keys left under /dsupbench-floor/", resp.Count)
	}
}
