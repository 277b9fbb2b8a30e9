package supervisor_test

import (
	"context"
	"math"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/supervisor"
)

type crasher struct{}

func (crasher) HandleCall(_ *actor.Context, msg any) (any, error) { return msg, nil }

func (crasher) HandleCast(_ *actor.Context, _ any) error { panic("crash") }

// BenchmarkRestart measures one crash-to-restarted cycle: a child panics,
// its supervisor sees the exit, and the replacement is running.
func BenchmarkRestart(b *testing.B) {
	sys := actor.NewSystem(actor.Config{Node: "bench"})
	defer sys.Shutdown(context.Background())
	restarted := make(chan actor.Ref, 1)
	s, err := supervisor.Start(context.Background(), sys, supervisor.Spec{
		Intensity: supervisor.Intensity{MaxRestarts: math.MaxInt32, Period: time.Hour},
		Children:  []supervisor.Child{supervisor.Spawn("c", func() actor.Actor { return crasher{} }, actor.Options{})},
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
}
