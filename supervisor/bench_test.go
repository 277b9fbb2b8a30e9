package supervisor_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

// crasher panics on every cast; crashedAt and startedAt time the restart.
type crasher struct{ clock *restartClock }

type restartClock struct {
	crashedAt time.Time
	total     time.Duration
}

func (c crasher) Init(_ *actor.Context, _ any) error {
	if !c.clock.crashedAt.IsZero() {
		c.clock.total += time.Since(c.clock.crashedAt)
	}
	return nil
}

func (crasher) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func (c crasher) HandleCast(_ *actor.Context, _ any) error {
	c.clock.crashedAt = time.Now()
	panic("crash")
}

// BenchmarkRestart measures one crash-to-restarted cycle: a child panics,
// its supervisor sees the exit, and the replacement is running. ns/restart
// is the time from the panic to the replacement's Init, as the peers'
// benchmark reports it.
func BenchmarkRestart(b *testing.B) {
	sys := actor.NewSystem(actor.Config{Node: "bench"})
	defer sys.Shutdown(context.Background())
	restarted := make(chan actor.Ref, 1)
	clock := &restartClock{}
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: math.MaxInt32, Period: time.Hour},
		Children:  []supervisor.Child{supervisor.Spawn("c", func() actor.Actor { return crasher{clock: clock} }, actor.Options{})},
		Listener: func(e supervisor.Event) {
			if e.Type == supervisor.ChildRestarted {
				restarted <- e.Ref
			}
		},
	})
	if err != nil {
		b.Fatal(err)
	}
	cs, err := s.WhichChildren(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	ref := cs[0].Ref
	ctx := context.Background()
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		if err := sys.Cast(ctx, ref, 1); err != nil {
			b.Fatal(err)
		}
		ref = <-restarted
	}
	b.StopTimer()
	b.ReportMetric(float64(clock.total.Nanoseconds())/float64(b.N), "ns/restart")
}
