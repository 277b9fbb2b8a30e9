//go:build unix

package demonode_test

import (
	"bytes"
	"context"
	"os"
	"strings"
	"testing"
	"time"

	"github.com/cohort-go/cohort/internal/demonode"
)

func TestMain(m *testing.M) {
	demonode.MaybeRunNode()
	os.Exit(m.Run())
}

// nodeCommand re-executes the test binary as a node process.
func nodeCommand() []string { return []string{os.Args[0], "-test.run=^$"} }

func TestDemo(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	err := demonode.RunDemo(ctx, &out, demonode.DemoConfig{Children: 40, Probe: 2,
		Cluster: demonode.ClusterConfig{Command: nodeCommand()}})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"took over", "all 40 running again", "every node process reaped"} {
		if !strings.Contains(out.String(), want) {
			t.Errorf("demo output lacks %q", want)
		}
	}
	// Before the kill each probed counter reached 2; the node's death
	// lost it (1). The counters probed on the node stopped gracefully
	// reached 1 before the stop; the move kept it (2).
	if got := strings.Count(out.String(), " = 2 "); got != 4 {
		t.Errorf("%d counters at 2, want 4 (2 before the kill, 2 after the graceful move)", got)
	}
	if got := strings.Count(out.String(), " = 1 "); got != 4 {
		t.Errorf("%d counters at 1, want 4 (2 after the kill, 2 before the graceful stop)", got)
	}
}

func TestBench(t *testing.T) {
	t.Parallel()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	var out bytes.Buffer
	res, err := demonode.RunBench(ctx, &out, demonode.BenchConfig{Children: 600, Writers: 2,
		Cluster: demonode.ClusterConfig{Command: nodeCommand(), StableWindow: 100 * time.Millisecond}})
	t.Log("\n" + out.String())
	if err != nil {
		t.Fatal(err)
	}
	if len(res.PerNode) != 3 {
		t.Errorf("children on %d nodes after the start, want 3: %v", len(res.PerNode), res.PerNode)
	}
	// Adding a node moves exactly the children the ring now gives it.
	if res.Moved == 0 || res.Moved != res.Owned {
		t.Errorf("join moved %d children, the ring gives the new node %d", res.Moved, res.Owned)
	}
	if res.Orphans == 0 || res.Recovered < res.LeaseGone {
		t.Errorf("kill: %d children, lease gone after %v, recovered after %v", res.Orphans, res.LeaseGone, res.Recovered)
	}
}
