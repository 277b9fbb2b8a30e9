package supervisor

import (
	"fmt"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// SingletonEventType names a singleton lifecycle event.
type SingletonEventType uint8

const (
	// SingletonElected: this node won the singleton's election; Token is
	// the new term's fencing token. The child is started next.
	SingletonElected SingletonEventType = iota + 1
	// SingletonLost: this node's term ended; Reason wraps
	// ErrLeadershipLost and says why (resigned on stop, lease lost, leader
	// key deleted). The child was stopped before this event.
	SingletonLost
	// SingletonLeaderChanged: the singleton's leader, as observed in etcd,
	// changed; Leader is its node id and Token its fencing token.
	SingletonLeaderChanged
	// SingletonChildStarted: the child started (first start in a term or a
	// restart); Ref is the instance.
	SingletonChildStarted
	// SingletonChildExited: the child exited on its own, with Reason.
	SingletonChildExited
	// SingletonChildStopped: the wrapper stopped the child, with Reason
	// (actor.Shutdown on a graceful stop, an error wrapping
	// ErrLeadershipLost when the term ended under it). Abandoned is true
	// when the child did not terminate in time and was abandoned.
	SingletonChildStopped
	// SingletonChildStartFailed: starting the child failed with Reason.
	SingletonChildStartFailed
	// SingletonNameFailed: registering the child under its global name
	// failed with Reason; it is retried while the term lasts.
	SingletonNameFailed
)

func (t SingletonEventType) String() string {
	switch t {
	case SingletonElected:
		return "singleton_elected"
	case SingletonLost:
		return "singleton_lost"
	case SingletonLeaderChanged:
		return "singleton_leader_changed"
	case SingletonChildStarted:
		return "singleton_child_started"
	case SingletonChildExited:
		return "singleton_child_exited"
	case SingletonChildStopped:
		return "singleton_child_stopped"
	case SingletonChildStartFailed:
		return "singleton_child_start_failed"
	case SingletonNameFailed:
		return "singleton_name_failed"
	}
	return fmt.Sprintf("singleton_event(%d)", uint8(t))
}

// SingletonEvent is a singleton lifecycle event, as a Singleton's
// Listener receives it.
type SingletonEvent struct {
	Type SingletonEventType
	// ID is the singleton's id.
	ID string
	// Node is this node's id.
	Node string
	// Token is the fencing token of this node's term, or of the observed
	// leader's for SingletonLeaderChanged.
	Token int64
	// Leader is the observed leader's node id (SingletonLeaderChanged).
	Leader string
	// Ref is the child instance the event is about, if any.
	Ref actor.Ref
	// Reason is why the event happened, if it says more than its type.
	Reason error
	// Abandoned is set on SingletonChildStopped when the child had to be
	// abandoned.
	Abandoned bool
	// Time is when the event happened on this node.
	Time time.Time
}

func (e SingletonEvent) String() string {
	s := fmt.Sprintf("%s id=%q node=%s token=%d", e.Type, e.ID, e.Node, e.Token)
	if e.Leader != "" {
		s += " leader=" + e.Leader
	}
	if !e.Ref.IsZero() {
		s += " ref=" + e.Ref.String()
	}
	if e.Reason != nil {
		s += fmt.Sprintf(" reason=%v", e.Reason)
	}
	if e.Abandoned {
		s += " abandoned"
	}
	return s
}
