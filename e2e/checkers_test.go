//go:build linux

package e2e

import (
	"testing"
	"time"
)

// A transient child that runs again after it exited normally is a
// violation, unless its node was fenced right after the exit (its removal
// could not reach etcd, as docs/guarantees.md says).
func TestCheckRestartTypesTransientRunAgain(t *testing.T) {
	sec := int64(time.Second)
	at := 100 * sec
	exp := expectation{exited: map[string]int64{"t1": at}}
	run := func(fencedAt int64) snapshot {
		return snapshot{byID: map[string][]inc{
			"t1": {
				{id: "t1", ref: "n1/1/a", node: "n1", start: 90 * sec, end: at, why: "normal"},
				{id: "t1", ref: "n2/7/b", node: "n2", start: at + 3*sec, why: "-"},
			},
			"p1": {{id: "p1", ref: "n1/2/a", node: "n1", start: 50 * sec, end: fencedAt, why: "fenced"}},
		}}
	}
	if vs, _ := checkRestartTypes(run(at+3*sec), exp, 2*time.Second); len(vs) != 1 || vs[0].check != invTransientBack {
		t.Fatalf("run again, node fenced long after: %v, want one %q", vs, invTransientBack)
	}
	vs, rep := checkRestartTypes(run(at+sec), exp, 2*time.Second)
	if len(vs) != 0 || rep.unrecordedExits != 1 {
		t.Fatalf("run again, node fenced right after the exit: %v, %+v; want none, one unrecorded exit", vs, rep)
	}
	once := run(at + sec)
	once.byID["t1"] = once.byID["t1"][:1]
	if vs, rep := checkRestartTypes(once, exp, 2*time.Second); len(vs) != 0 || rep.unrecordedExits != 0 {
		t.Fatalf("not run again: %v, %+v; want nothing counted", vs, rep)
	}
}
