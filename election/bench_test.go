package election_test

import (
	"context"
	"github.com/cohort-go/cohort/election"
	"sort"
	"testing"
	"time"
)

// BenchmarkResignHandover measures the time from a leader's Resign call
// to the return of the waiting candidate's Campaign, one handover per
// iteration, with the roles alternating between two nodes.
//
// etcd starts a watch on a past revision (which is what Campaign's wait
// for the previous candidate's delete is) unsynced, and syncs such watches
// in a loop every 100ms; until then a delete reaches the watcher only at
// the next pass of that loop. "waiting" lets the candidate wait 150ms
// before the leader resigns, the steady state of a standby; "fresh"
// resigns as soon as the candidate has queued, the worst case.
func BenchmarkResignHandover(b *testing.B) {
	b.Run("waiting", func(b *testing.B) { benchHandover(b, 150*time.Millisecond) })
	b.Run("fresh", func(b *testing.B) { benchHandover(b, 0) })
}

func benchHandover(b *testing.B, standby time.Duration) {
	cl := startEtcd(b)
	direct := cl.Client(b)
	els := [2]*election.Election{
		newElection(b, startSession(b, cl.Client(b)), "bench"),
		newElection(b, startSession(b, cl.Client(b)), "bench"),
	}
	ctx := context.Background()
	leader, err := els[0].Campaign(ctx, "0")
	if err != nil {
		b.Fatal(err)
	}
	var times []time.Duration
	b.ResetTimer()
	for i := 0; b.Loop(); i++ {
		b.StopTimer()
		waiting := campaign(ctx, els[(i+1)%2], "next")
		waitFor(b, 5*time.Second, "the candidate to queue", func() bool { return candidates(b, direct, "bench") == 2 })
		time.Sleep(standby)
		b.StartTimer()
		start := time.Now()
		if err := leader.Resign(ctx); err != nil {
			b.Fatal(err)
		}
		r := await(b, waiting, 5*time.Second)
		if r.err != nil {
			b.Fatal(r.err)
		}
		times = append(times, r.at.Sub(start))
		leader = r.l
	}
	b.StopTimer()
	leader.Resign(ctx)
	sort.Slice(times, func(i, j int) bool { return times[i] < times[j] })
	b.ReportMetric(float64(times[len(times)/2].Microseconds())/1000, "p50-ms")
	b.ReportMetric(float64(times[len(times)*99/100].Microseconds())/1000, "p99-ms")
	b.ReportMetric(float64(times[len(times)-1].Microseconds())/1000, "max-ms")
}
