package cohort

import (
	"context"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// gated answers a call once open is closed, after telling entered.
type gated struct{ entered, open chan struct{} }

func (g gated) HandleCall(_ *actor.Context, msg any) (any, error) {
	close(g.entered)
	<-g.open
	return msg, nil
}

// A leave of a node whose member key exists again (it lost its lease and
// rejoined before this node's ring saw it go) fails nothing pending on
// the node: the call is answered.
func TestLeaveOfANodeThatIsBackFailsNothing(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	a, err := Start(ctx, Config{NodeID: "a", LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer a.Stop(context.Background())
	b, err := Start(ctx, Config{NodeID: "b", Endpoints: a.Endpoints(), LeaseTTL: 2 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	defer b.Stop(context.Background())
	for _, ok := a.ring.Member("b"); !ok; _, ok = a.ring.Member("b") {
		select {
		case <-ctx.Done():
			t.Fatal("a never saw b")
		case <-time.After(10 * time.Millisecond):
		}
	}
	g := gated{entered: make(chan struct{}), open: make(chan struct{})}
	ref, err := b.System().Spawn(ctx, g, actor.Options{})
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan error, 1)
	go func() {
		_, err := a.Call(ctx, ref, "held")
		got <- err
	}()
	<-g.entered
	a.peersLeft([]string{"b"}) // a late leave: b's member key is there
	close(g.open)
	if err := <-got; err != nil {
		t.Fatalf("the call pending on b ended with %v, want its reply", err)
	}
}
