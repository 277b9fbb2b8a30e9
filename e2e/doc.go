// Package e2e holds cohort's end-to-end tests: real OS processes, a real
// three-member etcd cluster, injected faults, and checkers that would catch
// a violation of the guarantees in docs/guarantees.md.
//
// The test binary is its own helper: re-executed with E2E_ROLE=etcd it runs
// one embedded etcd member, with E2E_ROLE=node a cohort node that runs the
// workloads (a fenced singleton writer, a thousand permanent distributed
// children that heartbeat with their incarnation, counters that hand their
// value off on planned moves, transient and temporary children that the
// test ends and replaces, and a stream of calls with deadlines) and
// reports what it did on stdout. Every node reaches etcd through TCP
// proxies the test controls, and its peers reach its transport through one
// more, which can cut the link to one peer alone.
//
// go test ./e2e runs the short suite (one fault of each type). The long
// mode injects many faults and prints the reliability table of
// docs/reliability.md:
//
//	COHORT_E2E_LONG=1 COHORT_E2E_FAULTS=200 go test ./e2e -run TestFaults -timeout 0 -v
//
// COHORT_E2E_ONLY=<text> keeps the fault types whose name holds text;
// COHORT_E2E_SEED replays a run's choices.
package e2e
