package cohort_test

import (
	"context"
	"fmt"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/ring"
)

// BenchmarkNodeDownDetection measures the time from a node's death (its
// connection to etcd cut, so its keepalives stop, as when its process is
// killed) to the node-down event on another node's ring, for two lease
// TTLs. The goal is at most TTL + 0.5 s.
func BenchmarkNodeDownDetection(b *testing.B) {
	for _, ttl := range []time.Duration{2 * time.Second, 5 * time.Second} {
		b.Run(fmt.Sprintf("ttl=%v", ttl), func(b *testing.B) {
			cl := etcdtest.Start(b)
			var total time.Duration
			for i := 0; i < b.N; i++ {
				proxy := etcdtest.NewProxy(b, cl.Endpoints()[0])
				victim := startNode(b, cohort.Config{NodeID: fmt.Sprintf("victim-%d", i), Endpoints: []string{proxy.Addr()}, LeaseTTL: ttl})
				watcher := startNode(b, cohort.Config{NodeID: fmt.Sprintf("watcher-%d", i), Endpoints: cl.Endpoints(), LeaseTTL: ttl})
				waitMembers(b, watcher, victim.ID(), watcher.ID())
				changes, cancel := watcher.Ring().Subscribe()
				// Let the victim renew once, so it dies at a random point of
				// its keepalive cycle rather than just after its grant.
				time.Sleep(ttl / 2)
				proxy.Cut()
				died := time.Now()
				total += waitLeft(b, changes, victim.ID(), 3*ttl).Sub(died)
				cancel()
				watcher.Stop(context.Background())
				// The victim is cut off: its Stop gives up on etcd quickly.
				quick, stop := context.WithTimeout(context.Background(), 100*time.Millisecond)
				victim.Stop(quick)
				stop()
			}
			b.ReportMetric(float64(total.Milliseconds())/float64(b.N), "ms/detect")
			b.ReportMetric(float64(ttl.Milliseconds()), "ms-ttl")
		})
	}
}

func waitLeft(b *testing.B, changes <-chan ring.Change, id string, limit time.Duration) time.Time {
	timeout := time.After(limit)
	for {
		select {
		case c := <-changes:
			for _, m := range c.Left {
				if m.ID == id {
					return time.Now()
				}
			}
		case <-timeout:
			b.Fatalf("node %s not seen down within %v", id, limit)
		}
	}
}

// BenchmarkNodeStartStop measures a node's start (client, lease, member
// key, ring, registry) and graceful stop against a running etcd.
func BenchmarkNodeStartStop(b *testing.B) {
	cl := etcdtest.Start(b)
	ctx := context.Background()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		n, err := cohort.Start(ctx, cohort.Config{NodeID: fmt.Sprintf("n-%d", i), Endpoints: cl.Endpoints()})
		if err != nil {
			b.Fatal(err)
		}
		if err := n.Stop(ctx); err != nil {
			b.Fatal(err)
		}
	}
}
