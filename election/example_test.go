package election_test

import (
	"context"
	"log"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/lease"
)

// A singleton: campaign, run while leading, guard every write with the
// term's fencing token, and resign on a graceful stop.
func ExampleElection_Campaign() {
	ctx := context.Background()
	var session *lease.Session // the node's lease session
	el, err := election.New(session, "billing", election.Config{})
	if err != nil {
		log.Fatal(err)
	}
	term, err := el.Campaign(ctx, "node-1")
	if err != nil {
		log.Fatal(err)
	}
	resp, err := term.FencedTxn(ctx).Then(clientv3.OpPut("/billing/state", "running")).Commit()
	if err == nil && !resp.Succeeded {
		log.Print("no longer leader; write rejected")
	}
	select {
	case <-term.Done():
		log.Printf("leadership lost: %v", term.Err())
	case <-ctx.Done():
		term.Resign(context.Background())
	}
}

func ExampleElection_Observe() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var el *election.Election
	for leader := range el.Observe(ctx) {
		log.Printf("leader %q (token %d)", leader.Value, leader.Rev)
	}
}
