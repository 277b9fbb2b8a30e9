package registry_test

import (
	"context"
	"errors"
	"log"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/registry"
)

func ExampleRegistry_Register() {
	ctx := context.Background()
	var client *clientv3.Client // connected to etcd
	var session *lease.Session  // the node's lease session
	reg, err := registry.New(ctx, client, session, registry.Config{})
	if err != nil {
		log.Fatal(err)
	}
	defer reg.Close()

	me := actor.Ref{Node: "node-1", ID: 7, Incarnation: 1}
	err = reg.Register(ctx, "billing", me, []byte(`{"version":3}`))
	var taken *actor.AlreadyRegisteredError
	switch {
	case errors.As(err, &taken):
		log.Printf("billing runs at %v", taken.Owner)
	case err != nil:
		log.Fatal(err)
	}

	ref, err := reg.Whereis(ctx, "billing")
	if errors.Is(err, registry.ErrNotFound) {
		log.Print("no billing")
	}
	log.Print(ref)
}

// Names die with the epoch they were registered under; re-register them
// under each new one.
func ExampleRegistry_Register_reregister() {
	ctx := context.Background()
	var session *lease.Session
	var reg *registry.Registry
	me := actor.Ref{Node: "node-1", ID: 7, Incarnation: 1}
	for e, err := session.Next(ctx, nil); err == nil; e, err = session.Next(ctx, e) {
		if err := reg.Register(ctx, "billing", me, nil); err != nil {
			log.Print(err)
		}
		<-e.Lost()
	}
}

func ExampleRegistry_WatchPrefix() {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	var reg *registry.Registry
	events, err := reg.WatchPrefix(ctx, "user:")
	if err != nil {
		log.Fatal(err)
	}
	for ev := range events {
		log.Printf("%v %s -> %v", ev.Type, ev.Name, ev.Entry.Ref)
	}
}
