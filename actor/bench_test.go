package actor_test

import (
	"context"
	"runtime"
	"sync"
	"testing"

	"github.com/cohort-go/cohort/actor"
)

// sink counts casts and signals when it has seen want of them.
type sink struct {
	n, want int
	done    chan struct{}
}

func (s *sink) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func (s *sink) HandleCast(_ *actor.Context, _ any) error {
	s.n++
	if s.n == s.want {
		close(s.done)
	}
	return nil
}

func benchCast(b *testing.B, producers int) {
	sys := actor.NewSystem(actor.Config{Node: "bench"})
	defer shutdown(b, sys)
	ctx := context.Background()
	per := b.N / producers
	s := &sink{want: per * producers, done: make(chan struct{})}
	ref, err := sys.Spawn(ctx, s, actor.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	var wg sync.WaitGroup
	for range producers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range per {
				if err := sys.Cast(ctx, ref, i); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if per*producers > 0 {
		<-s.done
	}
	b.StopTimer()
	b.ReportMetric(float64(per*producers)/b.Elapsed().Seconds(), "msgs/s")
}

// BenchmarkCast: one producer casting to one actor; the timer stops only
// after the actor has handled every message.
func BenchmarkCast(b *testing.B) { benchCast(b, 1) }

// BenchmarkCastTwoProducers: two producers casting to one actor.
func BenchmarkCastTwoProducers(b *testing.B) { benchCast(b, 2) }

// BenchmarkCall: sequential request/reply round trips to one actor.
func BenchmarkCall(b *testing.B) {
	sys := actor.NewSystem(actor.Config{Node: "bench"})
	defer shutdown(b, sys)
	ctx := context.Background()
	ref, err := sys.Spawn(ctx, &sink{}, actor.Options{})
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if _, err := sys.Call(ctx, ref, 1); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkSpawn: spawn an actor and have it handle its first message.
// Every 10,000 spawns the actors are stopped, off the clock, as the peers'
// benchmark does.
func BenchmarkSpawn(b *testing.B) {
	sys := actor.NewSystem(actor.Config{Node: "bench"})
	defer shutdown(b, sys)
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if i > 0 && i%10_000 == 0 {
			b.StopTimer()
			sys.Shutdown(ctx)
			sys = actor.NewSystem(actor.Config{Node: "bench"})
			b.StartTimer()
		}
		ref, err := sys.Spawn(ctx, &sink{}, actor.Options{})
		if err != nil {
			b.Fatal(err)
		}
		if _, err := sys.Call(ctx, ref, 1); err != nil {
			b.Fatal(err)
		}
	}
}

type idle struct{}

func (idle) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

// BenchmarkIdleActorMemory spawns 100,000 idle actors and reports the heap
// and stack growth per actor.
func BenchmarkIdleActorMemory(b *testing.B) {
	const n = 100_000
	ctx := context.Background()
	for i := 0; i < b.N; i++ {
		sys := actor.NewSystem(actor.Config{Node: "bench"})
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for range n {
			if _, err := sys.Spawn(ctx, idle{}, actor.Options{}); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		used := (after.HeapAlloc + after.StackInuse) - (before.HeapAlloc + before.StackInuse)
		b.ReportMetric(float64(used)/n, "bytes/actor")
		b.StopTimer()
		sys.Shutdown(ctx)
		b.StartTimer()
	}
}

// shutdown stops sys outside the measured time.
func shutdown(b *testing.B, sys *actor.System) {
	b.StopTimer()
	sys.Shutdown(context.Background())
}
