package election_test

import (
	"context"
	"errors"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/internal/etcdtest"
)

// TestConfirmAfterCampaign covers the check Campaign makes once etcd
// reports it elected (etcd issue 19597: Campaign can return after its own
// lease expired): the leader key must still exist with the campaign's
// create revision and the epoch must be alive.
func TestConfirmAfterCampaign(t *testing.T) {
	cl := etcdtest.Start(t)
	direct := cl.Client(t)
	s := startSession(t, cl.Client(t))
	el := newElection(t, s, "confirm")
	ctx := t.Context()
	e := s.Current()
	key := "/cohort/election/confirm/manual"
	put, err := direct.Put(ctx, key, "v", clientv3.WithLease(e.ID()))
	if err != nil {
		t.Fatal(err)
	}
	rev := put.Header.Revision
	if got, err := election.Confirm(el, ctx, e, key, rev); err != nil || got < rev {
		t.Fatalf("Confirm of a live key = %d, %v", got, err)
	}
	if _, err := election.Confirm(el, ctx, e, key, rev-1); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Confirm with the wrong create revision = %v", err)
	}
	if _, err := direct.Put(ctx, key, "v"); err != nil {
		t.Fatal(err)
	}
	if _, err := election.Confirm(el, ctx, e, key, rev); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Confirm of a key moved off the lease = %v", err)
	}
	if _, err := direct.Delete(ctx, key); err != nil {
		t.Fatal(err)
	}
	if _, err := election.Confirm(el, ctx, e, key, rev); !errors.Is(err, election.ErrNotLeader) {
		t.Fatalf("Confirm of a deleted key = %v", err)
	}
	if _, err := direct.Revoke(ctx, e.ID()); err != nil {
		t.Fatal(err)
	}
	select {
	case <-e.Lost():
	case <-time.After(5 * time.Second):
		t.Fatal("epoch not lost after revoke")
	}
	if _, err := election.Confirm(el, context.Background(), e, key, rev); !errors.Is(err, election.ErrEpochLost) {
		t.Fatalf("Confirm on a lost epoch = %v", err)
	}
}
