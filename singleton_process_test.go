//go:build linux

package cohort_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort"
	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/internal/etcdtest"
	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/supervisor"
)

// Environment of a singleton peer process: the test binary re-executed as
// a node that runs the "ticker" singleton and reports on stdout.
const (
	envSingletonPeer = "COHORT_TEST_SINGLETON_PEER"
	envSingletonEtcd = "COHORT_TEST_SINGLETON_ETCD"
	singletonPeerTTL = 2 * time.Second
)

func init() {
	if id := os.Getenv(envSingletonPeer); id != "" {
		os.Exit(runSingletonPeer(id, strings.Split(os.Getenv(envSingletonEtcd), ",")))
	}
}

// out serializes a peer's report lines.
type out struct{ mu sync.Mutex }

func (o *out) say(format string, args ...any) {
	o.mu.Lock()
	defer o.mu.Unlock()
	fmt.Printf(format+"\n", args...)
}

type tickMsg struct{}

// ticker is the singleton a peer runs: every few milliseconds it checks
// that its term is alive and reports a tick stamped with the instant taken
// before the check. It reports its start and stop, and on losing its term
// tries a write with its now stale token.
type ticker struct {
	term      *supervisor.Term
	out       *out
	stopTicks func()
}

func (k *ticker) Init(ctx *actor.Context, _ any) error {
	k.out.say("start %d %d", k.term.Token(), proctest.Mono())
	k.stopTicks = proctest.Every(ctx.System(), ctx.Self(), 5*time.Millisecond, tickMsg{})
	return nil
}

func (k *ticker) HandleCall(*actor.Context, any) (any, error) { return nil, actor.ErrUnhandled }

func (k *ticker) HandleInfo(*actor.Context, any) error {
	at := proctest.Mono()
	if k.term.Alive() {
		k.out.say("tick %d %d", k.term.Token(), at)
	}
	return nil
}

func (k *ticker) Terminate(_ *actor.Context, reason error) {
	k.stopTicks()
	k.out.say("stop %d %d %q", k.term.Token(), proctest.Mono(), reason.Error())
	if errors.Is(reason, supervisor.ErrLeadershipLost) {
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		_, err := k.term.Write(ctx, clientv3.OpPut("/singleton-test/last-writer", k.term.Node()))
		switch {
		case errors.Is(err, supervisor.ErrFenced):
			k.out.say("fenced %d rejected", k.term.Token())
		case err == nil:
			k.out.say("fenced %d accepted", k.term.Token())
		default:
			k.out.say("fenced %d error %q", k.term.Token(), err.Error())
		}
	}
}

// runSingletonPeer is the main of a singleton peer process: a node that
// runs the ticker singleton until its stdin closes, then stops.
func runSingletonPeer(id string, endpoints []string) int {
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	n, err := cohort.Start(ctx, cohort.Config{NodeID: id, Endpoints: endpoints, LeaseTTL: singletonPeerTTL})
	if err != nil {
		fmt.Fprintln(os.Stderr, "peer start:", err)
		return 1
	}
	o := &out{}
	child := supervisor.Fenced("ticker", func(t *supervisor.Term) actor.Actor { return &ticker{term: t, out: o} }, actor.Options{})
	if _, err := n.Supervise(ctx, n.Singleton(child)); err != nil {
		fmt.Fprintln(os.Stderr, "peer supervise:", err)
		n.Stop(context.Background())
		return 1
	}
	o.say("ready")
	_, _ = io.Copy(io.Discard, os.Stdin)
	if err := n.Stop(context.Background()); err != nil {
		fmt.Fprintln(os.Stderr, "peer stop:", err)
	}
	return 0
}

// report is one line a singleton peer printed.
type report struct {
	peer  string
	kind  string // start, tick, stop, fenced
	token int64
	at    int64 // CLOCK_MONOTONIC, ns
	rest  string
}

// reports collects the lines of every peer.
type reports struct {
	mu  sync.Mutex
	all []report
}

func (r *reports) add(rp report) {
	r.mu.Lock()
	r.all = append(r.all, rp)
	r.mu.Unlock()
}

func (r *reports) find(match func(report) bool) (report, bool) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for _, rp := range r.all {
		if match(rp) {
			return rp, true
		}
	}
	return report{}, false
}

func (r *reports) snapshot() []report {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.all)
}

// startSingletonPeer starts the test binary as node id on etcd endpoints,
// running the ticker singleton, and waits up to 30s until it serves; its
// report lines go to rec. The peer is stopped when t ends.
func startSingletonPeer(t *testing.T, id string, endpoints []string, rec *reports) *peerProcess {
	t.Helper()
	s := proctest.TestBinary("peer "+id, envSingletonPeer+"="+id, envSingletonEtcd+"="+strings.Join(endpoints, ","))
	s.OnLine = func(line string) {
		f := strings.SplitN(line, " ", 4)
		if len(f) < 2 {
			return
		}
		rp := report{peer: id, kind: f[0]}
		rp.token, _ = strconv.ParseInt(f[1], 10, 64)
		if len(f) > 2 {
			rp.at, _ = strconv.ParseInt(f[2], 10, 64)
			rp.rest = strings.Join(f[2:], " ")
		}
		rec.add(rp)
	}
	p, err := startPeerProcess(s)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(p.stop)
	return p
}

// Three node processes run one singleton. kill -9 of the holder: another
// node runs it within TTL + 0.5s. SIGSTOP of the holder for longer than
// the TTL, then SIGCONT: another node takes over while it is stopped, and
// the resumed one does no work under its old term, learns it lost, and
// has its stale write rejected. A graceful stop hands over in
// milliseconds. Throughout, the tenures (from first to last alive tick,
// on the machine's monotonic clock) never overlap and tokens only grow.
func TestSingletonProcessesKillStopAndPause(t *testing.T) {
	cl := etcdtest.Start(t)
	rec := &reports{}
	peers := map[string]*peerProcess{}
	for _, id := range []string{"p1", "p2", "p3"} {
		peers[id] = startSingletonPeer(t, id, cl.Endpoints(), rec)
	}
	var startSeen report
	waitStart := func(after int64, limit time.Duration) report {
		t.Helper()
		waitUntil(t, limit, fmt.Sprintf("a start with a token above %d", after), func() bool {
			var ok bool
			startSeen, ok = rec.find(func(r report) bool { return r.kind == "start" && r.token > after })
			return ok
		})
		return startSeen
	}
	waitTicks := func(token int64) {
		t.Helper()
		waitUntil(t, 5*time.Second, fmt.Sprintf("ticks of token %d", token), func() bool {
			_, ok := rec.find(func(r report) bool { return r.kind == "tick" && r.token == token })
			return ok
		})
	}
	first := waitStart(0, 20*time.Second)
	waitTicks(first.token)

	// kill -9 of the holder.
	killedAt := proctest.Mono()
	peers[first.peer].Kill()
	second := waitStart(first.token, 3*singletonPeerTTL)
	takeover := time.Duration(second.at - killedAt)
	t.Logf("kill -9 of %s: %s took over %v later (TTL %v)", first.peer, second.peer, takeover, singletonPeerTTL)
	// The figure (goal TTL + 0.5 s) is measured and reported; under the
	// test only the behaviour is checked: the takeover waits for the dead
	// holder's lease, and then happens.
	if takeover > 3*singletonPeerTTL {
		t.Errorf("takeover after kill -9 took %v, more than 3 TTLs", takeover)
	}
	waitTicks(second.token)

	// SIGSTOP of the new holder for longer than the TTL.
	paused := peers[second.peer]
	if err := paused.Signal(syscall.SIGSTOP); err != nil {
		t.Fatal(err)
	}
	stoppedAt := proctest.Mono()
	third := waitStart(second.token, 3*singletonPeerTTL)
	t.Logf("SIGSTOP of %s: %s took over %v later", second.peer, third.peer, time.Duration(third.at-stoppedAt))
	waitTicks(third.token)
	time.Sleep(200 * time.Millisecond) // both would tick now if fencing failed
	resumedAt := proctest.Mono()
	if err := paused.Signal(syscall.SIGCONT); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, 5*time.Second, "the resumed holder to learn it lost", func() bool {
		_, ok := rec.find(func(r report) bool { return r.kind == "stop" && r.token == second.token })
		return ok
	})
	stop, _ := rec.find(func(r report) bool { return r.kind == "stop" && r.token == second.token })
	if !strings.Contains(stop.rest, "leadership lost") {
		t.Fatalf("resumed holder stopped with %q, want a leadership-lost reason", stop.rest)
	}
	t.Logf("SIGCONT: the resumed holder stopped its child %v later: %s", time.Duration(stop.at-resumedAt), stop.rest)
	waitUntil(t, 5*time.Second, "the stale write's outcome", func() bool {
		_, ok := rec.find(func(r report) bool { return r.kind == "fenced" && r.token == second.token })
		return ok
	})
	if f, _ := rec.find(func(r report) bool { return r.kind == "fenced" && r.token == second.token }); f.rest != "rejected" && !strings.HasPrefix(f.rest, "rejected") {
		t.Fatalf("write with the stale token: %s", f.rest)
	}

	// A graceful stop of the holder hands over at once.
	stoppingAt := proctest.Mono()
	peers[third.peer].stop()
	fourth := waitStart(third.token, 5*time.Second)
	graceful := time.Duration(fourth.at - stoppingAt)
	t.Logf("graceful stop of process %s: %s took over %v later (process exit included)", third.peer, fourth.peer, graceful)
	if graceful > time.Second {
		t.Errorf("graceful handover between processes took %v", graceful)
	}
	waitTicks(fourth.token)
	for _, p := range peers {
		p.stop()
	}
	checkTenures(t, rec.snapshot())
}

// checkTenures checks that the tenures, from the first to the last alive
// tick of each token, are disjoint, in token order, each on one node.
func checkTenures(t *testing.T, all []report) {
	t.Helper()
	type span struct {
		peer        string
		first, last int64
		ticks       int
	}
	spans := map[int64]*span{}
	for _, r := range all {
		if r.kind != "tick" {
			continue
		}
		s := spans[r.token]
		if s == nil {
			s = &span{peer: r.peer, first: r.at, last: r.at}
			spans[r.token] = s
		}
		if s.peer != r.peer {
			t.Fatalf("token %d ticked on %s and %s", r.token, s.peer, r.peer)
		}
		s.first, s.last, s.ticks = min(s.first, r.at), max(s.last, r.at), s.ticks+1
	}
	tokens := make([]int64, 0, len(spans))
	for tok := range spans {
		tokens = append(tokens, tok)
	}
	slices.Sort(tokens)
	if len(tokens) < 4 {
		t.Fatalf("%d tenures, want 4", len(tokens))
	}
	for i, tok := range tokens {
		s := spans[tok]
		t.Logf("tenure token %d on %s: %d ticks over %v", tok, s.peer, s.ticks, time.Duration(s.last-s.first))
		if i == 0 {
			continue
		}
		prev := spans[tokens[i-1]]
		if prev.last >= s.first {
			t.Fatalf("tenures overlap: token %d on %s ticked until %d, token %d on %s from %d",
				tokens[i-1], prev.peer, prev.last, tok, s.peer, s.first)
		}
		t.Logf("  gap after token %d: %v", tokens[i-1], time.Duration(s.first-prev.last))
	}
}
