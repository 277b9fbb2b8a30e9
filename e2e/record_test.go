//go:build linux

package e2e

import (
	"fmt"
	"strconv"
	"strings"
	"sync"
	"time"
)

// inc is what the test knows of one incarnation of a child.
type inc struct {
	id, ref, node                  string
	start, lastAlive, lastAny, end int64
	// A counter's values (-1: none): the value handed to it, the value
	// it handed off, the largest value it answered.
	initVal, handedOff, maxVal int64
	why                        string // why it ended (see endReason), "-" while running or unknown
}

// last is the latest instant the incarnation is known to have done work.
func (i *inc) last() int64 { return max(i.lastAny, i.end) }

// tenure is what the test knows of one singleton term.
type tenure struct {
	node                           string
	token                          int64
	start, lastAlive, lastAny, end int64
	writes                         int
	stale                          string
}

func (t *tenure) last() int64 { return max(t.lastAny, t.end) }

// pause is an interval during which a node process was stopped (SIGSTOP).
type pause struct {
	node        string
	from, until int64 // until 0: still paused
}

// callOver is a call that ended more than 20ms after its deadline.
type callOver struct {
	node                 string
	start, deadline, end int64
	id, class            string
}

// linkCut is a transport link from one node to another cut (or
// blackholed) by the test, and what the calls across it did.
type linkCut struct {
	from, to       string // calls made on from to children on to
	cutAt, healAt  int64  // healAt 0 while cut
	failed         int    // calls started during the cut that failed
	badErrs        []string
	leaks          []string // calls answered across the link while it was cut
	firstBack      int64    // end of the first call answered that started after the heal
	callsAfterHeal int
}

// recorder collects what the node processes report.
type recorder struct {
	mu      sync.Mutex
	incs    map[string]*inc     // by ref
	byID    map[string][]*inc   // by child id
	tenures map[int64]*tenure   // by token
	calls   map[string][6]int64 // by node (cumulative per process: summed over restarts in callsDone)
	done    map[string][6]int64 // totals of processes that ended
	overs   []callOver
	errs    map[string]string // first error message per node and class
	pauses  []pause
	lags    map[string][]lagSample // by node
	links   []*linkCut
	bad     []string // lines that did not parse
}

// lagSample is the largest scheduling delay a node saw in the report
// period that ended at instant at.
type lagSample struct{ at, lag int64 }

func newRecorder() *recorder {
	return &recorder{incs: map[string]*inc{}, byID: map[string][]*inc{}, tenures: map[int64]*tenure{},
		calls: map[string][6]int64{}, done: map[string][6]int64{}, errs: map[string]string{},
		lags: map[string][]lagSample{}}
}

func atoi(s string) int64 {
	v, _ := strconv.ParseInt(s, 10, 64)
	return v
}

// line handles one line a node reported.
func (r *recorder) line(node, line string) {
	f := strings.Fields(line)
	if len(f) == 0 {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	switch {
	case f[0] == "inc" && len(f) == 11:
		i := r.incs[f[2]]
		if i == nil {
			i = &inc{id: f[1], ref: f[2], node: node, initVal: -1, handedOff: -1, maxVal: -1, why: "-"}
			r.incs[f[2]] = i
			r.byID[f[1]] = append(r.byID[f[1]], i)
		}
		i.start = atoi(f[3])
		i.lastAlive = max(i.lastAlive, atoi(f[4]))
		i.lastAny = max(i.lastAny, atoi(f[5]))
		i.end = max(i.end, atoi(f[6]))
		i.initVal = max(i.initVal, atoi(f[7]))
		i.handedOff = max(i.handedOff, atoi(f[8]))
		i.maxVal = max(i.maxVal, atoi(f[9]))
		if f[10] != "-" {
			i.why = f[10]
		}
	case f[0] == "sing" && len(f) == 8:
		tok := atoi(f[1])
		t := r.tenures[tok]
		if t == nil {
			t = &tenure{node: node, token: tok}
			r.tenures[tok] = t
		}
		if t.node != node {
			r.bad = append(r.bad, fmt.Sprintf("token %d reported by %s and %s", tok, t.node, node))
		}
		t.start = atoi(f[2])
		t.lastAlive = max(t.lastAlive, atoi(f[3]))
		t.lastAny = max(t.lastAny, atoi(f[4]))
		t.end = max(t.end, atoi(f[5]))
		t.writes = max(t.writes, int(atoi(f[6])))
		if f[7] != "-" {
			t.stale = f[7]
		}
	case f[0] == "calls" && len(f) == 7:
		var c [6]int64
		for i := range c {
			c[i] = atoi(f[i+1])
		}
		r.calls[node] = c
	case f[0] == "callover" && len(f) == 6:
		r.overs = append(r.overs, callOver{node: node, start: atoi(f[1]), deadline: atoi(f[2]), end: atoi(f[3]), id: f[4], class: f[5]})
	case f[0] == "callerr" && len(f) >= 3:
		key := node + " " + f[1]
		if _, ok := r.errs[key]; !ok {
			r.errs[key] = strings.Join(f[2:], " ")
		}
	case f[0] == "lag" && len(f) == 3:
		r.lags[node] = append(r.lags[node], lagSample{at: atoi(f[1]), lag: atoi(f[2])})
	case f[0] == "rc" && len(f) == 5:
		r.remoteCall(node, f[1], atoi(f[2]), atoi(f[3]), f[4])
	case f[0] == "stopped":
	default:
		r.bad = append(r.bad, node+": "+line)
	}
}

// processEnded folds the call counts of a node process that ended into
// the totals, since the next process of the node counts from zero.
func (r *recorder) processEnded(node string) {
	r.mu.Lock()
	defer r.mu.Unlock()
	c := r.calls[node]
	d := r.done[node]
	for i := range 5 {
		d[i] += c[i]
	}
	d[5] = max(d[5], c[5])
	r.done[node] = d
	delete(r.calls, node)
}

// callTotals sums the call counts of every node process:
// total, ok, deadline, node down, other, and the largest overrun in ns.
func (r *recorder) callTotals() [6]int64 {
	r.mu.Lock()
	defer r.mu.Unlock()
	var t [6]int64
	for _, m := range []map[string][6]int64{r.calls, r.done} {
		for _, c := range m {
			for i := range 5 {
				t[i] += c[i]
			}
			t[5] = max(t[5], c[5])
		}
	}
	return t
}

// remoteCall matches a call from node to a child on node to against the
// links the test cut. r.mu is held.
func (r *recorder) remoteCall(node, to string, start, end int64, class string) {
	for _, l := range r.links {
		if l.from != node || l.to != to || start < l.cutAt {
			continue
		}
		during := l.healAt == 0 || start < l.healAt
		switch {
		case class == "ok" && during && (l.healAt == 0 || end <= l.healAt):
			if len(l.leaks) < 5 {
				l.leaks = append(l.leaks, fmt.Sprintf("started %v after the cut, answered %v later",
					time.Duration(start-l.cutAt), time.Duration(end-start)))
			}
		case class == "ok" && !during:
			l.callsAfterHeal++
			if l.firstBack == 0 || end < l.firstBack {
				l.firstBack = end
			}
		case class != "ok" && during:
			l.failed++
			if class != "deadline" && class != "nodedown" && len(l.badErrs) < 5 {
				l.badErrs = append(l.badErrs, fmt.Sprintf("started %v after the cut: %s", time.Duration(start-l.cutAt), class))
			}
		case class != "ok":
			l.callsAfterHeal++
		}
	}
}

// cutLink notes that calls from node from to node to cannot cross from
// instant at on.
func (r *recorder) cutLink(from, to string, at int64) *linkCut {
	r.mu.Lock()
	defer r.mu.Unlock()
	l := &linkCut{from: from, to: to, cutAt: at}
	r.links = append(r.links, l)
	return l
}

// healLink notes that the link l can carry calls again from instant at.
func (r *recorder) healLink(l *linkCut, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	l.healAt = at
}

// link returns a copy of l, for the checkers.
func (r *recorder) link(l *linkCut) linkCut {
	r.mu.Lock()
	defer r.mu.Unlock()
	return *l
}

func (r *recorder) paused(node string, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.pauses = append(r.pauses, pause{node: node, from: at})
}

func (r *recorder) resumed(node string, at int64) {
	r.mu.Lock()
	defer r.mu.Unlock()
	for i := range r.pauses {
		if r.pauses[i].node == node && r.pauses[i].until == 0 {
			r.pauses[i].until = at
		}
	}
}

// snapshot is a consistent copy of what was recorded, for the checkers.
type snapshot struct {
	byID    map[string][]inc
	tenures []tenure
	overs   []callOver
	pauses  []pause
	lags    map[string][]lagSample
	bad     []string
}

func (r *recorder) snapshot() snapshot {
	r.mu.Lock()
	defer r.mu.Unlock()
	s := snapshot{byID: make(map[string][]inc, len(r.byID))}
	for id, is := range r.byID {
		cp := make([]inc, len(is))
		for k, i := range is {
			cp[k] = *i
		}
		s.byID[id] = cp
	}
	for _, t := range r.tenures {
		s.tenures = append(s.tenures, *t)
	}
	s.overs = append(s.overs, r.overs...)
	s.pauses = append(s.pauses, r.pauses...)
	s.bad = append(s.bad, r.bad...)
	s.lags = make(map[string][]lagSample, len(r.lags))
	for n, ls := range r.lags {
		s.lags[n] = append([]lagSample(nil), ls...)
	}
	return s
}
