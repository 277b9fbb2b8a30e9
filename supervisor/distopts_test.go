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
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := bareCluster(t, "/optstest", nil)
	for field, o := range map[string]supervisor.DistributedOptions{
		"MaxChildren":        {MaxChildren: -1},
		"MoveBatch":          {MoveBatch: -1},
		"StableWindow":       {StableWindow: -time.Second},
		"ClusterMaxRestarts": {ClusterMaxRestarts: -1},
		"Balance":            {Balance: supervisor.BalanceManual + 1},
		"Intensity":          {Intensity: supervisor.Intensity{MaxRestarts: -1, Period: time.Second}},
		"Nodes":              {Nodes: []string{"a", "b/c"}},
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
		if !strings.Contains(err.Error(), field) {
			t.Errorf("%s: err = %v does not name the field", field, err)
		}
	}
	d, err := supervisor.StartDistributed(ctx, c, "opts", supervisor.DistributedOptions{Balance: supervisor.BalanceManual})
	if err != nil {
		t.Fatalf("zero options with BalanceManual: %v", err)
	}
	d.Stop(context.Background())
}

// bareCluster is a Cluster for a distributed supervisor on node "a", which
// is not a ring member: it places nothing. kind is its only kind's
// factory, or nil for none.
func bareCluster(t *testing.T, prefix string, kind supervisor.Factory) supervisor.Cluster {
	t.Helper()
	cl := etcdtest.Start(t)
	cli := cl.Client(t)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	sess, err := lease.Start(ctx, cli, lease.Config{TTL: 5 * time.Second})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = sess.Close(context.Background()) })
	rg, err := ring.Watch(ctx, cli, prefix, ring.Options{LocalID: "a"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(rg.Close)
	sys := actor.NewSystem(actor.Config{Node: "a"})
	t.Cleanup(func() { _ = sys.Shutdown(context.Background()) })
	return supervisor.Cluster{NodeID: "a", Prefix: prefix, Client: cli, Session: sess, Ring: rg, System: sys,
		Kind:  func(string) (supervisor.Factory, bool) { return kind, kind != nil },
		Offer: func(context.Context, string, bool) error { return nil }}
}

// A child spec whose Node or Kind could never name a node or a registered
// kind is an invalid spec, not a kind no node offers.
func TestChildSpecNodeAndKindValidated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := supervisor.StartDistributed(ctx, bareCluster(t, "/specstest", nil), "specs", supervisor.DistributedOptions{})
	if err != nil {
		t.Fatal(err)
	}
	defer d.Stop(context.Background())
	for name, spec := range map[string]supervisor.ChildSpec{
		"node with slash":  {ID: "c", Kind: "k", Node: "a/b"},
		"node control":     {ID: "c", Kind: "k", Node: "a\x00"},
		"kind control":     {ID: "c", Kind: "k\x00"},
		"kind invalid utf": {ID: "c", Kind: "k\xff"},
	} {
		_, _, err := d.StartChild(ctx, spec)
		if !errors.Is(err, supervisor.ErrInvalidSpec) {
			t.Errorf("%s: StartChild = %v, want ErrInvalidSpec", name, err)
		}
	}
	// A well-formed spec nobody can run is still ErrUnknownKind.
	if _, _, err := d.StartChild(ctx, supervisor.ChildSpec{ID: "c", Kind: "k", Node: "b"}); !errors.Is(err, supervisor.ErrUnknownKind) {
		t.Errorf("StartChild on an absent node = %v, want ErrUnknownKind", err)
	}
}
