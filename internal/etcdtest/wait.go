package etcdtest

import (
	"testing"
	"time"
)

// WaitFor calls cond until it returns true, sleeping for every between
// calls, and returns once it does. It fails t with "timed out after <limit>
// waiting for <what>" if cond still returns false once limit has passed.
// cond runs in the calling goroutine.
func WaitFor(t testing.TB, limit, every time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(limit)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", limit, what)
		}
		time.Sleep(every)
	}
}
