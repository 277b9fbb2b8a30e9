//go:build unix

// Command cluster is cohort's main demo. It starts an embedded etcd and
// three node processes on this machine (the program re-executes itself),
// runs a singleton worker and a few hundred counters placed on the
// consistent-hash ring by a distributed supervisor, prints where they run,
// kills the singleton's node with kill -9, and shows the singleton and the
// counters coming back on the survivors with the times it took; then it
// stops one survivor gracefully (its counters move with their state) and
// exits, reaping every process it started.
//
//	go run ./examples/cluster
//	go run ./examples/cluster -endpoints http://10.0.0.1:2379,http://10.0.0.2:2379
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"strings"
	"syscall"
	"time"

	"github.com/cohort-go/cohort/internal/demonode"
)

func main() {
	demonode.MaybeRunNode()
	endpoints := flag.String("endpoints", "", "etcd client URLs to join, comma-separated (default: start an embedded etcd)")
	children := flag.Int("children", 300, "how many counters to start")
	ttl := flag.Duration("ttl", 2*time.Second, "lease TTL of every node")
	flag.Parse()
	cfg := demonode.DemoConfig{Children: *children, Cluster: demonode.ClusterConfig{LeaseTTL: *ttl}}
	if *endpoints != "" {
		cfg.Cluster.Endpoints = strings.Split(*endpoints, ",")
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, 2*time.Minute)
	err := demonode.RunDemo(ctx, os.Stdout, cfg)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "cluster:", err)
		os.Exit(1)
	}
}
