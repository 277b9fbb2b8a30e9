package supervisor

import (
	"fmt"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// EventType names a lifecycle event.
type EventType uint8

const (
	// ChildStarted: a child started (first start or restart).
	ChildStarted EventType = iota + 1
	// ChildExited: a child exited on its own, with Reason.
	ChildExited
	// ChildRestarted: a child was restarted after an exit (Ref is the new
	// instance).
	ChildRestarted
	// ChildStartFailed: starting a child failed with Reason.
	ChildStartFailed
	// ChildStopped: the supervisor stopped a child (shutdown, strategy or
	// TerminateChild).
	ChildStopped
	// ChildAbandoned: a child did not stop within its shutdown timeout and
	// was abandoned, or was brutally killed.
	ChildAbandoned
	// IntensityExceeded: restarts exceeded the intensity; the supervisor
	// stops its children and exits.
	IntensityExceeded
	// ChildIgnored: a child's start declined with actor.Ignore; its spec
	// is kept, not running.
	ChildIgnored
)

func (t EventType) String() string {
	switch t {
	case ChildStarted:
		return "child_started"
	case ChildExited:
		return "child_exited"
	case ChildRestarted:
		return "child_restarted"
	case ChildStartFailed:
		return "child_start_failed"
	case ChildStopped:
		return "child_stopped"
	case ChildAbandoned:
		return "child_abandoned"
	case IntensityExceeded:
		return "intensity_exceeded"
	case ChildIgnored:
		return "child_ignored"
	}
	return fmt.Sprintf("event(%d)", uint8(t))
}

// logMessages holds each event type's log message, built once.
var logMessages = func() (m [ChildIgnored + 1]string) {
	for t := range m {
		m[t] = "supervisor " + EventType(t).String()
	}
	return m
}()

func (t EventType) logMessage() string {
	if int(t) < len(logMessages) {
		return logMessages[t]
	}
	return "supervisor " + t.String()
}

// Event is a supervisor lifecycle event.
type Event struct {
	Type       EventType
	Supervisor actor.Ref
	Name       string // the supervisor's name, if registered
	ChildID    string
	Ref        actor.Ref // the child instance the event is about
	Reason     error
	Time       time.Time
}

func (e Event) String() string {
	s := fmt.Sprintf("%s child=%q ref=%v", e.Type, e.ChildID, e.Ref)
	if e.Reason != nil {
		s += fmt.Sprintf(" reason=%v", e.Reason)
	}
	return s
}
