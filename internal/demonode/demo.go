//go:build unix

package demonode

import (
	"context"
	"errors"
	"fmt"
	"io"
	"slices"
	"strings"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/election"
	"github.com/cohort-go/cohort/supervisor"
)

// DemoConfig configures RunDemo.
type DemoConfig struct {
	// Cluster is the cluster to start; Singleton is always on.
	Cluster ClusterConfig
	// Children is how many counters to start. Default 300.
	Children int
	// Probe is how many counters to call by id from a surviving node.
	// Default 4.
	Probe int
}

// RunDemo is the cluster demo: it starts a cluster with a singleton worker
// and Children counters, shows where they run, kills (kill -9) the node
// that holds the singleton, shows the singleton and the counters coming
// back on the survivors with the times it took, stops one survivor
// gracefully (its counters move with their state), and stops everything,
// writing what happens to w.
func RunDemo(ctx context.Context, w io.Writer, cfg DemoConfig) (err error) {
	if cfg.Children <= 0 {
		cfg.Children = 300
	}
	if cfg.Probe <= 0 {
		cfg.Probe = 4
	}
	cfg.Cluster.Singleton = true
	if cfg.Cluster.LeaseTTL <= 0 {
		cfg.Cluster.LeaseTTL = 2 * time.Second
	}
	ttl := cfg.Cluster.LeaseTTL
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	begin := time.Now()
	where := "an embedded etcd"
	if len(cfg.Cluster.Endpoints) > 0 {
		where = "etcd at " + strings.Join(cfg.Cluster.Endpoints, ",")
	}
	nodes := max(cfg.Cluster.Nodes, 3)
	cfg.Cluster.Nodes = nodes
	p("cohort cluster demo: %s, %d node processes, lease TTL %v", where, nodes, ttl)
	c, err := StartCluster(ctx, cfg.Cluster)
	if err != nil {
		return err
	}
	defer func() {
		p("\n== stopping the remaining node processes and the coordinator")
		at := time.Now()
		cerr := c.Close(context.Background(), true)
		if cerr == nil {
			what := "the demo's keys deleted from etcd"
			if c.Embedded() {
				what = "embedded etcd stopped, its data dir removed"
			}
			p("   every node process reaped, %s (%v); demo took %v",
				what, time.Since(at).Round(time.Millisecond), time.Since(begin).Round(time.Millisecond))
		}
		err = errors.Join(err, cerr)
	}()
	p("   coordinator (this process) is a cluster member too, with no kinds: no counter runs on it")
	p("   started %s in %v", strings.Join(c.Nodes(), ", "), time.Since(begin).Round(time.Millisecond))

	el, err := c.Coordinator.Election(SingletonID)
	if err != nil {
		return err
	}
	octx, stopObserving := context.WithCancel(ctx)
	defer stopObserving()
	leaders := el.Observe(octx)
	nextLeader := func(not string) (election.Leader, error) {
		for {
			select {
			case l, ok := <-leaders:
				if !ok {
					return election.Leader{}, ctx.Err()
				}
				if l.Value != not && l.Value != "" {
					return l, nil
				}
			case <-ctx.Done():
				return election.Leader{}, ctx.Err()
			}
		}
	}
	// ask calls the singleton by its global name. Right after a takeover
	// the name may not be registered yet, or still name the dead holder.
	ask := func(not string) (Reply, error) {
		cctx, cancel := context.WithTimeout(ctx, 5*time.Second)
		defer cancel()
		for {
			v, err := c.Coordinator.Call(cctx, actor.Name(SingletonID), "where")
			if r, ok := v.(Reply); err == nil && ok && r.Node != not {
				return r, nil
			}
			select {
			case <-cctx.Done():
				return Reply{}, fmt.Errorf("call the singleton: %w (last: %v)", cctx.Err(), err)
			case <-time.After(10 * time.Millisecond):
			}
		}
	}
	leader, err := nextLeader("")
	if err != nil {
		return err
	}
	holder := leader.Value
	p("\n== singleton %q runs on %s (fencing token %d); the other nodes stand by", SingletonID, holder, leader.Rev)

	specs := make([]supervisor.ChildSpec, cfg.Children)
	ids := make([]string, cfg.Children)
	for i := range specs {
		ids[i] = fmt.Sprintf("counter-%03d", i)
		specs[i] = supervisor.ChildSpec{ID: ids[i], Kind: Kind}
	}
	at := time.Now()
	if _, err := c.Sup.StartChildren(ctx, specs); err != nil {
		return err
	}
	all := func(avoid string) func(Placement) bool {
		return func(pl Placement) bool {
			return pl.Specs == cfg.Children && pl.Pending == 0 && pl.Failed == 0 && pl.PerNode[avoid] == 0
		}
	}
	pl, err := c.WaitPlacement(ctx, 10*time.Millisecond, all(""))
	if err != nil {
		return err
	}
	p("\n== %d counters (kind %q, registered on every node) started with StartChildren;", cfg.Children, Kind)
	p("   all running %v later, placed on the consistent-hash ring (WhichChildren, one etcd revision):", time.Since(at).Round(time.Millisecond))
	printPerNode(w, pl)

	var probeIDs []string
	for _, id := range ids {
		if pl.Where[id] == holder && len(probeIDs) < cfg.Probe {
			probeIDs = append(probeIDs, id)
		}
	}
	from := otherThan(c.Nodes(), holder)
	p("\n== from %s, calling %d counters that run on %s, by id (Add 1, twice):", from, len(probeIDs), holder)
	if _, err := c.Probe(ctx, from, probeIDs, 1); err != nil {
		return err
	}
	if err := printProbe(ctx, w, c, from, probeIDs); err != nil {
		return err
	}

	victim := holder
	p("\n== kill -9 %s: it holds the singleton and %d counters", victim, pl.PerNode[victim])
	killed := time.Now()
	if err := c.Kill(victim); err != nil {
		return err
	}
	leader, err = nextLeader(victim)
	if err != nil {
		return err
	}
	tookOver := time.Since(killed)
	holder = leader.Value
	r, err := ask(victim)
	if err != nil {
		return err
	}
	pl, err = c.WaitPlacement(ctx, 10*time.Millisecond, all(victim))
	if err != nil {
		return err
	}
	back := time.Since(killed)
	p("   singleton: %s took over %v after the kill (fencing token %d); it answers from %s", holder,
		tookOver.Round(time.Millisecond), leader.Rev, r.Node)
	p("   counters:  all %d running again %v after the kill (WhichChildren, one etcd revision):",
		cfg.Children, back.Round(time.Millisecond))
	printPerNode(w, pl)
	p("   (nothing moves until the dead node's lease expires: lease TTL %v)", ttl)

	from = otherThan(c.Nodes(), holder)
	p("\n== from %s, the same counters again (Add 1): a node's death loses their in-memory count", from)
	if err := printProbe(ctx, w, c, from, probeIDs); err != nil {
		return err
	}

	stopping := holder
	moving := pl.PerNode[stopping]
	var handIDs []string
	for _, id := range ids {
		// Others than the counters probed above, whose counts the kill
		// reset: these start from nothing here.
		if pl.Where[id] == stopping && len(handIDs) < cfg.Probe && !slices.Contains(probeIDs, id) {
			handIDs = append(handIDs, id)
		}
	}
	p("\n== from %s, %d counters that now run on %s (Add 1):", from, len(handIDs), stopping)
	if err := printProbe(ctx, w, c, from, handIDs); err != nil {
		return err
	}
	p("\n== graceful stop of %s (singleton and %d counters): the counters move with their state (Handoff)", stopping, moving)
	at = time.Now()
	stopped := make(chan error, 1)
	go func() {
		sctx, cancel := context.WithTimeout(ctx, stopTimeout)
		defer cancel()
		stopped <- c.Stop(sctx, stopping)
	}()
	leader, err = nextLeader(stopping)
	if err != nil {
		<-stopped
		return err
	}
	handover := time.Since(at)
	pl, err = c.WaitPlacement(ctx, 10*time.Millisecond, all(stopping))
	moved := time.Since(at)
	if serr := <-stopped; serr != nil || err != nil {
		return errors.Join(err, serr)
	}
	p("   singleton: %s took over %v after the stop began (resigned, no lease expiry; token %d)",
		leader.Value, handover.Round(time.Millisecond), leader.Rev)
	p("   counters:  all %d running %v after the stop began:", cfg.Children, moved.Round(time.Millisecond))
	printPerNode(w, pl)
	from = c.Nodes()[0]
	p("   from %s, the same counters (Add 1): their counts carried on", from)
	return printProbe(ctx, w, c, from, handIDs)
}

func otherThan(nodes []string, not string) string {
	for _, n := range nodes {
		if n != not {
			return n
		}
	}
	return ""
}

func printPerNode(w io.Writer, pl Placement) {
	nodes := make([]string, 0, len(pl.PerNode))
	for n := range pl.PerNode {
		nodes = append(nodes, n)
	}
	slices.Sort(nodes)
	for _, n := range nodes {
		fmt.Fprintf(w, "     %-8s %5d\n", n, pl.PerNode[n])
	}
}

func printProbe(ctx context.Context, w io.Writer, c *Cluster, from string, ids []string) error {
	cctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	r, err := c.Probe(cctx, from, ids, 1)
	if err != nil {
		return err
	}
	for i, id := range ids {
		if r.Errors[i] != "" {
			fmt.Fprintf(w, "     %s: error: %s\n", id, r.Errors[i])
			continue
		}
		fmt.Fprintf(w, "     %s = %d   (runs on %s)\n", id, r.Replies[i].N, r.Replies[i].Node)
	}
	return nil
}
