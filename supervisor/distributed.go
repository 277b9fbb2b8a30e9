package supervisor

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/cohort-go/cohort/actor"
	"github.com/cohort-go/cohort/lease"
	"github.com/cohort-go/cohort/ring"
	clientv3 "go.etcd.io/etcd/client/v3"
	"go.uber.org/zap"
)

// Factory makes a fresh behaviour of a kind. Every node that can run a kind
// registers the same factory under the same name.
type Factory func() actor.Actor

// ChildSpec describes a child of a distributed supervisor. It is stored in
// etcd, so it holds data, not functions: the behaviour comes from the kind
// registered on the node that runs the child.
type ChildSpec struct {
	// ID names the child in the supervisor, cluster-wide. Empty means one
	// is generated and returned. A valid actor name without '/'.
	ID string `json:"id"`
	// Kind names the registered factory. Required; a valid actor name.
	Kind string `json:"kind"`
	// Args are the encoded arguments; Init receives them in InitArgs.
	Args []byte `json:"args,omitempty"`
	// Restart is the restart type. Default Permanent. Temporary children
	// never move and are not restarted anywhere; transient children that
	// exit normally are removed.
	Restart Restart `json:"restart,omitempty"`
	// Shutdown is the child's shutdown timeout (or BrutalKill). Zero means
	// DefaultWorkerShutdown.
	Shutdown time.Duration `json:"shutdown,omitempty"`
	// Node pins the child to one node: it runs only there, never moves, and
	// waits while that node is down. If set, a node id: a valid actor name
	// without '/'. StartChild refuses a node that is not running the
	// supervisor when it is called; the wait applies once the spec is
	// stored.
	Node string `json:"node,omitempty"`
}

// InitArgs is what a distributed child's Init receives as its args.
type InitArgs struct {
	// ID is the child's id in its supervisor.
	ID string
	// Args are the spec's encoded arguments.
	Args []byte
	// Handoff is the state the previous instance handed off on a planned
	// move, or nil.
	Handoff []byte
	// Token is the instance's fencing token: the create revision of the
	// child's owner key. It grows with every claim of the id, by any node,
	// and stays the same across restarts on the node that holds the claim.
	// An instance whose node was cut off or paused past its lease may
	// still run for a moment after another has started elsewhere; guard
	// its writes with Guard (for etcd), or send Token with each write to a
	// store that refuses tokens lower than the highest it has seen.
	Token int64

	ownerKey string
	epoch    *lease.Epoch
}

// Alive reports, without asking etcd, whether this instance's claim is
// still current as far as its node can tell: the lease epoch it was
// claimed under is proven alive on this node's monotonic clock, as
// singleton terms' Term.Alive. A child that checks Alive before each unit
// of work does no work after a pause that outlived its lease (another
// instance may run by then); once false it never turns true again. It is
// not a substitute for Guard or Token: a pause can fall between the check
// and the write.
func (a InitArgs) Alive() bool { return a.epoch != nil && a.epoch.Alive() }

// Guard is a comparison for an etcd transaction that holds only while
// this instance's claim is current: the child's owner key is the one
// created at Token. A transaction guarded by it commits only if no other
// node has claimed the child since (etcd judges at commit time).
func (a InitArgs) Guard() clientv3.Cmp {
	return clientv3.Compare(clientv3.CreateRevision(a.ownerKey), "=", a.Token)
}

// Handoffer is implemented by children that carry state across a planned
// move (a rebalance, or the graceful stop of their node). Handoff runs in
// the child's goroutine just before it stops; the bytes reach the next
// instance's Init in InitArgs.Handoff. A child that is not a Handoffer, or
// that is moved because its node died, starts from its Args alone.
type Handoffer interface {
	Handoff(ctx *actor.Context) ([]byte, error)
}

// ErrMoved is the exit reason of a child stopped to move: its state is
// handed off to the next node that runs the supervisor (which may come
// later, when this was the last one). Calls that were queued to it and not
// handled are retried on the new instance by Distributed.Call.
var ErrMoved = errors.New("supervisor: child stopped to move (its state, if any, is kept for its next instance, on whichever node runs the supervisor next)")

// Distributed errors.
var (
	// ErrUnknownKind: no live eligible node offers the spec's kind (or
	// none runs the supervisor), as of the call: a node that started
	// offering it a moment before, and that this node's view has not seen
	// yet, counts.
	ErrUnknownKind = errors.New("supervisor: no live node offers this kind")
	// ErrAlreadyStarted: a child with this id exists; the error is an
	// *AlreadyStartedError carrying its Ref when it runs.
	ErrAlreadyStarted = errors.New("supervisor: child already started")
	// ErrChildFailed: the child exceeded its restart intensity on nodes of
	// the cluster ClusterMaxRestarts times and is no longer started.
	ErrChildFailed = errors.New("supervisor: child failed (cluster-wide restart limit)")
	// ErrNotRunning: the child exists but has no running instance now.
	ErrNotRunning = errors.New("supervisor: child not running")
	// ErrSupervisorStopped: the distributed supervisor has stopped.
	ErrSupervisorStopped = errors.New("supervisor: distributed supervisor stopped")
)

// AlreadyStartedError carries the Ref of an existing child.
type AlreadyStartedError struct {
	ID  string
	Ref actor.Ref
}

func (e *AlreadyStartedError) Error() string {
	return fmt.Sprintf("supervisor: child %q already started (%v)", e.ID, e.Ref)
}

// Is makes errors.Is(err, ErrAlreadyStarted) hold.
func (e *AlreadyStartedError) Is(target error) bool { return target == ErrAlreadyStarted }

// BalanceMode says when children move after the ring changes.
type BalanceMode uint8

const (
	// BalanceAuto moves children whose ring owner changed, once membership
	// has been stable for StableWindow. The default.
	BalanceAuto BalanceMode = iota
	// BalanceManual moves nothing until Rebalance is called. Children of a
	// dead node are still restarted elsewhere.
	BalanceManual
)

// DistributedOptions configure a distributed supervisor. The zero value
// works: a field left zero takes its default. StartDistributed fails with
// ErrInvalidSpec, naming the field, on a negative MaxChildren, MoveBatch,
// StableWindow or ClusterMaxRestarts, or a Balance other than BalanceAuto
// and BalanceManual.
type DistributedOptions struct {
	// Balance is BalanceAuto (default) or BalanceManual.
	Balance BalanceMode
	// Locator overrides the consistent-hash placement: it picks the node
	// for a child id among the eligible nodes (sorted ids). It must be a
	// pure function, the same on every node.
	Locator func(id string, nodes []string) string
	// MaxChildren bounds the number of children (best effort under
	// concurrent starts). Zero means no bound.
	MaxChildren int
	// MoveBatch is how many children one node moves at a time: each is
	// unavailable (messages to it held) from its handoff until its new
	// instance starts. Default 512.
	MoveBatch int
	// StableWindow is how long membership must be unchanged before joins
	// move children. Default 1s.
	StableWindow time.Duration
	// Nodes, if set, restricts placement to these node ids.
	Nodes []string
	// Role, if set, restricts placement to nodes offering this role.
	Role string
	// Intensity bounds local restarts of one child. Default 3 in 5s.
	Intensity Intensity
	// ClusterMaxRestarts is how many times a child may exceed Intensity,
	// on any nodes, before it is marked failed and no longer started.
	// Default 3.
	ClusterMaxRestarts int
	// Listener, if set, receives every event; it must not block.
	Listener func(DistEvent)
	// Logger receives events. Default: the system's logger.
	Logger *zap.Logger
}

// check refuses options out of range: zero means the default, a negative
// count or duration, or an unknown Balance, is an error wrapping
// ErrInvalidSpec that names the field.
func (o DistributedOptions) check() error {
	if o.Balance != BalanceAuto && o.Balance != BalanceManual {
		return fmt.Errorf("%w: DistributedOptions.Balance %d is neither BalanceAuto nor BalanceManual", ErrInvalidSpec, o.Balance)
	}
	for _, f := range []struct {
		name  string
		value int64
	}{
		{"MaxChildren", int64(o.MaxChildren)},
		{"MoveBatch", int64(o.MoveBatch)},
		{"StableWindow", int64(o.StableWindow)},
		{"ClusterMaxRestarts", int64(o.ClusterMaxRestarts)},
	} {
		if f.value < 0 {
			return fmt.Errorf("%w: DistributedOptions.%s is negative (zero means the default)", ErrInvalidSpec, f.name)
		}
	}
	for _, n := range o.Nodes {
		if err := checkNodeID(n); err != nil {
			return fmt.Errorf("%w: DistributedOptions.Nodes: %w", ErrInvalidSpec, err)
		}
	}
	return nil
}

// checkNodeID fails for what cannot be a node id.
func checkNodeID(n string) error {
	if err := actor.ValidateName(n); err != nil || strings.Contains(n, "/") {
		return fmt.Errorf("%q is not a node id (a non-empty name of printable characters without '/')", n)
	}
	return nil
}

// DistEventType names a distributed supervisor event.
type DistEventType uint8

const (
	// NodeUp: a node joined the cluster.
	NodeUp DistEventType = iota + 1
	// NodeDown: a node left the cluster.
	NodeDown
	// DistChildStarted: a child started on this node.
	DistChildStarted
	// DistChildStopped: a child stopped on this node (Reason says why).
	DistChildStopped
	// DistChildMoved: a child started on this node with state handed off
	// by its previous node.
	DistChildMoved
	// DistChildFailed: a child hit the cluster-wide restart limit.
	DistChildFailed
)

func (t DistEventType) String() string {
	switch t {
	case NodeUp:
		return "node_up"
	case NodeDown:
		return "node_down"
	case DistChildStarted:
		return "child_started"
	case DistChildStopped:
		return "child_stopped"
	case DistChildMoved:
		return "child_moved"
	case DistChildFailed:
		return "child_failed"
	}
	return fmt.Sprintf("dist_event(%d)", uint8(t))
}

// DistEvent is an event of a distributed supervisor, seen on one node.
type DistEvent struct {
	Type       DistEventType
	Supervisor string
	Node       string // the node the event happened on, or the node up/down
	ChildID    string
	Ref        actor.Ref
	Reason     error
	Time       time.Time
}

// Cluster is what a distributed supervisor needs of its node. cohort.Node
// provides it.
type Cluster struct {
	NodeID  string
	Prefix  string
	Client  *clientv3.Client
	Session *lease.Session
	Ring    *ring.Ring
	System  *actor.System
	// Kind returns the factory registered under a kind on this node.
	Kind func(kind string) (Factory, bool)
	// Offer publishes (on) or withdraws (off) in the node's member record
	// that this node runs the distributed supervisor sup, and returns once
	// the node's own ring shows it. A supervisor places children only on
	// the members that publish it (ring.Member.RunsSupervisor).
	Offer func(ctx context.Context, sup string, on bool) error
	// Offline, if set, reports that the node has left the cluster with
	// etcd unreachable: the owner keys the supervisor would release are
	// then left to the lease's end (or revocation) rather than waited on.
	Offline func() bool
	Logger  *zap.Logger
}

// ChildStatus is the state of a distributed child.
type ChildStatus string

const (
	// StatusRunning: an instance runs (or is starting) on Node.
	StatusRunning ChildStatus = "running"
	// StatusPending: no instance runs now (being placed, moving, or its
	// node is down).
	StatusPending ChildStatus = "pending"
	// StatusFailed: the child hit the cluster-wide restart limit.
	StatusFailed ChildStatus = "failed"
)

// DistChildInfo describes one child, as WhichChildren reports it.
type DistChildInfo struct {
	ID       string
	Kind     string
	Restart  Restart
	Status   ChildStatus
	Node     string    // where it runs; empty when pending
	Ref      actor.Ref // zero when pending
	Failures int       // times it exceeded its restart intensity
	Reason   string    // last failure reason
}

// DistCounts is what CountChildren reports.
type DistCounts struct {
	Specs   int
	Running int
	Pending int
	Failed  int
}

// owner is the value of an owner key.
type owner struct {
	Node string    `json:"node"`
	Ref  actor.Ref `json:"ref"`
}

// status is the value of a status key.
type status struct {
	Failures int    `json:"failures"`
	Failed   bool   `json:"failed,omitempty"`
	Reason   string `json:"reason,omitempty"`
	Node     string `json:"node,omitempty"`
}

// keys of one distributed supervisor under <prefix>/sup/<name>/.
type keys struct{ root string }

func (k keys) spec(id string) string    { return k.root + "specs/" + id }
func (k keys) owner(id string) string   { return k.root + "owners/" + id }
func (k keys) status(id string) string  { return k.root + "status/" + id }
func (k keys) handoff(id string) string { return k.root + "handoff/" + id }

// has reports whether key lies under sub.
func (k keys) has(key, sub string) bool {
	_, ok := k.idOf(key, sub)
	return ok
}

// idOf returns the id of a key under sub ("specs/", "owners/"...).
func (k keys) idOf(key, sub string) (string, bool) {
	rest, ok := strings.CutPrefix(key, k.root)
	if !ok {
		return "", false
	}
	return strings.CutPrefix(rest, sub)
}

func validateID(id string) error {
	if err := actor.ValidateName(id); err != nil {
		return fmt.Errorf("%w: child id: %w", ErrInvalidSpec, err)
	}
	if strings.Contains(id, "/") {
		return fmt.Errorf("%w: child id %q contains '/'", ErrInvalidSpec, id)
	}
	return nil
}

func (s ChildSpec) validate() error {
	if err := validateID(s.ID); err != nil {
		return err
	}
	if s.Kind == "" {
		return fmt.Errorf("%w: child %q has no kind", ErrInvalidSpec, s.ID)
	}
	if err := actor.ValidateName(s.Kind); err != nil {
		return fmt.Errorf("%w: child %q: kind: %w", ErrInvalidSpec, s.ID, err)
	}
	if s.Node != "" {
		if err := checkNodeID(s.Node); err != nil {
			return fmt.Errorf("%w: child %q: Node %w", ErrInvalidSpec, s.ID, err)
		}
	}
	if len(s.Args) > MaxArgsBytes {
		return fmt.Errorf("%w: child %q: Args of %d bytes, over MaxArgsBytes (%d): a spec is kept in etcd; keep large data elsewhere and pass a key to it", ErrInvalidSpec, s.ID, len(s.Args), MaxArgsBytes)
	}
	if s.Restart > Temporary {
		return fmt.Errorf("%w: child %q has unknown restart type %d", ErrInvalidSpec, s.ID, s.Restart)
	}
	if s.Shutdown < 0 && s.Shutdown != BrutalKill {
		return fmt.Errorf("%w: child %q has negative shutdown %v (use BrutalKill)", ErrInvalidSpec, s.ID, s.Shutdown)
	}
	return nil
}

func decode[T any](b []byte) (T, bool) {
	var v T
	return v, json.Unmarshal(b, &v) == nil
}

// The distributed supervisor's errors keep their identity across nodes.
func init() {
	for code, err := range map[string]error{
		"supervisor.moved":           ErrMoved,
		"supervisor.unknown_kind":    ErrUnknownKind,
		"supervisor.child_failed":    ErrChildFailed,
		"supervisor.not_running":     ErrNotRunning,
		"supervisor.child_not_found": ErrChildNotFound,
	} {
		if err := actor.RegisterError(code, err); err != nil {
			panic(err)
		}
	}
}
