//go:build linux

package e2e

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"os"
	"os/signal"
	"runtime/pprof"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
	"go.uber.org/zap/zapcore"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/supervisor"
)

// Environment of a node process.
const (
	envNodeID       = "E2E_NODE_ID"
	envNodeEtcd     = "E2E_NODE_ETCD"
	envNodeTTL      = "E2E_NODE_TTL"
	envNodeChildren = "E2E_NODE_CHILDREN"
	envNodeCounters = "E2E_NODE_COUNTERS"
	envNodeListen   = "E2E_NODE_LISTEN" // the transport's listen address
	envNodeAddr     = "E2E_NODE_ADDR"   // the transport address peers dial: the node's proxy
)

// What every node runs.
const (
	clusterName = "e2e"
	supName     = "workers"
	kindHB      = "hb"  // heartbeats; a transient one exits on request
	kindCtr     = "ctr" // a counter that hands its value off on a planned move
	singletonID = "writer"
	listPrefix  = "/e2e/list/"

	tickEvery   = 250 * time.Millisecond // heartbeat of each child
	flushEvery  = 500 * time.Millisecond // report period
	writeEvery  = 50 * time.Millisecond  // singleton writes
	callers     = 3                      // call loops per node
	callPause   = 20 * time.Millisecond  // between two calls of one loop
	minDeadline = 100 * time.Millisecond
	maxDeadline = time.Second
)

// Ids of the distributed children, by restart type: the permanent
// heartbeat children c0000…, the permanent counters k000…, and the
// transient t0000… and temporary p0000… children the test starts and
// ends as the run goes.
func childID(i int) string     { return fmt.Sprintf("c%04d", i) }
func counterID(i int) string   { return fmt.Sprintf("k%03d", i) }
func transientID(i int) string { return fmt.Sprintf("t%04d", i) }
func temporaryID(i int) string { return fmt.Sprintf("p%04d", i) }

// Calls a child of kind hb answers besides "ping", to end on request.
const (
	msgExit  = "exit"  // reply, then stop with actor.Normal
	msgCrash = "crash" // reply, then stop with errCrash
	msgAdd   = "add"   // a counter adds one and answers "<ref> <value>"
)

var errCrash = errors.New("e2e: crash on request")

// runNode is the main of a node process: a cohort node that runs the
// workloads until its stdin closes, then stops gracefully.
//
// It reports on stdout, one line each:
//
//	inc <id> <ref> <start> <lastAlive> <lastAny> <end> <init> <handoff> <last> <why>
//	                                                          an incarnation of a child
//	sing <token> <start> <lastAlive> <lastAny> <end> <writes> <stale>   a singleton tenure
//	calls <total> <ok> <deadline> <nodedown> <other> <maxOverrun>      cumulative
//	callover <start> <deadline> <end> <id> <class>            a call that ended >20ms late
//	rc <node> <start> <end> <class>                           a call to a child on another node
//	callerr <class> <message>                                 first error of a class
//	lag <at> <ns>                                             largest scheduling delay since the last report
//	stopped <ns>                                              Stop returned after ns
//
// Instants are CLOCK_MONOTONIC nanoseconds. lastAlive is the latest instant
// at which the actor was doing work and its lease epoch (for a child) or
// term (for the singleton) was still proven alive right after; lastAny is
// the latest instant it did work at all. For a counter, init is the value
// it started from, handed off by its previous instance (-1: none), handoff
// the value it handed off (-1: none), last the largest value it answered;
// why says why it ended (see endReason; "-" while it runs).
func runNode() int {
	id := os.Getenv(envNodeID)
	endpoints := strings.Split(os.Getenv(envNodeEtcd), ",")
	ttl, _ := time.ParseDuration(os.Getenv(envNodeTTL))
	nChildren, _ := strconv.Atoi(os.Getenv(envNodeChildren))
	nCounters, _ := strconv.Atoi(os.Getenv(envNodeCounters))
	logCfg := zap.NewProductionConfig()
	logCfg.Level = zap.NewAtomicLevelAt(zapcore.InfoLevel)
	logCfg.OutputPaths = []string{"stderr"}
	logCfg.Sampling = nil
	log, err := logCfg.Build()
	if err != nil {
		fmt.Fprintln(os.Stderr, "logger:", err)
		return 1
	}

	// A node restarted right after a kill -9 finds its old member key
	// until the old lease expires: retry for a few TTLs.
	var n *cohort.Node
	giveUp := time.Now().Add(4*ttl + 20*time.Second)
	for {
		ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
		n, err = cohort.Start(ctx, cohort.Config{NodeID: id, Cluster: clusterName, Endpoints: endpoints,
			LeaseTTL: ttl, DialTimeout: 5 * time.Second, Logger: log,
			Addr: os.Getenv(envNodeAddr), Transport: cohort.TransportConfig{ListenAddr: os.Getenv(envNodeListen)}})
		cancel()
		if err == nil {
			break
		}
		if !time.Now().Before(giveUp) || !(errors.Is(err, cohort.ErrDuplicateNode) || errors.Is(err, cohort.ErrEtcdUnreachable)) {
			fmt.Fprintln(os.Stderr, "node start:", err)
			return 1
		}
		time.Sleep(200 * time.Millisecond)
	}
	w := &workload{n: n, out: bufio.NewWriter(os.Stdout), live: map[*incRec]struct{}{},
		dirty: map[*incRec]struct{}{}, tenures: map[*tenureRec]struct{}{}, errSeen: map[string]bool{},
		stop: make(chan struct{})}
	for i := range nChildren {
		w.ids = append(w.ids, childID(i))
	}
	for i := range nCounters {
		w.counters = append(w.counters, counterID(i))
	}
	fail := func(what string, err error) int {
		fmt.Fprintln(os.Stderr, what+":", err)
		_ = n.Stop(context.Background())
		return 1
	}
	if err := n.RegisterKind(kindHB, func() actor.Actor { return &hbChild{w: w} }); err != nil {
		return fail("register kind", err)
	}
	if err := n.RegisterKind(kindCtr, func() actor.Actor { return &ctrChild{hbChild: hbChild{w: w}} }); err != nil {
		return fail("register kind", err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	w.sup, err = n.DistributedSupervisor(ctx, supName, supervisor.DistributedOptions{})
	if err != nil {
		return fail("distributed supervisor", err)
	}
	writer := supervisor.Fenced(singletonID, func(t *supervisor.Term) actor.Actor { return &writer{w: w, term: t} }, actor.Options{})
	if _, err := n.Supervise(ctx, n.Singleton(writer)); err != nil {
		return fail("supervise", err)
	}
	w.wg.Add(3 + callers)
	go w.tick()
	go w.measureLag()
	go w.flushLoop()
	for range callers {
		go w.callLoop(w.ids, "ping")
	}
	if len(w.counters) > 0 {
		w.wg.Add(1)
		go w.callLoop(w.counters, msgAdd)
	}
	dump := make(chan os.Signal, 1)
	signal.Notify(dump, syscall.SIGUSR1)
	go func() {
		for range dump {
			fmt.Fprintf(os.Stderr, "=== goroutines of %s at %d\n", id, proctest.Mono())
			_ = pprof.Lookup("goroutine").WriteTo(os.Stderr, 2)
		}
	}()
	w.say("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	signal.Stop(dump)

	began := time.Now()
	sctx, scancel := context.WithTimeout(context.Background(), 30*time.Second)
	err = n.Stop(sctx)
	scancel()
	if err != nil {
		fmt.Fprintln(os.Stderr, "node stop:", err)
	}
	close(w.stop)
	w.wg.Wait()
	w.flush()
	w.say("stopped %d", time.Since(began))
	return 0
}

// workload is the node-side state of the three workloads.
type workload struct {
	n        *cohort.Node
	sup      *supervisor.Distributed
	ids      []string // heartbeat children the call loops call
	counters []string // counters one call loop adds to

	outMu sync.Mutex
	out   *bufio.Writer

	mu      sync.Mutex
	live    map[*incRec]struct{}
	dirty   map[*incRec]struct{}
	tenures map[*tenureRec]struct{} // changed since the last flush
	calls   callStats
	overs   []string // lines about calls, for the next flush
	errSeen map[string]bool
	lag     int64 // the largest scheduling delay since the last flush

	stop chan struct{}
	wg   sync.WaitGroup
}

func (w *workload) say(format string, args ...any) {
	w.outMu.Lock()
	defer w.outMu.Unlock()
	fmt.Fprintf(w.out, format+"\n", args...)
	_ = w.out.Flush()
}

// incRec is one incarnation of a distributed child on this node.
type incRec struct {
	id                             string
	ref                            actor.Ref
	start, lastAlive, lastAny, end int64
	init, handoff, last            int64 // a counter's values; -1: none
	why                            string
}

// tenureRec is one term of the singleton on this node.
type tenureRec struct {
	token                          int64
	start, lastAlive, lastAny, end int64
	writes                         int
	stale                          string
}

type callStats struct {
	total, ok, deadline, nodeDown, other int
	maxOver                              int64
}

func refString(r actor.Ref) string { return fmt.Sprintf("%s/%d/%d", r.Node, r.ID, r.Incarnation) }

// touch notes work done at instant at by an incarnation; alive says its
// epoch was proven alive after at.
func (w *workload) touch(r *incRec, at int64, alive bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	r.lastAny = max(r.lastAny, at)
	if alive {
		r.lastAlive = max(r.lastAlive, at)
	}
	w.dirty[r] = struct{}{}
}

func (w *workload) tenureTouch(tr *tenureRec, at int64, alive bool) {
	w.mu.Lock()
	defer w.mu.Unlock()
	tr.lastAny = max(tr.lastAny, at)
	if alive {
		tr.lastAlive = max(tr.lastAlive, at)
	}
	w.tenures[tr] = struct{}{}
}

// flush reports every incarnation and tenure that changed.
func (w *workload) flush() {
	var b strings.Builder
	w.mu.Lock()
	for r := range w.dirty {
		why := r.why
		if why == "" {
			why = "-"
		}
		fmt.Fprintf(&b, "inc %s %s %d %d %d %d %d %d %d %s\n", r.id, refString(r.ref), r.start, r.lastAlive, r.lastAny, r.end,
			r.init, r.handoff, r.last, why)
		if r.end != 0 {
			delete(w.live, r)
		}
	}
	clear(w.dirty)
	for tr := range w.tenures {
		stale := tr.stale
		if stale == "" {
			stale = "-"
		}
		fmt.Fprintf(&b, "sing %d %d %d %d %d %d %s\n", tr.token, tr.start, tr.lastAlive, tr.lastAny, tr.end, tr.writes, stale)
	}
	clear(w.tenures)
	fmt.Fprintf(&b, "lag %d %d\n", proctest.Mono(), w.lag)
	w.lag = 0
	c := w.calls
	fmt.Fprintf(&b, "calls %d %d %d %d %d %d\n", c.total, c.ok, c.deadline, c.nodeDown, c.other, c.maxOver)
	for _, o := range w.overs {
		b.WriteString(o)
	}
	w.overs = nil
	w.mu.Unlock()
	w.outMu.Lock()
	defer w.outMu.Unlock()
	_, _ = w.out.WriteString(b.String())
	_ = w.out.Flush()
}

func (w *workload) flushLoop() {
	defer w.wg.Done()
	t := time.NewTicker(flushEvery)
	defer t.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
			w.flush()
		}
	}
}

// measureLag measures how late this process wakes up from a 10ms sleep:
// the scheduling delay the machine imposes on it, which delays every
// timer, a call's deadline included.
func (w *workload) measureLag() {
	defer w.wg.Done()
	const nap = 10 * time.Millisecond
	t := time.NewTimer(nap)
	defer t.Stop()
	for {
		before := proctest.Mono()
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		lag := proctest.Mono() - before - int64(nap)
		w.mu.Lock()
		w.lag = max(w.lag, lag)
		w.mu.Unlock()
		t.Reset(nap)
	}
}

type hbTick struct{}

// tick sends a heartbeat tick to every local child.
func (w *workload) tick() {
	defer w.wg.Done()
	t := time.NewTicker(tickEvery)
	defer t.Stop()
	var refs []actor.Ref
	for {
		select {
		case <-w.stop:
			return
		case <-t.C:
		}
		refs = refs[:0]
		w.mu.Lock()
		for r := range w.live {
			if r.end == 0 {
				refs = append(refs, r.ref)
			}
		}
		w.mu.Unlock()
		for _, ref := range refs {
			_ = w.n.System().Send(ref, hbTick{})
		}
	}
}

// callLoop calls random children of ids with msg and random deadlines,
// and records how each call ended relative to its deadline.
func (w *workload) callLoop(ids []string, msg string) {
	defer w.wg.Done()
	pause := time.NewTimer(callPause)
	defer pause.Stop()
	for {
		select {
		case <-w.stop:
			return
		case <-pause.C:
		}
		id := ids[rand.IntN(len(ids))]
		limit := minDeadline + rand.N(maxDeadline-minDeadline)
		// The node the call goes to, as this node sees it now; the
		// answer says where it went.
		to := "-"
		if ref, err := w.sup.Whereis(id); err == nil {
			to = ref.Node
		}
		ctx, cancel := context.WithTimeout(context.Background(), limit)
		start := proctest.Mono()
		dl, _ := ctx.Deadline()
		deadline := start + int64(time.Until(dl))
		v, err := w.sup.Call(ctx, id, msg)
		end := proctest.Mono()
		cancel()
		if s, ok := v.(string); ok && err == nil {
			to, _, _ = strings.Cut(s, "/")
		}
		w.recordCall(id, to, start, deadline, end, err)
		pause.Reset(callPause)
	}
}

func (w *workload) recordCall(id, to string, start, deadline, end int64, err error) {
	class := "ok"
	switch {
	case err == nil:
	case errors.Is(err, context.DeadlineExceeded):
		class = "deadline"
	case errors.Is(err, cohort.ErrNodeDown):
		class = "nodedown"
	default:
		class = "other"
	}
	w.mu.Lock()
	defer w.mu.Unlock()
	c := &w.calls
	c.total++
	switch class {
	case "ok":
		c.ok++
	case "deadline":
		c.deadline++
	case "nodedown":
		c.nodeDown++
	default:
		c.other++
	}
	if to != "-" && to != w.n.ID() {
		w.overs = append(w.overs, fmt.Sprintf("rc %s %d %d %s\n", to, start, end, class))
	}
	over := end - deadline
	c.maxOver = max(c.maxOver, over)
	if over > int64(20*time.Millisecond) {
		w.overs = append(w.overs, fmt.Sprintf("callover %d %d %d %s %s\n", start, deadline, end, id, class))
	}
	if err != nil {
		msg := err.Error()
		key := class + ":" + msg[:min(len(msg), 40)]
		if !w.errSeen[key] && len(w.errSeen) < 50 {
			w.errSeen[key] = true
			w.overs = append(w.overs, fmt.Sprintf("callerr %s %q\n", class, msg))
		}
	}
}

// hbChild is a distributed child. It records its incarnation's life: the
// instant it started, its heartbeats and the calls it answered, each
// marked with whether the node's lease epoch it started under was still
// proven alive, and the instant it terminated. Asked to, it exits
// normally or crashes.
type hbChild struct {
	w   *workload
	ep  *lease.Epoch
	rec *incRec
}

func (c *hbChild) Init(ctx *actor.Context, args any) error {
	ia, _ := args.(supervisor.InitArgs)
	c.begin(ctx, ia.ID, -1)
	return nil
}

// begin records the start of an incarnation; init is a counter's
// handed-off value, or -1.
func (c *hbChild) begin(ctx *actor.Context, id string, init int64) {
	at := proctest.Mono()
	c.ep = c.w.n.Session().Current()
	c.rec = &incRec{id: id, ref: ctx.Self(), start: at, init: init, handoff: -1, last: -1}
	alive := c.ep.Alive()
	c.w.mu.Lock()
	c.w.live[c.rec] = struct{}{}
	c.w.mu.Unlock()
	c.w.touch(c.rec, at, alive)
}

func (c *hbChild) HandleInfo(_ *actor.Context, msg any) error {
	if _, ok := msg.(hbTick); ok {
		at := proctest.Mono()
		c.w.touch(c.rec, at, c.ep.Alive())
	}
	return nil
}

func (c *hbChild) HandleCall(ctx *actor.Context, msg any) (any, error) {
	at := proctest.Mono()
	c.w.touch(c.rec, at, c.ep.Alive())
	switch msg {
	case msgExit:
		ctx.Stop(actor.Normal)
	case msgCrash:
		ctx.Stop(errCrash)
	}
	return refString(c.rec.ref), nil
}

// ctrChild is a permanent counter: it adds one on every call and hands its
// value off to its next instance on a planned move.
type ctrChild struct {
	hbChild
	n int64
}

func (c *ctrChild) Init(ctx *actor.Context, args any) error {
	ia, _ := args.(supervisor.InitArgs)
	init := int64(-1)
	if ia.Handoff != nil {
		n, err := strconv.ParseInt(string(ia.Handoff), 10, 64)
		if err != nil {
			return fmt.Errorf("counter %s: bad handoff %q: %w", ia.ID, ia.Handoff, err)
		}
		c.n, init = n, n
	}
	c.begin(ctx, ia.ID, init)
	return nil
}

func (c *ctrChild) HandleCall(ctx *actor.Context, msg any) (any, error) {
	if msg != msgAdd {
		return c.hbChild.HandleCall(ctx, msg)
	}
	at := proctest.Mono()
	c.w.touch(c.rec, at, c.ep.Alive())
	c.n++
	c.w.mu.Lock()
	c.rec.last = c.n
	c.w.mu.Unlock()
	return fmt.Sprintf("%s %d", refString(c.rec.ref), c.n), nil
}

// Handoff hands the value to the next instance.
func (c *ctrChild) Handoff(*actor.Context) ([]byte, error) {
	c.w.mu.Lock()
	c.rec.handoff = c.n
	c.w.dirty[c.rec] = struct{}{}
	c.w.mu.Unlock()
	return strconv.AppendInt(nil, c.n, 10), nil
}

func (c *hbChild) Terminate(_ *actor.Context, reason error) {
	at := proctest.Mono()
	c.w.touch(c.rec, at, c.ep.Alive())
	c.w.mu.Lock()
	c.rec.end, c.rec.why = at, endReason(reason)
	c.w.mu.Unlock()
}

// endReason names why an incarnation ended, in one word.
func endReason(reason error) string {
	switch {
	case errors.Is(reason, lease.ErrEpochLost):
		return "fenced" // its node's lease epoch was lost
	case errors.Is(reason, supervisor.ErrMoved):
		return "moved"
	case errors.Is(reason, errCrash):
		return "crashed"
	case errors.Is(reason, actor.Shutdown):
		return "shutdown"
	case actor.IsNormal(reason):
		return "normal"
	}
	return "other"
}

type writeTick struct{}

// writer is the singleton: every writeEvery, while its term is alive, it
// appends an entry to the list in etcd with a write guarded by its fencing
// token. On losing its term it tries one more write with the stale token.
type writer struct {
	w         *workload
	term      *supervisor.Term
	rec       *tenureRec
	seq       int
	stopTicks func()
}

func (k *writer) Init(ctx *actor.Context, _ any) error {
	at := proctest.Mono()
	k.rec = &tenureRec{token: k.term.Token(), start: at}
	k.w.tenureTouch(k.rec, at, k.term.Alive())
	k.stopTicks = proctest.Every(ctx.System(), ctx.Self(), writeEvery, writeTick{})
	return nil
}

func (k *writer) HandleCall(*actor.Context, any) (any, error) { return k.term.Token(), nil }

func (k *writer) HandleInfo(_ *actor.Context, msg any) error {
	if _, ok := msg.(writeTick); !ok {
		return nil
	}
	at := proctest.Mono()
	alive := k.term.Alive()
	k.w.tenureTouch(k.rec, at, alive)
	if !alive {
		return nil
	}
	ctx, cancel := context.WithTimeout(k.term.Context(), time.Second)
	defer cancel()
	key := fmt.Sprintf("%s%020d-%08d", listPrefix, k.term.Token(), k.seq)
	if _, err := k.term.Write(ctx, clientv3.OpPut(key, k.term.Node())); err == nil {
		k.seq++
		k.w.mu.Lock()
		k.rec.writes++
		k.w.mu.Unlock()
	}
	return nil
}

func (k *writer) Terminate(_ *actor.Context, reason error) {
	k.stopTicks()
	at := proctest.Mono()
	k.w.tenureTouch(k.rec, at, k.term.Alive())
	stale := "-"
	if errors.Is(reason, supervisor.ErrLeadershipLost) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		key := fmt.Sprintf("%s%020d-%08d", listPrefix, k.term.Token(), k.seq)
		_, err := k.term.Write(ctx, clientv3.OpPut(key, k.term.Node()+" stale"))
		cancel()
		switch {
		case errors.Is(err, supervisor.ErrFenced):
			stale = "rejected"
		case err == nil:
			stale = "accepted"
		default:
			stale = "error"
		}
	}
	k.w.mu.Lock()
	k.rec.end, k.rec.stale = at, stale
	k.w.tenures[k.rec] = struct{}{}
	k.w.mu.Unlock()
}
