//go:build linux

package e2e

import (
	"context"
	"fmt"
	"math/rand/v2"
	"os"
	"slices"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/embedetcd"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/supervisor"
)

// Fault types.
const (
	faultKill       = "kill -9 of a node"
	faultPause      = "SIGSTOP of a node past the TTL"
	faultPartition  = "node cut off from etcd"
	faultEtcdLeader = "kill -9 of the etcd leader"
	faultRolling    = "rolling restart (per node)"
	faultLinkCut    = "transport link cut between two nodes"
	faultLinkHole   = "transport link blackholed between two nodes"
)

var faultTypes = []string{faultKill, faultPause, faultPartition, faultEtcdLeader, faultRolling, faultLinkCut, faultLinkHole}

// suiteConfig is the size and length of a run. The short run (the
// default) injects one fault of each type; COHORT_E2E_LONG=1 injects
// COHORT_E2E_FAULTS faults (default 200) chosen at random.
type suiteConfig struct {
	long       bool
	nodes      int
	children   int // permanent heartbeat children
	counters   int // permanent counters that hand their value off
	transients int // transient children running at a time
	temporarys int // temporary children running at a time, at most
	faults     int
	ttl        time.Duration
	seed       uint64
	settle     time.Duration // limit for the cluster to settle after a fault
	slack      time.Duration // how late a call may end after its deadline
	report     string        // file for the markdown table
}

func envInt(name string, def int) int {
	if v, err := strconv.Atoi(os.Getenv(name)); err == nil {
		return v
	}
	return def
}

func loadConfig() suiteConfig {
	c := suiteConfig{nodes: 3, children: 1000, counters: 50, transients: 20, temporarys: 20, ttl: 2 * time.Second, settle: 60 * time.Second,
		slack: 200 * time.Millisecond, seed: uint64(time.Now().UnixNano()), report: os.Getenv("COHORT_E2E_REPORT")}
	if raceBuild {
		// Under the race detector every process runs several times slower
		// and the scheduling probe under-counts the delay; a call that hangs
		// past its deadline is still caught.
		c.slack = time.Second
	}
	if os.Getenv("COHORT_E2E_LONG") == "1" {
		c.long = true
		c.faults = envInt("COHORT_E2E_FAULTS", 200)
	}
	c.nodes = envInt("COHORT_E2E_NODES", c.nodes)
	c.children = envInt("COHORT_E2E_CHILDREN", c.children)
	if s := os.Getenv("COHORT_E2E_SEED"); s != "" {
		c.seed, _ = strconv.ParseUint(s, 10, 64)
	}
	return c
}

// node is one node id of the cluster, its proxies to each etcd member,
// the proxy in front of its transport, and its current process.
type node struct {
	id      string
	proxies []*etcdtest.Proxy
	// link is the address the node publishes for its transport: peers
	// reach it only through this proxy, which tells them apart, so the
	// link between two nodes can be cut in both directions alone.
	link *etcdtest.Proxy
	p    *proc
}

func (n *node) cut() {
	for _, p := range n.proxies {
		p.Cut()
	}
}

func (n *node) heal() {
	for _, p := range n.proxies {
		p.Heal()
	}
}

// suite is a running cluster under test: three etcd member processes,
// node processes behind proxies, and an observer node in the test process
// that reads the distributed supervisor's state.
type suite struct {
	t    *testing.T
	cfg  suiteConfig
	rng  *rand.Rand
	ps   *procs
	etcd *etcdCluster
	obs  *cohort.Node
	sup  *supervisor.Distributed
	rec  *recorder
	list listCheck

	nodes []*node

	mu       sync.Mutex
	exp      expectation
	nextTr   int // the next transient child's number
	nextTmp  int // the next temporary child's number
	handoffs int // planned moves of counters checked
	// unrecordedExits: transient exits as their node was fenced (see
	// checkRestartTypes).
	unrecordedExits int
	violations      map[string]violation
	order           []string
	stats           map[string]*faultStats
	lateCalls       int           // calls that ended more than slack after their deadline
	worstLate       time.Duration // the latest of them
}

// faultStats are the figures of one fault type.
type faultStats struct {
	injected   int
	violations int
	children   []time.Duration // failover of the children of the faulted node
	singleton  []time.Duration // failover of the singleton, when the node held it
	etcd       []time.Duration // etcd unavailable for
	linkBack   []time.Duration // from a link's heal to the first call answered across it both ways
}

func newSuite(t *testing.T, cfg suiteConfig) *suite {
	s := &suite{t: t, cfg: cfg, rng: rand.New(rand.NewPCG(cfg.seed, 0)), rec: newRecorder(),
		violations: map[string]violation{}, stats: map[string]*faultStats{},
		exp: expectation{present: map[string]bool{}, exited: map[string]int64{}, temporary: map[string]bool{}}}
	for _, f := range faultTypes {
		s.stats[f] = &faultStats{}
	}
	s.ps = newProcs(t)
	var err error
	s.etcd, err = startEtcd(s.ps, 3)
	if err != nil {
		t.Fatalf("etcd cluster: %v", err)
	}
	for i := range cfg.nodes {
		n := &node{id: fmt.Sprintf("n%d", i+1)}
		for _, url := range s.etcd.clients {
			n.proxies = append(n.proxies, etcdtest.NewProxy(t, url))
		}
		// The target is set before each start of the node.
		n.link = etcdtest.NewProxyWith(t, "127.0.0.1:1", etcdtest.ProxyOptions{Source: s.ps.sourceOf})
		s.nodes = append(s.nodes, n)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	s.obs, err = cohort.Start(ctx, cohort.Config{NodeID: "observer", Cluster: clusterName, Endpoints: s.etcd.clients,
		LeaseTTL: cfg.ttl, DialTimeout: 5 * time.Second, Logger: s.ps.logger("observer")})
	if err != nil {
		t.Fatalf("observer node: %v", err)
	}
	s.sup, err = s.obs.DistributedSupervisor(ctx, supName, supervisor.DistributedOptions{})
	if err != nil {
		t.Fatalf("observer supervisor: %v", err)
	}
	// Cleanups run last-registered first: the node processes stop while
	// etcd and the proxies still run, then the observer.
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
		defer scancel()
		_ = s.obs.Stop(sctx)
	})
	t.Cleanup(s.stopNodes)
	var wg sync.WaitGroup
	errs := make([]error, len(s.nodes))
	for i, n := range s.nodes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			errs[i] = s.startNode(n)
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			t.Fatal(err)
		}
	}
	return s
}

// startNode starts a process of node n. Its transport listens on a free
// port, behind n.link; a port taken by another process between the test
// picking it and the node listening on it is picked again.
func (s *suite) startNode(n *node) error {
	var eps []string
	for _, p := range n.proxies {
		eps = append(eps, p.Addr())
	}
	var p *proc
	for attempt := 0; ; attempt++ {
		port, err := embedetcd.FreePort()
		if err != nil {
			return err
		}
		listen := fmt.Sprintf("127.0.0.1:%d", port)
		n.link.SetTarget(listen)
		p, err = s.ps.start("node-"+n.id, []string{
			envRole + "=" + roleNode, envNodeID + "=" + n.id, envNodeEtcd + "=" + strings.Join(eps, ","),
			envNodeTTL + "=" + s.cfg.ttl.String(), envNodeChildren + "=" + strconv.Itoa(s.cfg.children),
			envNodeCounters + "=" + strconv.Itoa(s.cfg.counters),
			envNodeListen + "=" + listen, envNodeAddr + "=" + n.link.Addr(),
		}, func(line string) { s.rec.line(n.id, line) }, 90*time.Second)
		if err == nil {
			break
		}
		if attempt == 2 || !strings.Contains(err.Error(), "Transport.ListenAddr") {
			return err
		}
		s.t.Logf("%s: %v; trying another port", n.id, err)
	}
	go func() {
		<-p.Done()
		s.rec.processEnded(n.id)
	}()
	n.p = p
	return nil
}

func (s *suite) stopNodes() {
	var wg sync.WaitGroup
	for _, n := range s.nodes {
		if n.p == nil {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			n.heal()
			n.p.Stop(30 * time.Second)
		}()
	}
	wg.Wait()
}

func (s *suite) liveIDs(except *node) []string {
	var ids []string
	for _, n := range s.nodes {
		if n != except {
			ids = append(ids, n.id)
		}
	}
	return ids
}

func (s *suite) violate(kind string, vs ...violation) {
	s.mu.Lock()
	defer s.mu.Unlock()
	for _, v := range vs {
		key := v.String()
		if _, ok := s.violations[key]; ok {
			continue
		}
		s.violations[key] = v
		s.order = append(s.order, key)
		if st := s.stats[kind]; st != nil {
			st.violations++
		}
		s.t.Logf("VIOLATION after %s: %s", kind, v)
	}
}

// seed stores the children's specs through the observer, once every node
// offers the kind.
func (s *suite) seed() {
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	for {
		offering := 0
		for _, m := range s.obs.Ring().Nodes() {
			if m.HasKind(kindHB) && m.RunsSupervisor(supName) {
				offering++
			}
		}
		if offering == len(s.nodes) {
			break
		}
		select {
		case <-ctx.Done():
			s.t.Fatalf("nodes offering %q: %d of %d", kindHB, offering, len(s.nodes))
		case <-time.After(50 * time.Millisecond):
		}
	}
	var specs []supervisor.ChildSpec
	for i := range s.cfg.children {
		specs = append(specs, supervisor.ChildSpec{ID: childID(i), Kind: kindHB, Shutdown: 2 * time.Second})
	}
	for i := range s.cfg.counters {
		specs = append(specs, supervisor.ChildSpec{ID: counterID(i), Kind: kindCtr, Shutdown: 2 * time.Second})
	}
	s.mu.Lock()
	for _, sp := range specs {
		s.exp.present[sp.ID] = true
	}
	s.mu.Unlock()
	if _, err := s.sup.StartChildren(ctx, specs); err != nil {
		s.t.Fatalf("start children: %v", err)
	}
	if err := s.topUp(ctx); err != nil {
		s.t.Fatalf("start transient and temporary children: %v", err)
	}
}

// topUp starts transient children until cfg.transients run, and temporary
// ones until cfg.temporarys have a spec.
func (s *suite) topUp(ctx context.Context) error {
	cs, err := s.sup.WhichChildren(ctx)
	if err != nil {
		return err
	}
	s.mu.Lock()
	var specs []supervisor.ChildSpec
	tr, tmp := 0, 0
	for _, c := range cs {
		switch {
		case s.exp.temporary[c.ID]:
			tmp++
		case s.exp.present[c.ID] && strings.HasPrefix(c.ID, "t"):
			tr++
		}
	}
	for ; tr < s.cfg.transients; tr++ {
		id := transientID(s.nextTr)
		s.nextTr++
		s.exp.present[id] = true
		specs = append(specs, supervisor.ChildSpec{ID: id, Kind: kindHB, Restart: supervisor.Transient, Shutdown: 2 * time.Second})
	}
	for ; tmp < s.cfg.temporarys; tmp++ {
		id := temporaryID(s.nextTmp)
		s.nextTmp++
		s.exp.temporary[id] = true
		specs = append(specs, supervisor.ChildSpec{ID: id, Kind: kindHB, Restart: supervisor.Temporary, Shutdown: 2 * time.Second})
	}
	s.mu.Unlock()
	if len(specs) == 0 {
		return nil
	}
	_, err = s.sup.StartChildren(ctx, specs)
	return err
}

// expected returns a copy of what the test expects to exist.
func (s *suite) expected() expectation {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.exp.clone()
}

// restartTypes makes one transient child exit normally and another crash,
// starts transient and temporary children to replace those gone, and
// checks, once the cluster settled, that the first is gone for good and
// the second runs again as a new instance.
func (s *suite) restartTypes(kind string) {
	exp := s.expected()
	var trs []string
	for id := range exp.present {
		if strings.HasPrefix(id, "t") {
			trs = append(trs, id)
		}
	}
	slices.Sort(trs)
	if len(trs) < 2 {
		s.t.Fatalf("%d transient children", len(trs))
	}
	i := s.rng.IntN(len(trs))
	exiting, crashing := trs[i], trs[(i+1+s.rng.IntN(len(trs)-1))%len(trs)]
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	before, err := s.refOf(ctx, crashing)
	if err != nil {
		s.violate(kind, violation{invCallFailed, fmt.Sprintf("transient child %s: %v", crashing, err)})
		return
	}
	// The cluster has settled: a call to a running child must be answered.
	for _, c := range []struct{ id, msg string }{{exiting, msgExit}, {crashing, msgCrash}} {
		cctx, ccancel := context.WithTimeout(ctx, 5*time.Second)
		_, err := s.sup.Call(cctx, c.id, c.msg)
		ccancel()
		if err != nil {
			s.violate(kind, violation{invCallFailed, fmt.Sprintf("call %s %q: %v", c.id, c.msg, err)})
			return
		}
	}
	at := proctest.Mono()
	s.mu.Lock()
	delete(s.exp.present, exiting)
	s.exp.exited[exiting] = at
	s.mu.Unlock()
	if err := s.topUp(ctx); err != nil {
		s.violate(kind, violation{invCallFailed, fmt.Sprintf("start transient and temporary children: %v", err)})
	}
	s.waitSettled(kind, fmt.Sprintf("after transient child %s exited normally and %s crashed", exiting, crashing), s.liveIDs(nil))
	if after, err := s.refOf(ctx, crashing); err != nil || after == before {
		s.violate(kind, violation{invTransientCrash, fmt.Sprintf("%s crashed as %s; now %s, %v", crashing, refString(before), refString(after), err)})
	}
}

// refOf returns where child id runs, read from etcd as waitSettled reads
// it (Whereis answers from the observer's watch-fed view, which may not
// have caught up yet).
func (s *suite) refOf(ctx context.Context, id string) (actor.Ref, error) {
	cs, err := s.sup.WhichChildren(ctx)
	if err != nil {
		return actor.Ref{}, err
	}
	for _, c := range cs {
		if c.ID == id {
			if c.Ref.IsZero() {
				return actor.Ref{}, fmt.Errorf("%w: %q", supervisor.ErrNotRunning, id)
			}
			return c.Ref, nil
		}
	}
	return actor.Ref{}, fmt.Errorf("%w: %q", supervisor.ErrChildNotFound, id)
}

// waitSettled waits until every child runs exactly once on the live nodes
// and the singleton runs, then runs the checkers over everything recorded.
// It returns how long settling took.
func (s *suite) waitSettled(kind, what string, live []string) time.Duration {
	began := time.Now()
	deadline := began.Add(s.cfg.settle)
	var problem string
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		ok, p, err := settled(ctx, s.obs.Client(), s.sup, s.rec, s.expected(), live)
		cancel()
		if err == nil {
			problem = p
		} else {
			problem = err.Error()
		}
		if ok {
			break
		}
		if time.Now().After(deadline) {
			for _, n := range s.nodes {
				if n.p != nil && n.p.Alive() {
					_ = n.p.Signal(syscall.SIGUSR1)
				}
			}
			s.violate(kind, violation{invNotSettled, fmt.Sprintf("%s: not settled within %v: %s", what, s.cfg.settle, problem)})
			if !s.cfg.long {
				s.t.FailNow()
			}
			break
		}
		time.Sleep(200 * time.Millisecond)
	}
	took := time.Since(began)
	s.check(kind)
	return took
}

// check runs the checkers over everything recorded so far.
func (s *suite) check(kind string) {
	snap := s.rec.snapshot()
	s.violate(kind, checkIncarnations(snap)...)
	s.violate(kind, checkTenures(snap)...)
	calls, worst, raw := checkCalls(snap, s.cfg.slack)
	s.violate(kind, calls...)
	s.mu.Lock()
	s.lateCalls, s.worstLate = raw, worst
	s.mu.Unlock()
	for _, b := range snap.bad {
		s.violate(kind, violation{invBadReport, b})
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	vs, _, err := s.list.check(ctx, s.obs.Client())
	if err != nil {
		s.t.Logf("reading the list: %v", err)
	}
	s.violate(kind, vs...)
	exp := s.expected()
	vs, rep := checkRestartTypes(snap, exp, s.cfg.ttl)
	s.violate(kind, vs...)
	s.mu.Lock()
	s.handoffs, s.unrecordedExits = rep.handoffs, rep.unrecordedExits
	s.mu.Unlock()
	cs, err := s.sup.WhichChildren(ctx)
	if err == nil {
		have := map[string]bool{}
		for _, c := range cs {
			have[c.ID] = true
		}
		var lost []string
		for id := range exp.present {
			if !have[id] {
				lost = append(lost, id)
			}
		}
		if len(lost) > 0 {
			slices.Sort(lost)
			s.violate(kind, violation{invSpecsLost, fmt.Sprintf("%d specs lost: %v", len(lost), lost[:min(len(lost), 10)])})
		}
	}
}

// holder returns the node running the singleton, by the freshest tenure.
func (s *suite) holder() *node {
	snap := s.rec.snapshot()
	var best *tenure
	for i := range snap.tenures {
		t := &snap.tenures[i]
		if t.end == 0 && (best == nil || t.lastAlive > best.lastAlive) {
			best = t
		}
	}
	if best != nil {
		for _, n := range s.nodes {
			if n.id == best.node {
				return n
			}
		}
	}
	return s.nodes[0]
}

// target picks the node a fault hits: half of the time the singleton's
// holder, else any node.
func (s *suite) target() *node {
	if s.rng.IntN(2) == 0 {
		return s.holder()
	}
	return s.nodes[s.rng.IntN(len(s.nodes))]
}

// hold is how long a pause or a partition lasts: past the TTL, so the
// node's work is taken over; in the long run anywhere from just below the
// fencing point to three TTLs.
func (s *suite) hold() time.Duration {
	if !s.cfg.long {
		return s.cfg.ttl + 1500*time.Millisecond
	}
	lo, hi := s.cfg.ttl/2, 3*s.cfg.ttl
	return lo + time.Duration(s.rng.Int64N(int64(hi-lo)))
}

func (s *suite) measure(kind string, n *node, t0 int64) {
	children, moved, single, held := failover(s.rec.snapshot(), n.id, t0)
	s.mu.Lock()
	defer s.mu.Unlock()
	st := s.stats[kind]
	if moved > 0 {
		st.children = append(st.children, children)
	}
	if held {
		st.singleton = append(st.singleton, single)
	}
	s.t.Logf("%s on %s: %d children ran again within %v; singleton: held %v, again within %v", kind, n.id, moved, children, held, single)
}

func (s *suite) count(kind string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.stats[kind].injected++
}

func (s *suite) restart(kind string, n *node) {
	if err := s.startNode(n); err != nil {
		s.violate(kind, violation{invStopHung, fmt.Sprintf("restart of %s: %v", n.id, err)})
		s.t.Fatal(err)
	}
}

// kill9 kills a node with SIGKILL; once the others run its work, it
// starts again.
func (s *suite) kill9(n *node) {
	s.count(faultKill)
	t0 := proctest.Mono()
	n.p.Kill()
	s.waitSettled(faultKill, "after kill -9 of "+n.id, s.liveIDs(n))
	s.measure(faultKill, n, t0)
	s.restart(faultKill, n)
	s.waitSettled(faultKill, "after the restart of "+n.id, s.liveIDs(nil))
}

// pauseNode stops a node with SIGSTOP for hold, then continues it. While
// it is stopped for longer than the TTL, the others must run its work
// exactly once.
func (s *suite) pauseNode(n *node, hold time.Duration) {
	s.count(faultPause)
	t0 := proctest.Mono()
	if err := n.p.Signal(syscall.SIGSTOP); err != nil {
		s.t.Fatal(err)
	}
	s.rec.paused(n.id, t0)
	if hold > s.cfg.ttl+time.Second {
		s.waitSettled(faultPause, fmt.Sprintf("while %s is stopped", n.id), s.liveIDs(n))
	}
	time.Sleep(time.Duration(t0 + int64(hold) - proctest.Mono()))
	resumed := proctest.Mono()
	if err := n.p.Signal(syscall.SIGCONT); err != nil {
		s.t.Fatal(err)
	}
	s.rec.resumed(n.id, resumed)
	s.waitSettled(faultPause, fmt.Sprintf("after %s resumed (stopped %v)", n.id, hold), s.liveIDs(nil))
	s.measure(faultPause, n, t0)
}

// partition cuts a node off from every etcd member for hold, then heals.
func (s *suite) partition(n *node, hold time.Duration) {
	s.count(faultPartition)
	t0 := proctest.Mono()
	n.cut()
	if hold > s.cfg.ttl+time.Second {
		s.waitSettled(faultPartition, fmt.Sprintf("while %s is cut off", n.id), s.liveIDs(n))
	}
	time.Sleep(time.Duration(t0 + int64(hold) - proctest.Mono()))
	n.heal()
	s.waitSettled(faultPartition, fmt.Sprintf("after %s was cut off for %v", n.id, hold), s.liveIDs(nil))
	s.measure(faultPartition, n, t0)
}

// killEtcdLeader kills the etcd leader with SIGKILL, measures how long
// writes fail, and restarts the member a little later.
func (s *suite) killEtcdLeader() {
	s.count(faultEtcdLeader)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	l, err := s.etcd.leader(ctx)
	if err != nil {
		s.t.Fatal(err)
	}
	began := time.Now()
	s.etcd.kill(l)
	for i := 0; ; i++ {
		pctx, pcancel := context.WithTimeout(ctx, 500*time.Millisecond)
		_, err := s.obs.Client().Put(pctx, "/e2e/probe", strconv.Itoa(i))
		pcancel()
		if err == nil {
			break
		}
		if ctx.Err() != nil {
			s.t.Fatalf("etcd did not accept writes within 60s of killing its leader: %v", err)
		}
	}
	down := time.Since(began)
	s.mu.Lock()
	s.stats[faultEtcdLeader].etcd = append(s.stats[faultEtcdLeader].etcd, down)
	s.mu.Unlock()
	s.t.Logf("etcd leader m%d killed: writes failed for %v", l, down)
	s.waitSettled(faultEtcdLeader, fmt.Sprintf("with etcd member m%d down", l), s.liveIDs(nil))
	if err := s.etcd.restart(l); err != nil {
		s.t.Fatalf("restart etcd member m%d: %v", l, err)
	}
	s.waitSettled(faultEtcdLeader, fmt.Sprintf("after etcd member m%d restarted", l), s.liveIDs(nil))
}

// linkBackLimit bounds how long after a link heals calls must be answered
// across it again: gRPC re-dials with a backoff of at most 1 s, and the
// transport opens a stream as soon as the connection is up.
const linkBackLimit = 10 * time.Second

// running returns, from the reports, the fresh incarnation of every child
// and the token of the running singleton term.
func (s *suite) running() (map[string]string, int64) {
	snap := s.rec.snapshot()
	fresh := proctest.Mono() - int64(freshWithin)
	incs := map[string]string{}
	for id, is := range snap.byID {
		for _, i := range is {
			if i.end == 0 && i.lastAny >= fresh {
				incs[id] = i.ref
			}
		}
	}
	var token int64
	for _, t := range snap.tenures {
		if t.end == 0 && t.lastAlive >= fresh {
			token = t.token
		}
	}
	return incs, token
}

// pair picks two different nodes.
func (s *suite) pair() (*node, *node) {
	i := s.rng.IntN(len(s.nodes))
	j := (i + 1 + s.rng.IntN(len(s.nodes)-1)) % len(s.nodes)
	return s.nodes[i], s.nodes[j]
}

// linkFault cuts the transport link between nodes a and b in both
// directions for hold (faultLinkCut: their connections drop and new ones
// are refused; faultLinkHole: no byte moves but nothing closes), while
// both keep reaching etcd and the third node reaches both. etcd sees both
// alive, so nothing may change hands; calls across the link must fail
// with ErrNodeDown or at their deadline, none may be answered across it,
// and after the heal calls must be answered across it again.
func (s *suite) linkFault(kind string, a, b *node, hold time.Duration) {
	s.count(kind)
	before, token := s.running()
	t0 := proctest.Mono()
	for _, d := range [][2]*node{{a, b}, {b, a}} {
		if kind == faultLinkHole {
			d[1].link.PauseFrom(d[0].id)
		} else {
			d[1].link.CutFrom(d[0].id)
		}
	}
	at := proctest.Mono()
	links := []*linkCut{s.rec.cutLink(a.id, b.id, at), s.rec.cutLink(b.id, a.id, at)}
	time.Sleep(time.Duration(t0 + int64(hold) - proctest.Mono()))
	healed := proctest.Mono()
	for _, l := range links {
		s.rec.healLink(l, healed)
	}
	b.link.HealFrom(a.id)
	a.link.HealFrom(b.id)
	what := fmt.Sprintf("%s %s–%s for %v", kind, a.id, b.id, hold)

	limit := time.Now().Add(linkBackLimit)
	var back time.Duration
	for {
		l1, l2 := s.rec.link(links[0]), s.rec.link(links[1])
		if l1.firstBack != 0 && l2.firstBack != 0 {
			back = time.Duration(max(l1.firstBack, l2.firstBack) - healed)
			break
		}
		if time.Now().After(limit) {
			s.violate(kind, violation{invLinkDead, fmt.Sprintf("%s: no call answered across the link within %v of the heal (%s→%s: %d calls since, %s→%s: %d)",
				what, linkBackLimit, l1.from, l1.to, l1.callsAfterHeal, l2.from, l2.to, l2.callsAfterHeal)})
			break
		}
		time.Sleep(100 * time.Millisecond)
	}
	s.waitSettled(kind, "after "+what, s.liveIDs(nil))

	after, tokenAfter := s.running()
	var moved []string
	for id, ref := range before {
		if after[id] != ref {
			moved = append(moved, fmt.Sprintf("%s %s→%s", id, ref, after[id]))
		}
	}
	for id, ref := range after {
		if _, ok := before[id]; !ok {
			moved = append(moved, fmt.Sprintf("%s →%s", id, ref))
		}
	}
	if len(moved) > 0 || len(before) == 0 {
		slices.Sort(moved)
		s.violate(kind, violation{invLinkMoved, fmt.Sprintf("%s: %d of %d children run as another incarnation: %v",
			what, len(moved), len(before), moved[:min(len(moved), 5)])})
	}
	if token == 0 || tokenAfter != token {
		s.violate(kind, violation{invLinkMoved, fmt.Sprintf("%s: singleton token %d before, %d after", what, token, tokenAfter)})
	}
	for _, l := range links {
		c := s.rec.link(l)
		if len(c.leaks) > 0 {
			s.violate(kind, violation{invLinkLeak, fmt.Sprintf("%s: %s→%s: %v", what, c.from, c.to, c.leaks)})
		}
		if len(c.badErrs) > 0 {
			s.violate(kind, violation{invLinkError, fmt.Sprintf("%s: %s→%s: %v", what, c.from, c.to, c.badErrs)})
		}
		if c.failed == 0 {
			s.violate(kind, violation{invLinkNotCut, fmt.Sprintf("%s: no call from %s to %s failed while the link was cut", what, c.from, c.to)})
		}
	}
	s.mu.Lock()
	s.stats[kind].linkBack = append(s.stats[kind].linkBack, back)
	s.mu.Unlock()
	l1, l2 := s.rec.link(links[0]), s.rec.link(links[1])
	s.t.Logf("%s: %d and %d calls failed across it; answered again %v after the heal", what, l1.failed, l2.failed, back)
}

// rolling stops every node gracefully and starts it again, one at a time.
func (s *suite) rolling() {
	for _, n := range s.nodes {
		s.count(faultRolling)
		t0 := proctest.Mono()
		if !n.p.Stop(45 * time.Second) {
			s.violate(faultRolling, violation{invStopHung, fmt.Sprintf("%s did not stop within 45s; killed", n.id)})
		}
		s.waitSettled(faultRolling, "after the graceful stop of "+n.id, s.liveIDs(n))
		s.measure(faultRolling, n, t0)
		s.restart(faultRolling, n)
		s.waitSettled(faultRolling, "after the restart of "+n.id, s.liveIDs(nil))
	}
}

func (s *suite) inject(kind string) {
	switch kind {
	case faultKill:
		s.kill9(s.target())
	case faultPause:
		s.pauseNode(s.target(), s.hold())
	case faultPartition:
		s.partition(s.target(), s.hold())
	case faultEtcdLeader:
		s.killEtcdLeader()
	case faultRolling:
		s.rolling()
	case faultLinkCut, faultLinkHole:
		a, b := s.pair()
		hold := 3 * time.Second
		if s.cfg.long {
			hold = s.hold()
		}
		s.linkFault(kind, a, b, hold)
	}
}

// TestFaults runs the workloads on a three-member etcd cluster and node
// processes, injects faults, and checks after each that the cluster
// settles with every child running exactly once, and over the whole run
// that no two incarnations of a child and no two singleton terms were
// alive at once, no stale-token write was accepted, nothing was lost, and
// no call outlived its deadline.
func TestFaults(t *testing.T) {
	cfg := loadConfig()
	t.Logf("nodes %d, children %d, TTL %v, long %v, faults %d, seed %d", cfg.nodes, cfg.children, cfg.ttl, cfg.long, cfg.faults, cfg.seed)
	began := time.Now()
	s := newSuite(t, cfg)
	s.seed()
	took := s.waitSettled("start", "initial placement", s.liveIDs(nil))
	t.Logf("cluster up and %d children placed in %v (settled in %v)", cfg.children, time.Since(began), took)

	types := faultTypes
	if only := os.Getenv("COHORT_E2E_ONLY"); only != "" {
		types = slices.DeleteFunc(slices.Clone(types), func(f string) bool { return !strings.Contains(f, only) })
	}
	var plan []string
	if cfg.long {
		for range cfg.faults {
			plan = append(plan, types[s.rng.IntN(len(types))])
		}
	} else {
		plan = types
	}
	s.restartTypes("start")
	for i, kind := range plan {
		t.Logf("fault %d/%d: %s", i+1, len(plan), kind)
		s.inject(kind)
		s.restartTypes(kind)
	}
	s.check("end")
	s.mu.Lock()
	handoffs, unrecorded := s.handoffs, s.unrecordedExits
	s.mu.Unlock()
	if cfg.counters > 0 && s.stats[faultRolling].injected > 0 && handoffs == 0 {
		s.violate("end", violation{invHandoff, "rolling restarts moved no counter with its state"})
	}
	t.Logf("%d planned moves of counters carried their value; %d transient children exited normally (%d of them ran again, having exited as their node was fenced: not counted), %d temporary children started",
		handoffs, len(s.expected().exited), unrecorded, s.nextTmp)
	tot := s.rec.callTotals()
	snap := s.rec.snapshot()
	incs := 0
	for _, is := range snap.byID {
		incs += len(is)
	}
	t.Logf("calls: %d (ok %d, deadline %d, node down %d, other %d), latest end after a deadline %v",
		tot[0], tot[1], tot[2], tot[3], tot[4], time.Duration(tot[5]))
	t.Logf("%d calls ended more than %v after their deadline, the latest %v after it (scheduling delay of the caller not deducted)",
		s.lateCalls, cfg.slack, s.worstLate)
	t.Logf("%d incarnations of %d children, %d singleton terms, run took %v", incs, cfg.children, len(snap.tenures), time.Since(began))
	s.rec.mu.Lock()
	for k, v := range s.rec.errs {
		t.Logf("first call error %s: %s", k, v)
	}
	s.rec.mu.Unlock()
	if tot[1] == 0 {
		t.Errorf("no call succeeded")
	}
	table := s.table(time.Since(began))
	t.Log("\n" + table)
	if cfg.report != "" {
		if err := os.WriteFile(cfg.report, []byte(table), 0o644); err != nil {
			t.Error(err)
		}
	}
	for _, k := range s.order {
		t.Errorf("violation: %s", s.violations[k])
	}
}

func percentile(ds []time.Duration, p float64) string {
	if len(ds) == 0 {
		return "–"
	}
	s := slices.Clone(ds)
	sort.Slice(s, func(i, j int) bool { return s[i] < s[j] })
	i := int(p*float64(len(s))+0.5) - 1
	i = max(0, min(i, len(s)-1))
	return s[i].Round(10 * time.Millisecond).String()
}

// table renders the figures as markdown.
func (s *suite) table(took time.Duration) string {
	s.mu.Lock()
	defer s.mu.Unlock()
	var b strings.Builder
	fmt.Fprintf(&b, "%d nodes, %d children, TTL %v, seed %d, %v\n\n", s.cfg.nodes, s.cfg.children, s.cfg.ttl, s.cfg.seed, took.Round(time.Second))
	b.WriteString("| fault | injected | violations | children failover p50 / p99 (n) | singleton failover p50 / p99 (n) | etcd writes down p50 / p99 | calls across the link again after the heal p50 / p99 |\n")
	b.WriteString("|---|---|---|---|---|---|---|\n")
	total, viol := 0, 0
	for _, f := range faultTypes {
		st := s.stats[f]
		total += st.injected
		viol += st.violations
		fmt.Fprintf(&b, "| %s | %d | %d | %s / %s (%d) | %s / %s (%d) | %s / %s | %s / %s |\n", f, st.injected, st.violations,
			percentile(st.children, 0.5), percentile(st.children, 0.99), len(st.children),
			percentile(st.singleton, 0.5), percentile(st.singleton, 0.99), len(st.singleton),
			percentile(st.etcd, 0.5), percentile(st.etcd, 0.99),
			percentile(st.linkBack, 0.5), percentile(st.linkBack, 0.99))
	}
	other := len(s.order) - viol
	fmt.Fprintf(&b, "| **all** | %d | %d | | | | |\n", total, viol+other)
	fmt.Fprintf(&b, "\n%d planned moves of counters checked; %d temporary children started\n",
		s.handoffs, s.nextTmp)
	return b.String()
}
