//go:build linux

package e2e

import (
	"context"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strconv"
	"strings"
	"time"

	"go.etcd.io/etcd/api/v3/mvccpb"
	clientv3 "go.etcd.io/etcd/client/v3"

	"github.com/cohort-go/cohort/internal/proctest"
	"github.com/cohort-go/cohort/supervisor"
)

// violation is a broken invariant, named by the check that found it.
type violation struct {
	check, detail string
}

func (v violation) String() string { return v.check + ": " + v.detail }

// Invariants the checkers enforce.
const (
	invChildOverlap   = "two incarnations of a child alive at once"
	invChildLingers   = "an instance kept running after it was replaced"
	invTenureOverlap  = "two singleton tenures overlap"
	invTenureLingers  = "a singleton kept running after it was replaced"
	invTokenOrder     = "singleton tokens do not grow with time"
	invListOrder      = "a stale-token write was accepted"
	invListLost       = "an accepted write was lost"
	invCallDeadline   = "a call outlived its deadline"
	invNotSettled     = "children did not settle to exactly one instance each"
	invSpecsLost      = "child specs were lost"
	invStopHung       = "a graceful stop did not finish"
	invBadReport      = "a node reported something impossible"
	invLinkMoved      = "a transport partition moved a child or the singleton"
	invLinkLeak       = "a call crossed a cut transport link"
	invLinkNotCut     = "no call across a cut link failed"
	invLinkError      = "a call across a cut link failed with an unclear error"
	invLinkDead       = "the transport did not reconnect after a link healed"
	invTempRestarted  = "a temporary child ran again"
	invTransientBack  = "a transient child ran again after it exited normally"
	invTransientCrash = "a transient child was not restarted after it crashed"
	invHandoff        = "handed-off state did not reach the next instance"
	invCallFailed     = "a request to a settled cluster failed"
	resumeGrace       = 3 * time.Second // a resumed process may run this long before it learns it lost
	freshWithin       = 2500 * time.Millisecond
	prePauseWorkLimit = 2 * tickEvery
)

// pausedAround reports whether node was paused before instant before and
// the work at instant last happened within resumeGrace of its resumption:
// a process that is stopped cannot stop its actors, and learns it lost
// only once it runs again.
func pausedAround(pauses []pause, node string, before, last int64) bool {
	for _, p := range pauses {
		if p.node == node && p.from < before && (p.until == 0 || last <= p.until+int64(resumeGrace)) {
			return true
		}
	}
	return false
}

// checkIncarnations checks, for every child, that no two incarnations were
// alive at the same instant: an incarnation's last work under a live epoch
// precedes the start of every later one. And that an instance stops before
// a later one starts, unless its process was paused (then it must stop
// within resumeGrace of resuming).
func checkIncarnations(s snapshot) []violation {
	var out []violation
	for id, incs := range s.byID {
		slices.SortFunc(incs, func(a, b inc) int { return int(a.start - b.start) })
		for j := 1; j < len(incs); j++ {
			b := incs[j]
			for i := range j {
				a := incs[i]
				if a.lastAlive >= b.start {
					out = append(out, violation{invChildOverlap, fmt.Sprintf("child %s: %s on %s alive until %d, %s on %s started %d (%v earlier)",
						id, a.ref, a.node, a.lastAlive, b.ref, b.node, b.start, time.Duration(a.lastAlive-b.start))})
				} else if a.last() >= b.start && !pausedAround(s.pauses, a.node, b.start, a.last()) {
					out = append(out, violation{invChildLingers, fmt.Sprintf("child %s: %s on %s ran until %d (end %d), %v after %s on %s started",
						id, a.ref, a.node, a.last(), a.end, time.Duration(a.last()-b.start), b.ref, b.node)})
				}
			}
		}
	}
	return out
}

// checkTenures checks that singleton tenures are disjoint and in token
// order: each term's last work under a live term precedes the start of the
// next term, and tokens grow with the start instants.
func checkTenures(s snapshot) []violation {
	var out []violation
	ts := slices.Clone(s.tenures)
	slices.SortFunc(ts, func(a, b tenure) int { return int(a.token - b.token) })
	for j := 1; j < len(ts); j++ {
		a, b := ts[j-1], ts[j]
		if a.start >= b.start {
			out = append(out, violation{invTokenOrder, fmt.Sprintf("token %d on %s started at %d, not before token %d on %s at %d",
				a.token, a.node, a.start, b.token, b.node, b.start)})
		}
		for i := range j {
			a := ts[i]
			if a.lastAlive >= b.start {
				out = append(out, violation{invTenureOverlap, fmt.Sprintf("token %d on %s alive until %d, token %d on %s started %d",
					a.token, a.node, a.lastAlive, b.token, b.node, b.start)})
			} else if a.last() >= b.start && !pausedAround(s.pauses, a.node, b.start, a.last()) {
				out = append(out, violation{invTenureLingers, fmt.Sprintf("token %d on %s ran until %d, %v after token %d on %s started",
					a.token, a.node, a.last(), time.Duration(a.last()-b.start), b.token, b.node)})
			}
		}
	}
	return out
}

// listCheck remembers the singleton's list between checks.
type listCheck struct {
	seen map[string]bool
}

// check reads the list at one revision and checks that, in commit order,
// tokens never decrease and each term's sequence numbers grow (so no write
// with a stale token was accepted after a newer term wrote), and that
// every entry seen before is still there.
func (l *listCheck) check(ctx context.Context, cli *clientv3.Client) ([]violation, int, error) {
	resp, err := cli.Get(ctx, listPrefix, clientv3.WithPrefix())
	if err != nil {
		return nil, 0, err
	}
	kvs := slices.Clone(resp.Kvs)
	slices.SortFunc(kvs, func(a, b *mvccpb.KeyValue) int { return int(a.ModRevision - b.ModRevision) })
	var out []violation
	var lastTok, lastSeq int64 = -1, -1
	now := map[string]bool{}
	for _, kv := range kvs {
		key := string(kv.Key)
		now[key] = true
		tokS, seqS, ok := strings.Cut(strings.TrimPrefix(key, listPrefix), "-")
		tok, err1 := strconv.ParseInt(tokS, 10, 64)
		seq, err2 := strconv.ParseInt(seqS, 10, 64)
		if !ok || err1 != nil || err2 != nil {
			out = append(out, violation{invBadReport, "list key " + key})
			continue
		}
		switch {
		case tok < lastTok:
			out = append(out, violation{invListOrder, fmt.Sprintf("%s (%q) committed at revision %d after a write of token %d",
				key, kv.Value, kv.ModRevision, lastTok)})
		case tok == lastTok && seq <= lastSeq:
			out = append(out, violation{invListOrder, fmt.Sprintf("%s committed at revision %d after seq %d of the same token", key, kv.ModRevision, lastSeq)})
		}
		if tok >= lastTok {
			lastTok, lastSeq = tok, seq
		}
	}
	for key := range l.seen {
		if !now[key] {
			out = append(out, violation{invListLost, key})
		}
	}
	l.seen = now
	return out, len(kvs), nil
}

// checkCalls checks that no call ended later than its deadline plus
// slack plus the scheduling delay its process suffered meanwhile (a
// process the machine does not run cannot notice its deadline), except
// calls made by a process that was paused meanwhile. It also returns the
// largest overrun beyond the deadline and how many calls exceeded slack
// before the scheduling delay is taken into account.
func checkCalls(s snapshot, slack time.Duration) (out []violation, worst time.Duration, raw int) {
	for _, o := range s.overs {
		over := time.Duration(o.end - o.deadline)
		if over <= slack {
			continue
		}
		exempt := false
		for _, p := range s.pauses {
			if p.node == o.node && p.from < o.end && (p.until == 0 || p.until > o.start) {
				exempt = true
			}
		}
		if exempt {
			continue
		}
		raw++
		worst = max(worst, over)
		var lag time.Duration
		for _, l := range s.lags[o.node] {
			if l.at >= o.start && l.at <= o.end+int64(2*flushEvery) {
				lag = max(lag, time.Duration(l.lag))
			}
		}
		if over > slack+lag {
			out = append(out, violation{invCallDeadline, fmt.Sprintf("%s called %s: ended %v after its deadline (%s); the process was scheduled up to %v late meanwhile; limit %v + that",
				o.node, o.id, over, o.class, lag, slack)})
		}
	}
	return out, worst, raw
}

// expectation is which children must exist, by restart type.
type expectation struct {
	// present must have a spec and run exactly once: the permanent
	// children, and the transient ones that did not exit normally.
	present map[string]bool
	// exited are the transient children that exited normally, with the
	// instant their exit was answered: no spec, and no instance after it.
	exited map[string]int64
	// temporary are the temporary children ever started: each runs once,
	// on the node it was placed on; once that instance is gone, so is its
	// spec.
	temporary map[string]bool
}

func (e expectation) clone() expectation {
	return expectation{present: maps.Clone(e.present), exited: maps.Clone(e.exited), temporary: maps.Clone(e.temporary)}
}

// settled reports whether every child that must run runs exactly once, on
// a live node, as etcd says at one revision and as the heartbeats confirm,
// whether no child that must not run has a spec or an instance, and
// whether the singleton runs on a live node; if not, it says what is
// wrong.
func settled(ctx context.Context, cli *clientv3.Client, sup *supervisor.Distributed, rec *recorder, exp expectation, live []string) (bool, string, error) {
	cs, err := sup.WhichChildren(ctx)
	if err != nil {
		return false, "", err
	}
	rev := int64(0)
	if resp, err := cli.Get(ctx, "/e2e/probe"); err == nil {
		rev = resp.Header.Revision
	}
	var problems []string
	add := func(format string, args ...any) {
		if len(problems) < 8 {
			problems = append(problems, fmt.Sprintf(format, args...))
		}
	}
	isLive := func(node string) bool { return slices.Contains(live, node) }
	// Placement is judged on the observer's ring, which must hold the
	// live nodes and no other: a node that re-joins after its lease
	// expired is out of the ring until it puts its member key again, and
	// the children that belong to it move only then.
	var members []string
	for _, m := range sup.Nodes() {
		if m.HasKind(kindHB) && m.RunsSupervisor(supName) {
			members = append(members, m.ID)
		}
	}
	if slices.Sort(members); !slices.Equal(members, slices.Sorted(slices.Values(live))) {
		add("the ring has %v, the live nodes are %v", members, live)
	}
	now := proctest.Mono()
	fresh := now - int64(freshWithin)
	s := rec.snapshot()
	freshIncs := func(id string) []inc {
		var out []inc
		for _, i := range s.byID[id] {
			if i.end == 0 && i.lastAny >= fresh {
				out = append(out, i)
			}
		}
		return out
	}
	specs := map[string]bool{}
	for _, c := range cs {
		specs[c.ID] = true
		switch {
		case exp.present[c.ID]:
		case exp.exited[c.ID] != 0:
			add("%s exited normally (transient), its spec is still there", c.ID)
			continue
		case exp.temporary[c.ID]:
			if len(s.byID[c.ID]) > 0 && len(freshIncs(c.ID)) == 0 {
				add("%s (temporary) has no instance any more, its spec is still there (%s on %s)", c.ID, c.Status, c.Node)
				continue
			}
		default:
			add("%s: a spec the test did not start", c.ID)
			continue
		}
		if _, err := sup.Whereis(c.ID); errors.Is(err, supervisor.ErrChildNotFound) {
			add("%s: the observer's watch-fed view lacks its spec (etcd has it at revision %d)", c.ID, rev)
			continue
		}
		if c.Status != supervisor.StatusRunning {
			owner, _ := sup.NodeFor(c.ID)
			var where []string
			for _, i := range freshIncs(c.ID) {
				where = append(where, i.ref)
			}
			add("%s is %s (belongs on %s; fresh incarnations %v)", c.ID, c.Status, owner, where)
			continue
		}
		if !isLive(c.Node) {
			add("%s owned by %s, not a live node", c.ID, c.Node)
			continue
		}
		if want, _ := sup.NodeFor(c.ID); want != c.Node {
			add("%s runs on %s, belongs on %s", c.ID, c.Node, want)
			continue
		}
		running := freshIncs(c.ID)
		switch {
		case len(running) != 1:
			add("%s has %d fresh incarnations", c.ID, len(running))
		case running[0].ref != refString(c.Ref):
			add("%s runs as %s, owner key says %s", c.ID, running[0].ref, refString(c.Ref))
		case running[0].lastAlive < fresh:
			add("%s runs as %s without a live epoch", c.ID, running[0].ref)
		}
	}
	for id := range exp.present {
		if !specs[id] {
			add("%s has no spec", id)
		}
	}
	for id := range s.byID {
		if r := freshIncs(id); !specs[id] && len(r) > 0 {
			add("%s runs as %s on %s without a spec", id, r[0].ref, r[0].node)
		}
	}
	var holders []string
	for _, t := range s.tenures {
		if t.end == 0 && t.lastAlive >= fresh {
			holders = append(holders, fmt.Sprintf("%s(token %d)", t.node, t.token))
			if !isLive(t.node) {
				add("singleton on %s, not a live node", t.node)
			}
		}
	}
	if len(holders) != 1 {
		add("singleton running on %v", holders)
	}
	return len(problems) == 0, strings.Join(problems, "; "), nil
}

// restartReport is what checkRestartTypes saw besides violations.
type restartReport struct {
	handoffs int // planned moves of counters checked
	// unrecordedExits counts transient children that exited normally as
	// their node was fenced and ran again: not held against them.
	unrecordedExits int
}

// fencedSoonAfter reports whether node fenced a child (its lease epoch
// lost) within window after at.
func fencedSoonAfter(s snapshot, node string, at, window int64) bool {
	if node == "" {
		return false
	}
	for _, incs := range s.byID {
		for _, i := range incs {
			if i.node == node && i.why == "fenced" && i.end >= at && i.end <= at+window {
				return true
			}
		}
	}
	return false
}

// sameProcess reports whether two refs are of one actor system, that is
// one node process.
func sameProcess(a, b string) bool {
	_, ai, _ := strings.Cut(a[strings.Index(a, "/")+1:], "/")
	_, bi, _ := strings.Cut(b[strings.Index(b, "/")+1:], "/")
	return ai == bi
}

// checkRestartTypes checks what the restart types and handoff promise:
// a temporary child runs at most once; a transient child that exited
// normally never runs again; and a counter moved in a planned move starts
// from exactly the value its previous instance handed off, which is no
// less than any value that instance answered, so its value never goes
// backwards across a graceful move.
// That includes a temporary child stopped because its node fenced itself
// (lease epoch lost while etcd kept the node's member key): the node
// must not start it again when it re-joins.
//
// A transient child's later run is not held against it when its node
// fenced children within ttl of its exit: the node was then already cut
// off from etcd (its epoch is lost within TTL − margin of its last
// renewal), so the removal could not be recorded.
func checkRestartTypes(s snapshot, exp expectation, ttl time.Duration) (out []violation, rep restartReport) {
	for id := range exp.temporary {
		incs := slices.Clone(s.byID[id])
		slices.SortFunc(incs, func(a, b inc) int { return int(a.start - b.start) })
		for j := 1; j < len(incs); j++ {
			a, b := incs[j-1], incs[j]
			switch {
			case a.end == 0 && sameProcess(a.ref, b.ref):
				// The end of a is not reported yet; look again at the
				// next check.
			default:
				out = append(out, violation{invTempRestarted, fmt.Sprintf("temporary child %s ran again: %s on %s (started %d, ended %d: %s), then %s on %s (started %d)",
					id, a.ref, a.node, a.start, a.end, a.why, b.ref, b.node, b.start)})
			}
		}
	}
	for id, at := range exp.exited {
		// Not promised (docs/guarantees.md): a transient child that exits
		// normally as its node loses etcd can run again elsewhere, its
		// removal not recorded before its owner's lease expired.
		var node string
		var again []inc
		for _, i := range s.byID[id] {
			if i.start <= at {
				node = i.node
			} else {
				again = append(again, i)
			}
		}
		if len(again) > 0 && fencedSoonAfter(s, node, at, int64(ttl)) {
			rep.unrecordedExits++
			continue
		}
		for _, i := range again {
			out = append(out, violation{invTransientBack, fmt.Sprintf("transient child %s exited normally at %d, ran again as %s on %s from %d",
				id, at, i.ref, i.node, i.start)})
		}
	}
	for id, incs := range s.byID {
		if !strings.HasPrefix(id, "k") {
			continue
		}
		incs = slices.Clone(incs)
		slices.SortFunc(incs, func(a, b inc) int { return int(a.start - b.start) })
		for j := 1; j < len(incs); j++ {
			a, b := incs[j-1], incs[j]
			if a.handedOff >= 0 && a.handedOff < a.maxVal {
				out = append(out, violation{invHandoff, fmt.Sprintf("counter %s: %s on %s handed off %d after answering %d",
					id, a.ref, a.node, a.handedOff, a.maxVal)})
			}
			switch {
			case a.handedOff >= 0 && b.initVal != a.handedOff:
				out = append(out, violation{invHandoff, fmt.Sprintf("counter %s: %s on %s handed off %d, the next instance %s on %s started from %d (-1: nothing)",
					id, a.ref, a.node, a.handedOff, b.ref, b.node, b.initVal)})
			case a.handedOff >= 0:
				rep.handoffs++
			case b.initVal >= 0 && a.end != 0:
				out = append(out, violation{invHandoff, fmt.Sprintf("counter %s: %s on %s started from %d, its previous instance %s on %s handed nothing off",
					id, b.ref, b.node, b.initVal, a.ref, a.node)})
			}
		}
	}
	return out, rep
}

// failover measures, from the heartbeats, how long the children that ran
// on node at t0 took to run again (the slowest of them), and, if node
// held the singleton at t0, how long until the next term started.
func failover(s snapshot, node string, t0 int64) (children time.Duration, moved int, singleton time.Duration, held bool) {
	for _, incs := range s.byID {
		for _, a := range incs {
			if a.node != node || a.start > t0 || (a.end != 0 && a.end < t0) || a.lastAny < t0-int64(2*time.Second) {
				continue
			}
			var next int64
			for _, b := range incs {
				if b.ref != a.ref && b.start > t0 && (next == 0 || b.start < next) {
					next = b.start
				}
			}
			if next != 0 {
				moved++
				children = max(children, time.Duration(next-t0))
			}
		}
	}
	for _, a := range s.tenures {
		if a.node != node || a.start > t0 || (a.end != 0 && a.end < t0) || a.lastAny < t0-int64(2*time.Second) {
			continue
		}
		var next int64
		for _, b := range s.tenures {
			if b.token > a.token && b.start > t0 && (next == 0 || b.start < next) {
				next = b.start
			}
		}
		if next != 0 {
			held, singleton = true, time.Duration(next-t0)
		}
	}
	return children, moved, singleton, held
}
