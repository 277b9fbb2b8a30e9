package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
	"github.com/cohort-go/cohort/supervisor"
)

// StartDistributed refuses negative options and an unknown Balance with
// ErrInvalidSpec, naming the field; zero keeps meaning the default.
func TestDistributedOptionsCheck(t *testing.T) {
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess, err := lease.Start(ctx, cli, lease.Config{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	rg, err := ring.Watch(ctx, cli, "/optstest", ring.Options{LocalID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rg.Close)
	sys := actor.NewSystem(actor.Config{Node: "a"})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	c := supervisor.Cluster{NodeID: "a", Prefix: "/optstest", Client: cli, Session: sess, Ring: rg, System: sys,
		Kind:  func(string) (supervisor.Factory, bool) { return nil, false },
		Offer: func(context.Context, string, bool) error { return nil }}
	for field, o := range map[string]supervisor.DistributedOptions{
		"MaxChildren":        {MaxChildren: -1},
		"MoveBatch":          {MoveBatch: -1},
		"StableWindow":       {StableWindow: -time.Second},
		"ClusterMaxRestarts": {ClusterMaxRestarts: -1},
		"Balance":            {Balance: supervisor.BalanceManual + 1},
		"Intensity":          {Intensity: supervisor.Intensity{MaxRestarts: -1, Period: time.Second}},
	} {
		d, err := supervisor.StartDistributed(ctx, c, "opts", o)
		if err == nil {
			d.Stop(context.Background())
			t.Errorf("%s: started with %+v", field, o)
			continue
		}
		if !errors.Is(err, supervisor.ErrInvalidSpec) {
			t.Errorf("%s: err = %v, want ErrInvalidSpec", field, err)
		}
		if field != "Intensity" && !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v does not name the field", field, err)
		}
	}
	d, err := supervisor.StartDistributed(ctx, c, "opts", supervisor.DistributedOptions{Balance: supervisor.BalanceManual})
	if err != nil {
		t.Fatalf("zero options with BalanceManual: %v", err)
	}
	d.Stop(context.Background())
}
