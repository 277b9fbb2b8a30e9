package proctest

import (
	"sync"
	"time"

	"github.com/cohort-go/cohort/actor"
)

// Every sends msg to the actor to in sys every interval, from a goroutine
// of its own, until stop is called. A send that fails, to an actor that has
// stopped, is dropped. stop returns once the goroutine has ended, so no send
// follows it; calling it again does nothing. An actor starts it in Init and
// stops it in Terminate.
func Every(sys *actor.System, to actor.Ref, interval time.Duration, msg any) (stop func()) {
	quit, done := make(chan struct{}), make(chan struct{})
	go func() {
		defer close(done)
		t := time.NewTicker(interval)
		defer t.Stop()
		for {
			select {
			case <-quit:
				return
			case <-t.C:
				_ = sys.Send(to, msg)
			}
		}
	}()
	return sync.OnceFunc(func() {
		close(quit)
		<-done
	})
}
