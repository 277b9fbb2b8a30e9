package cohort_test

import (
	"context"
	"fmt"
	"runtime"
	"slices"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"google.golang.org/protobuf/types/known/wrapperspb"
)

// The remote benchmarks run node A in the test process (with an embedded
// etcd) and node B in a second OS process (the test binary re-executed),
// on loopback, as ../shared/peers/remote.sh does for protoactor-go. The
// two processes share the machine's cores. Messages are
// wrapperspb.Int64Value, as in the peers' suite. Run them with fixed op
// counts, as docs/benchmarks.md shows:
//
//	go test -run '^$' -bench 'BenchmarkRemoteCast$' -benchtime 1000000x -count 3 .
//	go test -run '^$' -bench 'BenchmarkRemoteCall$' -benchtime 20000x -count 3 .
//	go test -run '^$' -bench 'BenchmarkRemoteCastFlood$' -benchtime 1x -count 3 .

type benchFixture struct {
	a    *cohort.Node
	peer *peerProcess
	// counter, echo: Refs of B's actors.
	counter, echo actor.Ref
}

var bench struct {
	once sync.Once
	f    *benchFixture
	err  error
}

func benchSetup(b *testing.B) *benchFixture {
	b.Helper()
	bench.once.Do(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
		defer cancel()
		a, err := cohort.Start(ctx, cohort.Config{NodeID: "bench-a", LeaseTTL: 5 * time.Second})
		if err != nil {
			bench.err = err
			return
		}
		f := &benchFixture{a: a}
		bench.f = f
		if f.peer, bench.err = spawnPeer("bench-b", a.Endpoints()); bench.err != nil {
			return
		}
		for _, r := range []struct {
			name string
			ref  *actor.Ref
		}{{"peer.counter", &f.counter}, {"peer.echo", &f.echo}} {
			for *r.ref == (actor.Ref{}) && ctx.Err() == nil {
				*r.ref, bench.err = a.Registry().Whereis(ctx, r.name)
				if bench.err != nil {
					time.Sleep(10 * time.Millisecond)
				}
			}
		}
		if bench.err == nil {
			// Open the stream off the clock.
			_, bench.err = a.Call(ctx, f.echo, wrapperspb.Int64(0))
		}
	})
	if bench.err != nil {
		b.Fatal(bench.err)
	}
	return bench.f
}

func closeBenchFixture() {
	if f := bench.f; f != nil {
		if f.peer != nil {
			f.peer.stop()
		}
		f.a.Stop(context.Background())
	}
}

// BenchmarkRemoteCast: one op is one Int64Value cast from A to B's
// counter; the clock stops when B answers a call sent after the last cast
// (the same stream, so it is handled after them), and the count and sum
// are checked.
func BenchmarkRemoteCast(b *testing.B) {
	for _, senders := range []int{1, 8} {
		b.Run(fmt.Sprintf("%d-sender", senders), func(b *testing.B) {
			f := benchSetup(b)
			ctx := context.Background()
			if _, err := f.a.Call(ctx, f.counter, "reset"); err != nil {
				b.Fatal(err)
			}
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for s := range senders {
				n := b.N / senders
				if s == 0 {
					n += b.N % senders
				}
				wg.Add(1)
				go func() {
					defer wg.Done()
					for range n {
						if err := f.a.Cast(ctx, f.counter, wrapperspb.Int64(next.Add(1)-1)); err != nil {
							b.Error(err)
							return
						}
					}
				}()
			}
			wg.Wait()
			st, err := actor.Call[counterState](ctx, f.a, f.counter, "count")
			b.StopTimer()
			if err != nil {
				b.Fatal(err)
			}
			n := int64(b.N)
			if st.Count != n || st.Sum != n*(n-1)/2 {
				b.Fatalf("B counted %d casts summing %d, want %d and %d", st.Count, st.Sum, n, n*(n-1)/2)
			}
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
		})
	}
}

// BenchmarkRemoteCall: one op is one round trip of a call to B's echo,
// which answers Int64Value(i+1); sequential from one goroutine, or from
// 8 goroutines at once.
func BenchmarkRemoteCall(b *testing.B) {
	for _, callers := range []int{1, 8} {
		name := "sequential"
		if callers > 1 {
			name = fmt.Sprintf("%d-concurrent", callers)
		}
		b.Run(name, func(b *testing.B) {
			f := benchSetup(b)
			ctx := context.Background()
			lat := make([]time.Duration, b.N)
			var next atomic.Int64
			b.ReportAllocs()
			b.ResetTimer()
			var wg sync.WaitGroup
			for range callers {
				wg.Add(1)
				go func() {
					defer wg.Done()
					for {
						i := next.Add(1) - 1
						if i >= int64(b.N) {
							return
						}
						start := time.Now()
						v, err := f.a.Call(ctx, f.echo, wrapperspb.Int64(i))
						lat[i] = time.Since(start)
						if err != nil {
							b.Error(err)
							return
						}
						if got := v.(*wrapperspb.Int64Value).Value; got != i+1 {
							b.Errorf("reply %d to %d", got, i)
							return
						}
					}
				}()
			}
			wg.Wait()
			b.StopTimer()
			slices.Sort(lat)
			b.ReportMetric(float64(b.N)/b.Elapsed().Seconds(), "msgs/s")
			b.ReportMetric(float64(lat[len(lat)/2].Microseconds()), "p50-us")
			b.ReportMetric(float64(lat[len(lat)*99/100].Microseconds()), "p99-us")
		})
	}
}

// BenchmarkRemoteCastFlood: one op is a flood of 1M casts from one
// goroutine, as fast as A lets it; the metric is the peak growth of A's Go
// heap during the flood, which the bounded send queue keeps flat.
func BenchmarkRemoteCastFlood(b *testing.B) {
	const casts = 1_000_000
	f := benchSetup(b)
	ctx := context.Background()
	var peak uint64
	for range b.N {
		if _, err := f.a.Call(ctx, f.counter, "reset"); err != nil {
			b.Fatal(err)
		}
		runtime.GC()
		var ms runtime.MemStats
		runtime.ReadMemStats(&ms)
		base := ms.HeapInuse
		stop := make(chan struct{})
		var sampler sync.WaitGroup
		sampler.Add(1)
		go func() {
			defer sampler.Done()
			t := time.NewTicker(5 * time.Millisecond)
			defer t.Stop()
			for {
				select {
				case <-stop:
					return
				case <-t.C:
					var ms runtime.MemStats
					runtime.ReadMemStats(&ms)
					if ms.HeapInuse > base && ms.HeapInuse-base > peak {
						peak = ms.HeapInuse - base
					}
				}
			}
		}()
		for i := range int64(casts) {
			if err := f.a.Cast(ctx, f.counter, wrapperspb.Int64(i)); err != nil {
				b.Fatal(err)
			}
		}
		st, err := actor.Call[counterState](ctx, f.a, f.counter, "count")
		close(stop)
		sampler.Wait()
		if err != nil || st.Count != casts {
			b.Fatalf("B counted %d casts, want %d: %v", st.Count, casts, err)
		}
	}
	b.ReportMetric(float64(peak)/(1<<20), "peak-heap-MB")
	b.ReportMetric(float64(b.N*casts)/b.Elapsed().Seconds(), "msgs/s")
}
