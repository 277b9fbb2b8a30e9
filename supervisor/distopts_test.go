package supervisor_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort/supervisor"
)

// StartDistributed refuses negative options and an unknown Balance with
// ErrInvalidSpec, naming the field; zero keeps meaning the default.
func TestDistributedOptionsCheck(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	c := supervisor.BareCluster(t, "/optstest", nil)
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

// A child spec whose Node or Kind could never name a node or a registered
// kind is an invalid spec, not a kind no node offers.
func TestChildSpecNodeAndKindValidated(t *testing.T) {
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	d, err := supervisor.StartDistributed(ctx, supervisor.BareCluster(t, "/specstest", nil), "specs", supervisor.DistributedOptions{})
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
