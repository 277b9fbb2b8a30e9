//go:build unix

package demonode

import (
	"context"
	"fmt"
	"io"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/ring"
)

// BenchConfig configures RunBench.
type BenchConfig struct {
	// Cluster is the cluster to start (Nodes default 3).
	Cluster ClusterConfig
	// Children is how many counters to start. Default 100,000.
	Children int
	// Writers is how many goroutines call StartChildren, each with an
	// equal share of the specs. Default 1.
	Writers int
	// Poll is how often progress is sampled. Default 20ms.
	Poll time.Duration
	// StartOnly stops after the start phase (no join, no kill), so that
	// CPU profiles cover the start alone.
	StartOnly bool
	// AfterStart, if set, is called once every child runs, before any
	// count is read (for instance to stop a profile of the start).
	AfterStart func()
}

// BenchResult holds what RunBench measured.
type BenchResult struct {
	Children int
	Nodes    int

	// Stored is how long StartChildren took; Running how long until
	// every child ran (from the first StartChildren call). StartRevisions
	// is how many etcd revisions (write transactions) that took.
	Stored, Running time.Duration
	StartRevisions  int64
	PerNode         map[string]int

	// Joined is the node added; Ideal the children an even share would
	// give it (Children / nodes); Owned the children the ring gives it;
	// Moved the children whose node changed; Converged how long after the
	// node was ready every child ran on its ring owner (StableWindow
	// included).
	Joined       string
	Ideal, Owned int
	Moved        int
	Converged    time.Duration
	StableWindow time.Duration

	// Victim is the node killed (kill -9), running Orphans children;
	// LeaseGone is when its member key disappeared (its lease expired),
	// Recovered when all its children ran elsewhere, both after the kill.
	Victim    string
	Orphans   int
	LeaseGone time.Duration
	Recovered time.Duration
	TTL       time.Duration

	// StartCPU and JoinCPU are the processor time the start and the join
	// took: in this process (etcd, when embedded, and the coordinator)
	// and in the node processes.
	StartCPU, JoinCPU [2]time.Duration
}

// RunBench measures the distributed supervisor across node processes:
// starting Children counters, adding a node, and killing one, writing
// progress to w.
func RunBench(ctx context.Context, w io.Writer, cfg BenchConfig) (res BenchResult, err error) {
	if cfg.Children <= 0 {
		cfg.Children = 100_000
	}
	if cfg.Writers <= 0 {
		cfg.Writers = 1
	}
	if cfg.Poll <= 0 {
		cfg.Poll = 20 * time.Millisecond
	}
	if cfg.Cluster.Nodes <= 0 {
		cfg.Cluster.Nodes = 3
	}
	if cfg.Cluster.LeaseTTL <= 0 {
		cfg.Cluster.LeaseTTL = 2 * time.Second
	}
	cfg.Cluster.Warnings = true
	cfg.Cluster.ObserveLater = true
	res.Children, res.Nodes, res.TTL = cfg.Children, cfg.Cluster.Nodes, cfg.Cluster.LeaseTTL
	res.StableWindow = cfg.Cluster.StableWindow
	if res.StableWindow <= 0 {
		res.StableWindow = time.Second
	}
	p := func(format string, args ...any) { fmt.Fprintf(w, format+"\n", args...) }
	c, err := StartCluster(ctx, cfg.Cluster)
	if err != nil {
		return res, err
	}
	defer func() {
		at := time.Now()
		if cerr := c.Close(context.Background(), false); cerr != nil && err == nil {
			err = cerr
		}
		p("stopped every node process and etcd in %v", time.Since(at).Round(time.Millisecond))
	}()
	c.progress = func(line string) { p("%s", line) }
	p("%d node processes on etcd %v, lease TTL %v", cfg.Cluster.Nodes, c.Endpoints(), cfg.Cluster.LeaseTTL)

	// Start: the first node starts every child through StartChildren, as
	// an application would; the coordinator only watches the counts.
	writer := c.Nodes()[0]
	rev0, err := c.revision(ctx)
	if err != nil {
		return res, err
	}
	cpu0, err := c.cpu(ctx)
	if err != nil {
		return res, err
	}
	start := time.Now()
	if err := c.StartCounters(ctx, writer, StartCounters{Prefix: "c", N: cfg.Children, Writers: cfg.Writers,
		TimeoutSeconds: 600}); err != nil {
		return res, err
	}
	if err := c.waitLocalTotal(ctx, cfg.Poll, cfg.Children); err != nil {
		return res, err
	}
	res.Running = time.Since(start)
	if cfg.AfterStart != nil {
		cfg.AfterStart()
	}
	var st StartStatus
	if err := c.poll(ctx, cfg.Poll, func() (done bool, err error) {
		st, err = c.StartStatus(ctx, writer)
		return st.Done, err
	}, nil); err != nil {
		return res, err
	}
	if st.Err != "" {
		return res, fmt.Errorf("StartChildren on %s: %s", writer, st.Err)
	}
	res.Stored = st.Took
	if res.StartCPU, err = c.cpuSince(ctx, cpu0); err != nil {
		return res, err
	}
	rev1, err := c.revision(ctx)
	if err != nil {
		return res, err
	}
	res.StartRevisions = rev1 - rev0
	if err := c.Observe(ctx); err != nil {
		return res, err
	}
	n, err := c.Sup.CountChildren(ctx)
	if err != nil {
		return res, err
	}
	if n.Specs != cfg.Children || n.Running != cfg.Children {
		return res, fmt.Errorf("after the start CountChildren says %+v, want %d running", n, cfg.Children)
	}
	before, err := c.Placement(ctx)
	if err != nil {
		return res, err
	}
	res.PerNode = before.PerNode
	p("start:  %d children stored in %v, all running after %v (%d etcd revisions, %.0f/s); CountChildren: %d running",
		cfg.Children, res.Stored.Round(time.Millisecond), res.Running.Round(time.Millisecond),
		res.StartRevisions, float64(res.StartRevisions)/res.Running.Seconds(), n.Running)
	p("        per node: %v; CPU: %v in etcd and coordinator, %v in node processes (%.0f µs per child in all)", before.PerNode,
		res.StartCPU[0].Round(time.Millisecond), res.StartCPU[1].Round(time.Millisecond),
		float64((res.StartCPU[0]+res.StartCPU[1]).Microseconds())/float64(cfg.Children))
	if cfg.StartOnly {
		return res, nil
	}

	// Join.
	if cpu0, err = c.cpu(ctx); err != nil {
		return res, err
	}
	added, err := c.AddNodes(ctx, 1)
	if err != nil {
		return res, err
	}
	joined := time.Now()
	res.Joined = added[0]
	if err := c.waitMember(ctx, res.Joined); err != nil {
		return res, err
	}
	for id := range before.Where {
		if node, _ := c.Sup.NodeFor(id); node == res.Joined {
			res.Owned++
		}
	}
	res.Ideal = cfg.Children / (cfg.Cluster.Nodes + 1)
	if err := c.waitJoined(ctx, cfg.Poll, res.Joined, res.Owned, cfg.Children); err != nil {
		return res, err
	}
	res.Converged = time.Since(joined)
	if res.JoinCPU, err = c.cpuSince(ctx, cpu0); err != nil {
		return res, err
	}
	after, err := c.Placement(ctx)
	if err != nil {
		return res, err
	}
	misplaced := 0
	for id, node := range after.Where {
		if node != before.Where[id] {
			res.Moved++
		}
		if want, _ := c.Sup.NodeFor(id); want != node {
			misplaced++
		}
	}
	if len(after.Where) != cfg.Children || misplaced != 0 {
		return res, fmt.Errorf("after the join %d of %d children run, %d not on their ring owner", len(after.Where), cfg.Children, misplaced)
	}
	p("join:   %s took %d children (ideal quarter %d: %.2fx), converged %v after it was ready (stable window %v); per node: %v",
		res.Joined, res.Moved, res.Ideal, float64(res.Moved)/float64(res.Ideal), res.Converged.Round(time.Millisecond),
		res.StableWindow, after.PerNode)
	p("        CPU: %v in etcd and coordinator, %v in node processes (%.0f µs per moved child in all)",
		res.JoinCPU[0].Round(time.Millisecond), res.JoinCPU[1].Round(time.Millisecond),
		float64((res.JoinCPU[0]+res.JoinCPU[1]).Microseconds())/float64(max(res.Moved, 1)))

	// Kill.
	res.Victim = c.Nodes()[0]
	res.Orphans = after.PerNode[res.Victim]
	killed := time.Now()
	if err := c.Kill(res.Victim); err != nil {
		return res, err
	}
	gone, err := c.waitRecovered(ctx, cfg.Poll, res.Victim, cfg.Children)
	if err != nil {
		return res, err
	}
	res.Recovered = time.Since(killed)
	res.LeaseGone = gone.Sub(killed)
	final, err := c.Placement(ctx)
	if err != nil {
		return res, err
	}
	if len(final.Where) != cfg.Children || final.PerNode[res.Victim] != 0 {
		return res, fmt.Errorf("after the kill %d of %d children run, %d on the dead node", len(final.Where), cfg.Children, final.PerNode[res.Victim])
	}
	p("kill:   kill -9 %s (%d children): lease gone after %v, all running elsewhere after %v (TTL %v); per node: %v",
		res.Victim, res.Orphans, res.LeaseGone.Round(time.Millisecond), res.Recovered.Round(time.Millisecond),
		res.TTL, final.PerNode)
	return res, nil
}

// cpu is what CPU returns, as a pair.
func (c *Cluster) cpu(ctx context.Context) ([2]time.Duration, error) {
	a, b, err := c.CPU(ctx)
	return [2]time.Duration{a, b}, err
}

// cpuSince is the processor time used since the pair since was taken.
// A node process started meanwhile counts from its start.
func (c *Cluster) cpuSince(ctx context.Context, since [2]time.Duration) ([2]time.Duration, error) {
	now, err := c.cpu(ctx)
	return [2]time.Duration{now[0] - since[0], now[1] - since[1]}, err
}

func (c *Cluster) revision(ctx context.Context) (int64, error) {
	resp, err := c.Coordinator.Client().Get(ctx, c.Coordinator.Prefix()+"/", clientv3.WithCountOnly())
	if err != nil {
		return 0, err
	}
	return resp.Header.Revision, nil
}

// poll calls done every interval until it reports true; every 2s it
// writes what status returns to c.progress, if set. Both should be cheap:
// what they cost is taken from the cluster being measured.
func (c *Cluster) poll(ctx context.Context, every time.Duration, done func() (bool, error), status func() string) error {
	last := time.Now()
	for {
		ok, err := done()
		if err != nil {
			return err
		}
		if ok {
			return nil
		}
		if c.progress != nil && status != nil && time.Since(last) >= 2*time.Second {
			last = time.Now()
			c.progress(status())
		}
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-time.After(every):
		}
	}
}

// waitLocalTotal waits until the node processes run n counters in all.
func (c *Cluster) waitLocalTotal(ctx context.Context, every time.Duration, n int) error {
	var total int64
	return c.poll(ctx, every, func() (bool, error) {
		var err error
		total, err = c.LocalTotal(ctx)
		return total == int64(n), err
	}, func() string { return fmt.Sprintf("        waiting: %d of %d running", total, n) })
}

// waitMember waits until the coordinator's ring has node id with the
// counter kind and running the supervisor, the two things placement asks
// of a node.
func (c *Cluster) waitMember(ctx context.Context, id string) error {
	return c.poll(ctx, 5*time.Millisecond, func() (bool, error) {
		for _, m := range c.Sup.Nodes() {
			if m.ID == id && m.HasKind(Kind) && m.RunsSupervisor(c.cfg.Supervisor) {
				return true, nil
			}
		}
		return false, nil
	}, nil)
}

// waitJoined waits until node id runs the owned counters the ring gives
// it and the nodes run n in all.
func (c *Cluster) waitJoined(ctx context.Context, every time.Duration, id string, owned, n int) error {
	var local, total int64
	return c.poll(ctx, every, func() (bool, error) {
		s, err := c.Stats(ctx, id)
		if err != nil {
			return false, err
		}
		local = s.Local
		if total, err = c.LocalTotal(ctx); err != nil {
			return false, err
		}
		return local == int64(owned) && total == int64(n), nil
	}, func() string {
		return fmt.Sprintf("        waiting: %s runs %d of its %d, %d of %d running", id, local, owned, total, n)
	})
}

// waitRecovered waits until the dead node's member key is gone and the
// live nodes run n counters, and returns when the key was first seen gone.
func (c *Cluster) waitRecovered(ctx context.Context, every time.Duration, dead string, n int) (time.Time, error) {
	var gone time.Time
	var total int64
	key := ring.MemberKey(c.Coordinator.Prefix(), dead)
	err := c.poll(ctx, every, func() (bool, error) {
		if gone.IsZero() {
			resp, err := c.Coordinator.Client().Get(ctx, key, clientv3.WithCountOnly())
			if err != nil {
				return false, err
			}
			if resp.Count > 0 {
				return false, nil
			}
			gone = time.Now()
		}
		var err error
		total, err = c.LocalTotal(ctx)
		return total == int64(n), err
	}, func() string {
		if gone.IsZero() {
			return "        waiting: the dead node's lease has not expired yet"
		}
		return fmt.Sprintf("        waiting: %d of %d running", total, n)
	})
	return gone, err
}
