package lease

import (
	"errors"
	"testing"
	"time"
)

// Check gives a reason whenever Alive is false: in the moment between the
// alive-until instant passing and the epoch being declared lost, Err is
// still nil, but Check wraps ErrDeadlinePassed.
func TestCheckGivesAReasonWhenNotAlive(t *testing.T) {
	e := newEpoch(nil, 1, 0x42, 5*time.Second, time.Now().Add(time.Hour))
	if err := e.Check(); err != nil || !e.Alive() {
		t.Fatalf("live epoch: Check %v, Alive %v", err, e.Alive())
	}
	e = newEpoch(nil, 1, 0x42, 5*time.Second, time.Now().Add(-time.Millisecond))
	if e.Alive() || e.Err() != nil {
		t.Fatalf("passed epoch not yet declared lost: Alive %v, Err %v", e.Alive(), e.Err())
	}
	if err := e.Check(); !errors.Is(err, ErrDeadlinePassed) {
		t.Fatalf("Check of a passed epoch = %v, want ErrDeadlinePassed", err)
	}
}
