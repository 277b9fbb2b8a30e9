//go:build unix

// Command dsupbench measures the distributed supervisor across node
// processes on this machine: it starts an embedded etcd (or joins one with
// -endpoints) and -nodes node processes (the program re-executes itself),
// starts -children counters with StartChildren and times until all run,
// adds a node and counts the children that move and the time to converge,
// then kills a node with kill -9 and times until its children run
// elsewhere. Every count is checked against etcd at one revision.
//
//	go run ./cmd/dsupbench
//	go run ./cmd/dsupbench -children 20000 -ttl 5s -cpuprofile /tmp/prof
//	go run ./cmd/dsupbench -etcd-floor   # etcd's part of the start alone
package main

import (
	"context"
	"flag"
	"fmt"
	"os"
	"os/signal"
	"path/filepath"
	"runtime"
	"runtime/pprof"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/cohort-go/cohort/internal/demonode"
)

func main() {
	demonode.MaybeRunNode()
	os.Exit(run())
}

func startProfile(path string) (func(), error) {
	if err := os.MkdirAll(filepath.Dir(path), 0o755); err != nil {
		return nil, err
	}
	f, err := os.Create(path)
	if err != nil {
		return nil, err
	}
	if err := pprof.StartCPUProfile(f); err != nil {
		f.Close()
		return nil, err
	}
	var once sync.Once
	return func() { once.Do(func() { pprof.StopCPUProfile(); f.Close() }) }, nil
}

func run() int {
	endpoints := flag.String("endpoints", "", "etcd client URLs to join, comma-separated (default: start an embedded etcd)")
	children := flag.Int("children", 100_000, "how many children to start")
	nodes := flag.Int("nodes", 3, "node processes before the join")
	ttl := flag.Duration("ttl", 5*time.Second, "lease TTL of every node (cohort's default)")
	writers := flag.Int("writers", 1, "goroutines calling StartChildren")
	moveBatch := flag.Int("move-batch", 0, "DistributedOptions.MoveBatch (0: the default)")
	stable := flag.Duration("stable-window", 0, "DistributedOptions.StableWindow (0: the default)")
	floor := flag.Bool("etcd-floor", false, "measure only etcd's part of the start: the same spec writes and claims from plain etcd clients, with no cohort node")
	startOnly := flag.Bool("start-only", false, "stop after the start phase (profiles then cover the start alone)")
	profile := flag.String("cpuprofile", "", "directory where each node process writes <node>.cpu, and this process (etcd and the coordinator) coordinator.cpu")
	flag.Parse()
	cfg := demonode.BenchConfig{Children: *children, Writers: *writers, StartOnly: *startOnly, Cluster: demonode.ClusterConfig{
		Nodes: *nodes, LeaseTTL: *ttl, MoveBatch: *moveBatch, StableWindow: *stable, CPUProfileDir: *profile,
	}}
	if *endpoints != "" {
		cfg.Cluster.Endpoints = strings.Split(*endpoints, ",")
	}
	if *profile != "" {
		stopProfile, err := startProfile(filepath.Join(*profile, "coordinator.cpu"))
		if err != nil {
			fmt.Fprintln(os.Stderr, "dsupbench:", err)
			return 1
		}
		defer stopProfile()
		if *startOnly {
			cfg.AfterStart = stopProfile
		}
	}
	if *floor {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Minute)
		defer cancel()
		var eps []string
		if *endpoints != "" {
			eps = strings.Split(*endpoints, ",")
		}
		res, err := demonode.RunEtcdFloor(ctx, eps, *children, *nodes)
		if err != nil {
			fmt.Fprintln(os.Stderr, "dsupbench:", err)
			return 1
		}
		fmt.Printf("etcd floor: %d specs stored in %v, all claimed by %d clients after %v\n",
			*children, res.Stored.Round(time.Millisecond), *nodes, res.Claimed.Round(time.Millisecond))
		return 0
	}
	fmt.Printf("dsupbench: %d children, %d nodes + 1 joining, %d CPUs, GOMAXPROCS %d\n",
		*children, *nodes, runtime.NumCPU(), runtime.GOMAXPROCS(0))
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	ctx, cancel := context.WithTimeout(ctx, 10*time.Minute)
	res, err := demonode.RunBench(ctx, os.Stdout, cfg)
	cancel()
	stop()
	if err != nil {
		fmt.Fprintln(os.Stderr, "dsupbench:", err)
		return 1
	}
	goal := func(ok bool) string {
		if ok {
			return "met"
		}
		return "MISSED"
	}
	fmt.Println()
	fmt.Printf("| measure | figure | goal | |\n|---|---|---|---|\n")
	fmt.Printf("| start %d children, until all run | %v | ≤ 5s | %s |\n", res.Children, res.Running.Round(time.Millisecond), goal(res.Running <= 5*time.Second))
	if *startOnly {
		return 0
	}
	ratio := float64(res.Moved) / float64(res.Ideal)
	fmt.Printf("| join: children moved / ideal quarter | %d / %d = %.2f× | ≤ 1.2× | %s |\n", res.Moved, res.Ideal, ratio, goal(ratio <= 1.2))
	fmt.Printf("| join: converged after the node was ready | %v | ≤ 5s | %s |\n", res.Converged.Round(time.Millisecond), goal(res.Converged <= 5*time.Second))
	fmt.Printf("| kill -9: %d children running elsewhere | %v | ≤ TTL+5s = %v | %s |\n", res.Orphans, res.Recovered.Round(time.Millisecond),
		res.TTL+5*time.Second, goal(res.Recovered <= res.TTL+5*time.Second))
	return 0
}
