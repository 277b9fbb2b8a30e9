package registry_test

import (
	"context"
	"fmt"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/registry"
)

// BenchmarkWhereisCached measures a lookup served by the cache.
func BenchmarkWhereisCached(b *testing.B) {
	cl := etcdtest.Start(b)
	n := startNode(b, "a", cl.Client(b), registry.Config{})
	ctx := context.Background()
	for i := 0; i < 1000; i++ {
		if err := n.reg.Register(ctx, fmt.Sprintf("name-%d", i), n.ref(), nil); err != nil {
			b.Fatal(err)
		}
	}
	if err := n.reg.Sync(ctx); err != nil {
		b.Fatal(err)
	}
	b.Run("serial", func(b *testing.B) {
		b.ReportAllocs()
		for i := 0; b.Loop(); i++ {
			if _, err := n.reg.Whereis(ctx, "name-500"); err != nil {
				b.Fatal(err)
			}
		}
	})
	b.Run("parallel", func(b *testing.B) {
		b.ReportAllocs()
		b.RunParallel(func(pb *testing.PB) {
			for pb.Next() {
				if _, err := n.reg.Whereis(ctx, "name-500"); err != nil {
					b.Fatal(err)
				}
			}
		})
	})
}

// BenchmarkRegister measures registrations per second against one
// embedded etcd member, with 1, 8 and 64 goroutines registering distinct
// names through one registry.
func BenchmarkRegister(b *testing.B) {
	for _, workers := range []int{1, 8, 64} {
		b.Run(fmt.Sprintf("goroutines=%d", workers), func(b *testing.B) {
			cl := etcdtest.Start(b)
			n := startNode(b, "a", cl.Client(b), registry.Config{})
			ctx := context.Background()
			var seq atomic.Int64
			var wg sync.WaitGroup
			b.ResetTimer()
			start := time.Now()
			per := (b.N + workers - 1) / workers
			for w := 0; w < workers; w++ {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for i := 0; i < per; i++ {
						id := seq.Add(1)
						ref := actor.Ref{Node: "a", ID: uint64(id), Incarnation: 1}
						if err := n.reg.Register(ctx, fmt.Sprintf("reg-%d", id), ref, nil); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			elapsed := time.Since(start)
			b.StopTimer()
			b.ReportMetric(float64(seq.Load())/elapsed.Seconds(), "regs/s")
		})
	}
}
