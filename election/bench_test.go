package election_test

import (
	"context"
	"sort"
	"testing"
	"time"

	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/etcdtest"
)

// BenchmarkResignHandover measures the time from a leader's Resign call
// to the return of the waiting candidate's Campaign, one handover per
// iteration, with the roles alternating between two nodes. The leader
// resigns as soon as the candidate's key is in place, the least favourable
// moment for the candidate's watch. It reports the median, the 99th
// percentile and the maximum.
func BenchmarkResignHandover(b *testing.B) {
	cl := etcdtest.Start(b)
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
