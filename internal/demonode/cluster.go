//go:build unix

package demonode

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"sync"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/supervisor"
)

// ClusterConfig configures a Cluster. The zero value works: an embedded
// etcd, three node processes running this executable, lease TTL 2s.
type ClusterConfig struct {
	// Endpoints are the etcd client URLs to join. Empty means: start an
	// embedded etcd in this process (data in a temporary directory,
	// removed by Close).
	Endpoints []string
	// Nodes is how many node processes to start. Default 3.
	Nodes int
	// LeaseTTL is every node's lease TTL. Default 2s.
	LeaseTTL time.Duration
	// Supervisor names the distributed supervisor. Default "counters".
	Supervisor string
	// MoveBatch and StableWindow are passed to DistributedOptions on
	// every node (zero: the defaults).
	MoveBatch    int
	StableWindow time.Duration
	// Singleton makes every node a candidate for the singleton worker.
	Singleton bool
	// Command runs a node process: a program that calls MaybeRunNode
	// first. Default: this executable, with no arguments.
	Command []string
	// Warnings sends the nodes' warnings and errors to standard error.
	Warnings bool
	// CPUProfileDir, if set, has each node write its CPU profile to
	// <dir>/<node id>.cpu (flushed when the node exits).
	CPUProfileDir string
	// Output, if set, receives the lines node processes print, besides
	// "ready".
	Output func(node, line string)
	// ObserveLater leaves Sup nil until Observe: the coordinator then
	// mirrors nothing of the supervisor (and costs the nodes and etcd
	// nothing) until asked.
	ObserveLater bool
}

// Cluster is a coordinator and its node processes. The coordinator is a
// cohort node itself (id "coordinator") that registers no kind, so no
// counter runs on it; it holds the embedded etcd when there is one, and
// reaches the distributed supervisor through Sup.
type Cluster struct {
	// Coordinator is this process's node.
	Coordinator *cohort.Node
	// Sup is the distributed supervisor, as seen from the coordinator.
	Sup *supervisor.Distributed

	cfg      ClusterConfig
	cluster  string
	progress func(string)

	mu    sync.Mutex
	procs map[string]*Process
	next  int
}

// StartCluster starts etcd (unless cfg.Endpoints is set), the coordinator
// and cfg.Nodes node processes, in a new cluster with a random name. On
// failure everything started is stopped again.
func StartCluster(ctx context.Context, cfg ClusterConfig) (_ *Cluster, err error) {
	if cfg.Nodes <= 0 {
		cfg.Nodes = 3
	}
	if cfg.LeaseTTL <= 0 {
		cfg.LeaseTTL = 2 * time.Second
	}
	if cfg.Supervisor == "" {
		cfg.Supervisor = "counters"
	}
	if len(cfg.Command) == 0 {
		exe, err := os.Executable()
		if err != nil {
			return nil, err
		}
		cfg.Command = []string{exe}
	}
	var b [4]byte
	_, _ = rand.Read(b[:])
	c := &Cluster{cfg: cfg, cluster: "demo-" + hex.EncodeToString(b[:]), procs: map[string]*Process{}}
	c.Coordinator, err = cohort.Start(ctx, cohort.Config{NodeID: "coordinator", Cluster: c.cluster,
		Endpoints: cfg.Endpoints, LeaseTTL: cfg.LeaseTTL})
	if err != nil {
		return nil, err
	}
	defer func() {
		if err != nil {
			_ = c.Close(context.Background(), false)
		}
	}()
	if !cfg.ObserveLater {
		if err := c.Observe(ctx); err != nil {
			return nil, err
		}
	}
	if _, err := c.AddNodes(ctx, cfg.Nodes); err != nil {
		return nil, err
	}
	return c, nil
}

// Observe starts the coordinator's view of the distributed supervisor,
// Sup, unless it runs already.
func (c *Cluster) Observe(ctx context.Context) error {
	if c.Sup != nil {
		return nil
	}
	sup, err := c.Coordinator.DistributedSupervisor(ctx, c.cfg.Supervisor, supervisor.DistributedOptions{
		MoveBatch: c.cfg.MoveBatch, StableWindow: c.cfg.StableWindow})
	if err != nil {
		return err
	}
	c.Sup = sup
	return nil
}

// StartCounters has node id start counters as m says, without waiting
// for them; StartStatus tells when it is done.
func (c *Cluster) StartCounters(ctx context.Context, id string, m StartCounters) error {
	_, err := c.Coordinator.CallName(ctx, id, ControlName, m)
	return err
}

// StartStatus asks node id how its last StartCounters went.
func (c *Cluster) StartStatus(ctx context.Context, id string) (StartStatus, error) {
	return control[StartStatus](ctx, c, id, StartStatusRequest{})
}

// control calls node id's control actor with msg, whose answer is a T.
func control[T any](ctx context.Context, c *Cluster, id string, msg any) (T, error) {
	var zero T
	v, err := c.Coordinator.CallName(ctx, id, ControlName, msg)
	if err != nil {
		return zero, err
	}
	t, ok := v.(T)
	if !ok {
		return zero, fmt.Errorf("demonode: node %s answered %T, want %T", id, v, zero)
	}
	return t, nil
}

// Endpoints returns the etcd client URLs the cluster uses.
func (c *Cluster) Endpoints() []string { return c.Coordinator.Endpoints() }

// Embedded reports whether the cluster runs on an etcd embedded in this
// process.
func (c *Cluster) Embedded() bool { return len(c.cfg.Endpoints) == 0 }

// AddNodes starts n more node processes, in parallel, named node-1,
// node-2, ... in order, and returns their ids once all are ready.
func (c *Cluster) AddNodes(ctx context.Context, n int) ([]string, error) {
	c.mu.Lock()
	ids := make([]string, n)
	for i := range ids {
		c.next++
		ids[i] = fmt.Sprintf("node-%d", c.next)
	}
	c.mu.Unlock()
	errs := make([]error, n)
	var wg sync.WaitGroup
	for i, id := range ids {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = c.spawn(ctx, id)
		}()
	}
	wg.Wait()
	return ids, errors.Join(errs...)
}

func (c *Cluster) spawn(ctx context.Context, id string) error {
	cfg := NodeConfig{ID: id, Endpoints: c.Endpoints(), Cluster: c.cluster, LeaseTTL: c.cfg.LeaseTTL,
		Supervisor: c.cfg.Supervisor, MoveBatch: c.cfg.MoveBatch, StableWindow: c.cfg.StableWindow,
		Singleton: c.cfg.Singleton, Warnings: c.cfg.Warnings}
	if c.cfg.CPUProfileDir != "" {
		cfg.CPUProfile = filepath.Join(c.cfg.CPUProfileDir, id+".cpu")
	}
	var out func(string)
	if c.cfg.Output != nil {
		out = func(line string) { c.cfg.Output(id, line) }
	}
	p, err := Spawn(ctx, c.cfg.Command, cfg, out)
	if err != nil {
		return err
	}
	c.mu.Lock()
	c.procs[id] = p
	c.mu.Unlock()
	return nil
}

// Nodes returns the ids of the node processes still running, sorted.
func (c *Cluster) Nodes() []string {
	c.mu.Lock()
	defer c.mu.Unlock()
	ids := make([]string, 0, len(c.procs))
	for id := range c.procs {
		ids = append(ids, id)
	}
	slices.Sort(ids)
	return ids
}

func (c *Cluster) take(id string) (*Process, error) {
	c.mu.Lock()
	defer c.mu.Unlock()
	p, ok := c.procs[id]
	if !ok {
		return nil, fmt.Errorf("demonode: no node process %s", id)
	}
	delete(c.procs, id)
	return p, nil
}

// Kill kills the node process id with SIGKILL and reaps it.
func (c *Cluster) Kill(id string) error {
	p, err := c.take(id)
	if err != nil {
		return err
	}
	p.Kill()
	return nil
}

// Stop stops the node process id gracefully: it hands its counters, with
// their state, to the other nodes and leaves.
func (c *Cluster) Stop(ctx context.Context, id string) error {
	p, err := c.take(id)
	if err != nil {
		return err
	}
	return p.Stop(ctx)
}

// Stats asks node id for its counts.
func (c *Cluster) Stats(ctx context.Context, id string) (Stats, error) {
	return control[Stats](ctx, c, id, StatsRequest{})
}

// LocalTotal sums the counters running on the live node processes, as
// each reports it.
func (c *Cluster) LocalTotal(ctx context.Context) (int64, error) {
	var total int64
	for _, id := range c.Nodes() {
		s, err := c.Stats(ctx, id)
		if err != nil {
			return 0, err
		}
		total += s.Local
	}
	return total, nil
}

// CPU returns the processor time used so far by this process (etcd, when
// embedded, and the coordinator) and by the live node processes.
func (c *Cluster) CPU(ctx context.Context) (coordinator, nodes time.Duration, err error) {
	for _, id := range c.Nodes() {
		s, err := c.Stats(ctx, id)
		if err != nil {
			return 0, 0, err
		}
		nodes += s.CPU
	}
	return cpuTime(), nodes, nil
}

// Probe has node from call each counter in ids with Add{n}.
func (c *Cluster) Probe(ctx context.Context, from string, ids []string, n int64) (ProbeResult, error) {
	return control[ProbeResult](ctx, c, from, Probe{IDs: ids, N: n})
}

// Placement is where the children run, as of one etcd revision.
type Placement struct {
	// Where maps each running child to its node.
	Where map[string]string
	// PerNode counts the running children of each node.
	PerNode map[string]int
	Specs   int
	Pending int
	Failed  int
}

// Placement reads where every child runs, at one revision.
func (c *Cluster) Placement(ctx context.Context) (Placement, error) {
	cs, err := c.Sup.WhichChildren(ctx)
	if err != nil {
		return Placement{}, err
	}
	p := Placement{Where: make(map[string]string, len(cs)), PerNode: map[string]int{}, Specs: len(cs)}
	for _, ch := range cs {
		switch ch.Status {
		case supervisor.StatusRunning:
			p.Where[ch.ID] = ch.Node
			p.PerNode[ch.Node]++
		case supervisor.StatusFailed:
			p.Failed++
		default:
			p.Pending++
		}
	}
	return p, nil
}

// WaitPlacement reads the placement every interval until ok accepts it,
// and returns it.
func (c *Cluster) WaitPlacement(ctx context.Context, interval time.Duration, ok func(Placement) bool) (Placement, error) {
	for {
		p, err := c.Placement(ctx)
		if err == nil && ok(p) {
			return p, nil
		}
		select {
		case <-ctx.Done():
			if err == nil {
				err = ctx.Err()
			}
			return p, fmt.Errorf("demonode: waiting for the placement: %w", err)
		case <-time.After(interval):
		}
	}
}

// Close ends every node process — gracefully (handing children over) if
// graceful, else at once as a crash would, flushing CPU profiles — then,
// on an external etcd, deletes the specs the cluster left there, and stops
// the coordinator (and the embedded etcd, removing its data). It returns
// once every process has been reaped.
func (c *Cluster) Close(ctx context.Context, graceful bool) error {
	var errs []error
	var mu sync.Mutex
	var wg sync.WaitGroup
	for _, id := range c.Nodes() {
		p, err := c.take(id)
		if err != nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			pctx, cancel := context.WithTimeout(ctx, stopTimeout)
			defer cancel()
			var err error
			if graceful {
				err = p.Stop(pctx)
			} else {
				err = p.Exit(pctx)
			}
			if err != nil {
				mu.Lock()
				errs = append(errs, fmt.Errorf("node %s: %w", p.ID, err))
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if !c.Embedded() {
		dctx, cancel := context.WithTimeout(ctx, 10*time.Second)
		_, err := c.Coordinator.Client().Delete(dctx, c.Coordinator.Prefix()+"/sup/", clientv3.WithPrefix())
		cancel()
		if err != nil {
			errs = append(errs, fmt.Errorf("delete the cluster's specs: %w", err))
		}
	}
	sctx, cancel := context.WithTimeout(ctx, stopTimeout)
	defer cancel()
	if err := c.Coordinator.Stop(sctx); err != nil {
		errs = append(errs, err)
	}
	return errors.Join(errs...)
}
