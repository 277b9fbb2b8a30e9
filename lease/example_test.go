package lease_test

import (
	"context"
	"log"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/lease"
)

// A node keeps one session for its lifetime and re-establishes what it
// holds under each new epoch: here, its member key.
func ExampleStart() {
	ctx := context.Background()
	client, err := clientv3.New(clientv3.Config{Endpoints: []string{"127.0.0.1:2379"}, DialTimeout: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer client.Close()

	s, err := lease.Start(ctx, client, lease.Config{TTL: 5 * time.Second})
	if err != nil {
		log.Fatal(err)
	}
	defer s.Close(ctx)

	for e, err := s.Next(ctx, nil); err == nil; e, err = s.Next(ctx, e) {
		if _, err := client.Put(ctx, "/cohort/members/node-1", "{}", clientv3.WithLease(e.ID())); err != nil {
			log.Print(err)
		}
		<-e.Lost() // stop lease-bound work here, before etcd expires the lease
		log.Printf("%v lost: %v", e, e.Err())
	}
}

// Work that must not outlive the epoch runs under its context.
func ExampleEpoch_Context() {
	var s *lease.Session // from lease.Start
	ctx := context.Background()
	e, err := s.Wait(ctx)
	if err != nil {
		log.Fatal(err)
	}
	work := e.Context()
	<-work.Done()
	log.Print(context.Cause(work)) // why the epoch ended
}
